package vhostuser

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestStandby drives a Standby by hand: Wait wakes for a kick only while
// armed, only once per Arm, Ready forgets kicks already delivered and
// asks for the next one, and Stop ends Wait.
func TestStandby(t *testing.T) {
	g := newFakeGuest(t, []uint64{1 << 20}, 8)
	q := g.queue(t, FeatureRingEventIdx)
	kfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	q.kick = os.NewFile(uintptr(kfd), "kick")
	defer q.kick.Close()
	s, err := q.NewStandby()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kick := func() { unix.Write(kfd, []byte{1, 0, 0, 0, 0, 0, 0, 0}) }
	woke := make(chan error, 10)
	go func() {
		for {
			err := s.Wait()
			woke <- err
			if err != nil {
				return
			}
		}
	}()
	// A wake-up that should come is waited for up to a guard; one that
	// should not is looked for during 200 ms (a slow machine can only
	// hide a wrong wake-up there, never fail a right one).
	expectWake := func(what string, want bool) {
		t.Helper()
		wait := 200 * time.Millisecond
		if want {
			wait = 20 * time.Second
		}
		select {
		case err := <-woke:
			if !want || err != nil {
				t.Fatalf("%s: Wait returned %v", what, err)
			}
		case <-time.After(wait):
			if want {
				t.Fatalf("%s: Wait did not return", what)
			}
		}
	}

	kick()
	expectWake("kick while disarmed", false)
	if s.Ready() {
		t.Fatal("Ready: requests waiting in an empty ring")
	}
	if got := binary.LittleEndian.Uint16(g.b(g.used+4+8*8, 2)); got != 0 {
		t.Errorf("avail_event = %d, want 0 (kick for the next entry)", got)
	}
	if err := s.Arm(); err != nil {
		t.Fatal(err)
	}
	expectWake("armed after Ready forgot the earlier kick", false)
	kick()
	expectWake("kick while armed", true)
	kick()
	expectWake("second kick, one-shot", false)

	s.Ready()
	s.Arm()
	s.Disarm()
	kick()
	expectWake("kick after Disarm", false)

	g.setDesc(g.desc, 0, 0x8000, 1, descFWrite, 0)
	g.publish(0)
	if !s.Ready() {
		t.Error("Ready: a published entry not reported as waiting")
	}

	s.Stop()
	select {
	case err := <-woke:
		if !errors.Is(err, ErrStopped) {
			t.Errorf("Wait after Stop: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Wait did not return after Stop")
	}
}
