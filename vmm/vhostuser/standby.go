package vhostuser

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Standby lets a device serve a request on the very goroutine that popped
// it and still hear at once of requests the driver adds meanwhile.
//
// Handing the ring to another goroutine before serving each request keeps
// a slow request from holding up the next ones, but wakes a thread per
// request: under a guest that sends one request at a time, that churn of
// the Go scheduler cost more CPU than the serving itself, CPU taken from
// the VMM's threads. With a Standby the popper instead calls Ready and
// Arm, serves, and calls Disarm: a read and two epoll_ctl calls, and no
// wake-up. Only when the driver kicks while the popper serves does the
// goroutine in Wait wake up, to let another goroutine pop.
//
// A Standby watches the kick eventfd through an epoll set of its own
// (one-shot, armed only while the popper serves). Wait never reads the
// eventfd: the kick stays pending for WaitKick, so a wake-up nobody acts
// on loses nothing. Only Ready, on the popper, reads it, to forget kicks
// for requests the popper has already taken.
type Standby struct {
	q    *Queue
	epfd int
	kick int // a duplicate of the queue's kick eventfd
	stop int // eventfd written by Stop
}

// NewStandby makes a Standby for q, or returns an error if q has no kick
// eventfd (then the device should hand the ring on instead). Close it
// after Wait returned ErrStopped.
func (q *Queue) NewStandby() (*Standby, error) {
	if q.kick == nil {
		return nil, errors.New("virtqueue: no kick eventfd")
	}
	rc, err := q.kick.SyscallConn()
	if err != nil {
		return nil, err
	}
	s := &Standby{q: q, epfd: -1, kick: -1, stop: -1}
	var dupErr error
	if err := rc.Control(func(fd uintptr) { s.kick, dupErr = unix.Dup(int(fd)) }); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, fmt.Errorf("standby: dup kick eventfd: %w", dupErr)
	}
	if s.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		s.Close()
		return nil, fmt.Errorf("standby: %w", err)
	}
	if s.stop, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		s.Close()
		return nil, fmt.Errorf("standby: %w", err)
	}
	if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, s.stop, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(s.stop)}); err != nil {
		s.Close()
		return nil, fmt.Errorf("standby: %w", err)
	}
	// Registered disarmed: no events until Arm.
	if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, s.kick, &unix.EpollEvent{Events: unix.EPOLLONESHOT, Fd: int32(s.kick)}); err != nil {
		s.Close()
		return nil, fmt.Errorf("standby: %w", err)
	}
	return s, nil
}

// Ready is called by the popping goroutine before it serves a request it
// popped, then Arm. It forgets the kicks delivered so far (the popper
// has looked at the ring since, so a kick left pending would only wake
// Wait for requests already taken), asks the driver to kick for its next
// request (with event idx, a driver that was told nothing does not kick
// a device it knows to be busy), and reports whether requests are
// waiting already: nothing will kick for those, so the caller should pop
// them or hand the ring on rather than serve first.
func (s *Standby) Ready() (waiting bool) {
	var buf [8]byte
	unix.Read(s.kick, buf[:]) // non-blocking, like the queue's own descriptor
	q := s.q
	if q.eventIdx {
		store16(q.used[4+8*int(q.size):], q.lastAvail)
		fence()
	}
	return loadHi16(q.avail) != q.lastAvail
}

// Arm makes a kick wake Wait, from now until Disarm or the first such
// wake-up. It touches nothing of the queue, so another goroutine may pop
// as soon as Wait returned.
func (s *Standby) Arm() error {
	if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_MOD, s.kick, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(s.kick)}); err != nil {
		return fmt.Errorf("standby: arm: %w", err)
	}
	return nil
}

// Disarm undoes Arm: kicks go to WaitKick alone again. Only the goroutine
// that armed calls it, and only if no other goroutine was let pop since.
func (s *Standby) Disarm() {
	unix.EpollCtl(s.epfd, unix.EPOLL_CTL_MOD, s.kick, &unix.EpollEvent{Events: unix.EPOLLONESHOT, Fd: int32(s.kick)})
}

// Wait blocks until the driver kicks while the Standby is armed (it is
// then disarmed until the next Arm) and returns nil, or until Stop, then
// ErrStopped. It blocks its thread in epoll_wait; one goroutine waits.
func (s *Standby) Wait() error {
	var ev [2]unix.EpollEvent
	for {
		n, err := unix.EpollWait(s.epfd, ev[:], -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("standby: %w", err)
		}
		kicked := false
		for _, e := range ev[:n] {
			if e.Fd == int32(s.stop) {
				return ErrStopped
			}
			kicked = true
		}
		if kicked {
			return nil
		}
	}
}

// Stop makes Wait return ErrStopped, now or at its next call.
func (s *Standby) Stop() {
	unix.Write(s.stop, []byte{1, 0, 0, 0, 0, 0, 0, 0})
}

// Close releases the Standby's descriptors; Wait must not be running.
func (s *Standby) Close() error {
	for _, fd := range []*int{&s.epfd, &s.kick, &s.stop} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	return nil
}
