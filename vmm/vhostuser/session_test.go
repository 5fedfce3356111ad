package vhostuser_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/castor-nix/castor/vmm/vhostuser"
	"github.com/castor-nix/castor/vmm/vhostuser/vhostusertest"
)

// guard bounds waits that should end at once, so a broken backend fails
// the test instead of hanging it; nothing asserts on durations.
const guard = 20 * time.Second

// echoDevice answers each chain by writing its readable bytes, upper-cased
// and reversed, into the writable buffers. It waits for kicks on
// Queue.Kicks, or with Queue.WaitKick if waitKick is set.
type echoDevice struct {
	queues   int
	closed   chan struct{}
	config   []byte
	waitKick bool
}

var _ vhostuser.Device = (*echoDevice)(nil)

func (d *echoDevice) Features() uint64 { return 0 }
func (d *echoDevice) NumQueues() int   { return d.queues }
func (d *echoDevice) Close() error     { close(d.closed); return nil }

func (d *echoDevice) RunQueue(ctx context.Context, q *vhostuser.Queue) error {
	for {
		for {
			c, err := q.Pop()
			if err != nil {
				return err
			}
			if c == nil {
				break
			}
			in := bytes.ToUpper(bytes.Join(c.Readable, nil))
			for i, j := 0, len(in)-1; i < j; i, j = i+1, j-1 {
				in[i], in[j] = in[j], in[i]
			}
			n := 0
			for _, w := range c.Writable {
				n += copy(w, in[n:])
			}
			q.Done(c, uint32(n))
		}
		if d.waitKick {
			if err := q.WaitKick(); err != nil {
				if errors.Is(err, vhostuser.ErrStopped) {
					return nil
				}
				return err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-q.Kicks():
		}
	}
}

type configEcho struct{ echoDevice }

func (d *configEcho) Config() []byte { return d.config }

type testServer struct {
	path    string
	devices chan *echoDevice
	made    atomic.Int32
}

func startServer(t *testing.T, queues int, withConfig bool) *testServer {
	t.Helper()
	return startServerWaiting(t, queues, withConfig, false)
}

// startServerWaiting is startServer with devices that wait for kicks
// with Queue.WaitKick (waitKick) or on Queue.Kicks.
func startServerWaiting(t *testing.T, queues int, withConfig, waitKick bool) *testServer {
	t.Helper()
	ts := &testServer{path: filepath.Join(t.TempDir(), "vu.sock"), devices: make(chan *echoDevice, 16)}
	l, err := vhostuser.Listen(ts.path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &vhostuser.Server{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		NewDevice: func(ctx context.Context) (vhostuser.Device, error) {
			ts.made.Add(1)
			d := &echoDevice{queues: queues, closed: make(chan struct{}), config: []byte{3, 0, 0, 0, 0, 0, 0, 0}, waitKick: waitKick}
			ts.devices <- d
			if withConfig {
				return &configEcho{*d}, nil
			}
			return d, nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Stat(ts.path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket %s left behind (%v)", ts.path, err)
		}
	})
	return ts
}

func dial(t *testing.T, path string, opts vhostusertest.Options) *vhostusertest.FakeVM {
	t.Helper()
	vm, err := vhostusertest.Dial(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	vm.SetDeadline(time.Now().Add(guard))
	t.Cleanup(func() { vm.Close() })
	return vm
}

func echoRound(t *testing.T, vm *vhostusertest.FakeVM, r *vhostusertest.Ring, msg string, indirect bool) {
	t.Helper()
	head, err := r.Submit([]vhostusertest.Buf{
		{Data: []byte(msg[:len(msg)/2])},
		{Data: []byte(msg[len(msg)/2:])},
		{Len: 3, Writable: true},
		{Len: 64, Writable: true},
	}, indirect)
	if err != nil {
		t.Fatal(err)
	}
	used, err := r.WaitUsed(1, guard)
	if err != nil {
		t.Fatal(err)
	}
	if used[0].Head != head || int(used[0].Len) != len(msg) {
		t.Fatalf("used = %+v, want head %d len %d", used[0], head, len(msg))
	}
	a0, _ := r.DescAddr(head, 2)
	a1, _ := r.DescAddr(head, 3)
	got := string(vm.Read(a0, 3)) + string(vm.Read(a1, len(msg)-3))
	want := []byte(string(bytes.ToUpper([]byte(msg))))
	for i, j := 0, len(want)-1; i < j; i, j = i+1, j-1 {
		want[i], want[j] = want[j], want[i]
	}
	if got != string(want) {
		t.Fatalf("echo = %q, want %q", got, want)
	}
}

func TestEchoOverRealSocket(t *testing.T) {
	for _, o := range []vhostusertest.Options{
		{},                // QEMU style: ADD_MEM_REG
		{SetMemTab: true}, // Cloud Hypervisor style
		{SetMemTab: true, TwoRegion: true},
		{TwoRegion: true, EventIdx: true},
		{EventIdx: true, QueueSize: 4},
	} {
		for _, v := range []struct{ indirect, waitKick bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
			indirect := v.indirect
			t.Run(fmt.Sprintf("%+v/indirect=%v/WaitKick=%v", o, v.indirect, v.waitKick), func(t *testing.T) {
				ts := startServerWaiting(t, 2, false, v.waitKick)
				vm := dial(t, ts.path, o)
				if n, err := vm.QueueNum(); err != nil || n != 2 {
					t.Fatalf("GET_QUEUE_NUM = %d, %v", n, err)
				}
				if err := vm.MapMemory(); err != nil {
					t.Fatal(err)
				}
				r, err := vm.SetupQueue(1)
				if err != nil {
					t.Fatal(err)
				}
				// More rounds than ring entries: indices wrap.
				for i := 0; i < 10; i++ {
					echoRound(t, vm, r, fmt.Sprintf("hello virtqueue %d", i), indirect)
				}
				base, err := r.GetBase()
				if err != nil || base != 10 {
					t.Fatalf("GET_VRING_BASE = %d, %v; want 10", base, err)
				}
			})
		}
	}
}

// The backend must answer GET_VRING_BASE and a vring disable while its
// queue goroutine sits waiting for a kick; go-fuse's ServeFS did not,
// which hung QEMU at guest shutdown.
func TestStopWhileIdleAndRestart(t *testing.T) {
	for _, waitKick := range []bool{false, true} {
		t.Run(fmt.Sprintf("WaitKick=%v", waitKick), func(t *testing.T) { testStopWhileIdleAndRestart(t, waitKick) })
	}
}

func testStopWhileIdleAndRestart(t *testing.T, waitKick bool) {
	ts := startServerWaiting(t, 1, false, waitKick)
	vm := dial(t, ts.path, vhostusertest.Options{})
	if err := vm.MapMemory(); err != nil {
		t.Fatal(err)
	}
	r, err := vm.SetupQueue(0)
	if err != nil {
		t.Fatal(err)
	}
	echoRound(t, vm, r, "one", false)
	echoRound(t, vm, r, "two", false)
	if err := r.Disable(); err != nil {
		t.Fatal(err)
	}
	// Disabled: a new chain stays in the ring (the base stays 2) ...
	if _, err := r.Submit([]vhostusertest.Buf{{Data: []byte("x")}, {Len: 1, Writable: true}}, false); err != nil {
		t.Fatal(err)
	}
	// ... until the ring is enabled again.
	if err := r.Enable(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WaitUsed(1, guard); err != nil {
		t.Fatal(err)
	}
	base, err := r.GetBase()
	if err != nil || base != 3 {
		t.Fatalf("GET_VRING_BASE = %d, %v; want 3", base, err)
	}
}

// Memory going away under a running ring stops it; memory coming back
// restarts it where it was (QEMU's REM_MEM_REG/ADD_MEM_REG, and Cloud
// Hypervisor's repeated SET_MEM_TABLE).
func TestMemoryChangeWhileRunning(t *testing.T) {
	for _, v := range []struct{ setMemTab, waitKick bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		setMemTab := v.setMemTab
		t.Run(fmt.Sprintf("SetMemTab=%v/WaitKick=%v", v.setMemTab, v.waitKick), func(t *testing.T) {
			ts := startServerWaiting(t, 1, false, v.waitKick)
			vm := dial(t, ts.path, vhostusertest.Options{SetMemTab: setMemTab, TwoRegion: true})
			if err := vm.MapMemory(); err != nil {
				t.Fatal(err)
			}
			r, err := vm.SetupQueue(0)
			if err != nil {
				t.Fatal(err)
			}
			echoRound(t, vm, r, "before", false)
			if setMemTab {
				if err := vm.MapMemory(); err != nil { // a new table replaces the old
					t.Fatal(err)
				}
			} else {
				if err := vm.UnmapMemory(); err != nil {
					t.Fatal(err)
				}
				if err := vm.MapMemory(); err != nil {
					t.Fatal(err)
				}
			}
			echoRound(t, vm, r, "after", true)
			if base, err := r.GetBase(); err != nil || base != 2 {
				t.Fatalf("GET_VRING_BASE = %d, %v; want 2", base, err)
			}
		})
	}
}

func TestDisabledRingIsNotServed(t *testing.T) {
	ts := startServer(t, 1, false)
	vm := dial(t, ts.path, vhostusertest.Options{})
	if err := vm.MapMemory(); err != nil {
		t.Fatal(err)
	}
	r, err := vm.SetupQueue(0)
	if err != nil {
		t.Fatal(err)
	}
	echoRound(t, vm, r, "one", false)
	if err := r.Disable(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Submit([]vhostusertest.Buf{{Data: []byte("x")}, {Len: 1, Writable: true}}, false); err != nil {
		t.Fatal(err)
	}
	base, err := r.GetBase()
	if err != nil || base != 1 {
		t.Fatalf("GET_VRING_BASE after disable = %d, %v; want 1 (the chain after disable untouched)", base, err)
	}
	if u := r.PollUsed(); len(u) != 0 {
		t.Fatalf("disabled ring served %v", u)
	}
}

func TestReconnectGetsFreshDevice(t *testing.T) {
	ts := startServer(t, 1, false)
	for i := 0; i < 3; i++ {
		vm := dial(t, ts.path, vhostusertest.Options{SetMemTab: i%2 == 1})
		if err := vm.MapMemory(); err != nil {
			t.Fatal(err)
		}
		r, err := vm.SetupQueue(0)
		if err != nil {
			t.Fatal(err)
		}
		echoRound(t, vm, r, fmt.Sprintf("vm %d", i), false)
		d := <-ts.devices
		vm.Close() // the VM goes away without stopping its rings
		select {
		case <-d.closed:
		case <-time.After(guard):
			t.Fatalf("device %d not closed after the VM went away", i)
		}
	}
	if n := ts.made.Load(); n != 3 {
		t.Fatalf("NewDevice called %d times, want 3", n)
	}
}

func TestConfigSpace(t *testing.T) {
	ts := startServer(t, 1, true)
	vm := dial(t, ts.path, vhostusertest.Options{})
	cfg, err := vm.Config(8)
	if err != nil {
		t.Fatal(err)
	}
	if binary.LittleEndian.Uint64(cfg) != 3 {
		t.Fatalf("config = %x", cfg)
	}
}

func TestGarbageClosesOnlyThatConnection(t *testing.T) {
	ts := startServer(t, 1, false)
	for _, raw := range [][]byte{
		{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},                      // bad version flags
		{1, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f},             // huge payload
		{99, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0},                        // unknown request: error, connection survives
		{5, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0}, // 9 regions
	} {
		c, err := net.Dial("unix", ts.path)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(raw)
		c.Close()
	}
	vm := dial(t, ts.path, vhostusertest.Options{})
	if err := vm.MapMemory(); err != nil {
		t.Fatal(err)
	}
	r, err := vm.SetupQueue(0)
	if err != nil {
		t.Fatal(err)
	}
	echoRound(t, vm, r, "still here", true)
}

func TestBadChainStopsQueueNotServer(t *testing.T) {
	ts := startServer(t, 2, false)
	vm := dial(t, ts.path, vhostusertest.Options{})
	if err := vm.MapMemory(); err != nil {
		t.Fatal(err)
	}
	r0, err := vm.SetupQueue(0)
	if err != nil {
		t.Fatal(err)
	}
	r1, err := vm.SetupQueue(1)
	if err != nil {
		t.Fatal(err)
	}
	// A readable buffer after a writable one breaks queue 0 ...
	if _, err := r0.Submit([]vhostusertest.Buf{{Len: 4, Writable: true}, {Data: []byte("x")}}, false); err != nil {
		t.Fatal(err)
	}
	// ... while queue 1 and the control channel go on.
	echoRound(t, vm, r1, "queue one", false)
	if _, err := r0.GetBase(); err != nil {
		t.Fatal(err)
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()

	t.Run("stale socket is replaced", func(t *testing.T) {
		p := filepath.Join(dir, "stale.sock")
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		l.SetUnlinkOnClose(false)
		l.Close() // the file stays, nobody listens: stale
		l2, err := vhostuser.Listen(p)
		if err != nil {
			t.Fatalf("Listen over stale socket: %v", err)
		}
		l2.Close()
	})
	t.Run("live listener is refused", func(t *testing.T) {
		p := filepath.Join(dir, "live.sock")
		l, err := vhostuser.Listen(p)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if _, err := vhostuser.Listen(p); !errors.Is(err, vhostuser.ErrSocketInUse) {
			t.Fatalf("second Listen err = %v, want ErrSocketInUse", err)
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("live socket removed: %v", err)
		}
	})
	t.Run("regular file is left alone", func(t *testing.T) {
		p := filepath.Join(dir, "file")
		if err := os.WriteFile(p, []byte("keep"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := vhostuser.Listen(p); err == nil {
			t.Fatal("Listen over a regular file succeeded")
		}
		if b, _ := os.ReadFile(p); string(b) != "keep" {
			t.Fatalf("file changed to %q", b)
		}
	})
}

// FuzzSession throws arbitrary bytes at a session: it must neither panic
// nor hang, and the server must then serve a well-behaved VM.
func FuzzSession(f *testing.F) {
	hdr := func(req, flags, size uint32, p ...byte) []byte {
		b := binary.LittleEndian.AppendUint32(nil, req)
		b = binary.LittleEndian.AppendUint32(b, flags)
		b = binary.LittleEndian.AppendUint32(b, size)
		return append(b, p...)
	}
	f.Add(hdr(1, 1, 0))
	f.Add(append(hdr(15, 1, 0), hdr(16, 1, 8, 8, 0, 0, 0, 0, 0, 0, 0)...))
	f.Add(hdr(8, 9, 8, 0, 0, 0, 0, 0, 1, 0, 0))
	f.Add(hdr(9, 9, 40, make([]byte, 40)...))
	f.Add(hdr(24, 1, 12, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0))
	f.Add(hdr(11, 1, 8, 0, 0, 0, 0, 0, 0, 0, 0))
	f.Add(hdr(5, 1, 40, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b, err := socketPair()
		if err != nil {
			t.Skip(err)
		}
		srv := &vhostuser.Server{
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			NewDevice: func(ctx context.Context) (vhostuser.Device, error) {
				return &echoDevice{queues: 2, closed: make(chan struct{})}, nil
			},
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeConn(context.Background(), a)
		}()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // drain replies so the session never blocks writing
			defer wg.Done()
			io.Copy(io.Discard, b)
		}()
		b.Write(data)
		b.CloseWrite()
		select {
		case <-done:
		case <-time.After(guard):
			t.Fatal("session did not end after EOF")
		}
		b.Close()
		wg.Wait()
	})
}

func socketPair() (*net.UnixConn, *net.UnixConn, error) {
	dir, err := os.MkdirTemp("", "vufuzz")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "s"), Net: "unix"})
	if err != nil {
		return nil, nil, err
	}
	defer l.Close()
	c, err := net.DialUnix("unix", nil, l.Addr().(*net.UnixAddr))
	if err != nil {
		return nil, nil, err
	}
	s, err := l.AcceptUnix()
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return s, c, nil
}
