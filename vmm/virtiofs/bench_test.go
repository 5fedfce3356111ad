package virtiofs_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/castor-nix/castor/vmm/vhostuser"
	"github.com/castor-nix/castor/vmm/vhostuser/vhostusertest"
	"github.com/castor-nix/castor/vmm/virtiofs"
	"github.com/castor-nix/castor/vmm/virtiofs/virtiofstest"
)

// BenchmarkRead measures the backend's data path without a guest: FUSE
// READs of 1 MiB (the size a Linux guest sends with castor's MaxWrite)
// from an in-memory file, through a FakeVM's ring, with 4 requests in
// flight. It reports the server-side throughput the transport allows.
func BenchmarkRead(b *testing.B) {
	_, rq, node, fh := benchSetup(b)
	const chunk, depth = 1 << 20, 4
	var heads []uint16
	for i := 0; i < depth; i++ {
		rin := fuse.ReadIn{Fh: fh, Offset: uint64(i * chunk % (8 << 20)), Size: chunk}
		rin.InHeader = fuse.InHeader{Length: uint32(unsafe.Sizeof(rin)), Opcode: virtiofstest.OpRead, Unique: uint64(1000 + i), NodeId: node}
		h, err := rq.Prepare([]vhostusertest.Buf{
			{Data: append([]byte(nil), virtiofstest.StructBytes(&rin)...)},
			{Len: int(unsafe.Sizeof(fuse.OutHeader{})), Writable: true},
			{Len: chunk, Writable: true},
		}, false)
		if err != nil {
			b.Fatal(err)
		}
		heads = append(heads, h)
	}
	b.SetBytes(chunk)
	runPrepared(b, rq, heads, len(heads), chunk+16, nil)
}

// BenchmarkReadGuestPages measures READs the way a Linux guest reading a
// file sends them: 128 KiB (its read-ahead window), one descriptor per
// page through an indirect table, into guest pages the backend has never
// written (the guest has zeroed them, as init_on_alloc does), one request
// at a time. Unlike BenchmarkRead it pays what a fresh guest costs the
// backend: a first write to every page and a wake-up per request. Each
// session's guest memory serves a few hundred requests; setting up the
// next one is not timed.
func BenchmarkReadGuestPages(b *testing.B) {
	const chunk, page, memSize = 128 << 10, 4 << 10, 96 << 20
	var s *benchSession
	left := 0 // requests the session's memory still has room for
	b.SetBytes(chunk)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if left == 0 {
			b.StopTimer()
			if s != nil {
				s.close()
			}
			s = newBenchSession(b, memSize)
			for p := 0; p < len(s.vm.Mem); p += page {
				s.vm.Mem[p] = 0
			}
			left = (memSize - 8<<20) / (chunk + 2*page)
			b.StartTimer()
		}
		left--
		rin := fuse.ReadIn{Fh: s.fh, Offset: uint64(i * chunk % (8 << 20)), Size: chunk}
		rin.InHeader = fuse.InHeader{Length: uint32(unsafe.Sizeof(rin)), Opcode: virtiofstest.OpRead, Unique: uint64(1000 + i), NodeId: s.node}
		bufs := []vhostusertest.Buf{
			{Data: virtiofstest.StructBytes(&rin)},
			{Len: int(unsafe.Sizeof(fuse.OutHeader{})), Writable: true},
		}
		for p := 0; p < chunk; p += page {
			bufs = append(bufs, vhostusertest.Buf{Len: page, Writable: true})
		}
		if _, err := s.rq.Submit(bufs, true); err != nil {
			b.Fatal(err)
		}
		used, err := s.rq.WaitUsed(1, 20*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		if used[0].Len != chunk+16 {
			b.Fatalf("completion of %d bytes, want %d", used[0].Len, chunk+16)
		}
	}
	b.StopTimer()
	s.close()
}

// BenchmarkGetattrRoundTrip measures one request's round trip through the
// ring (kick, pop, go-fuse, push, call), one at a time: the per-request
// overhead of the transport, which metadata-heavy work (ls -l) pays.
func BenchmarkGetattrRoundTrip(b *testing.B) {
	c, _, node, _ := benchSetup(b)
	benchGetattr(b, c, node)
}

// runPrepared keeps depth of the prepared chains in flight until b.N
// completed, taking them in turn (the next one after a completion is the
// one that has waited longest), and checks each completion's length.
// prepare, if not nil, is called on a chain before it is published.
func runPrepared(b *testing.B, rq *vhostusertest.Ring, heads []uint16, depth int, wantLen uint32, prepare func(head uint16)) {
	b.ResetTimer()
	free := append([]uint16(nil), heads...)
	submitted, completed := 0, 0
	publish := func() {
		h := free[0]
		free = free[1:]
		if prepare != nil {
			prepare(h)
		}
		rq.Publish(h)
		submitted++
	}
	for submitted < min(depth, b.N) {
		publish()
	}
	for completed < b.N {
		used, err := rq.WaitUsed(1, 20*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		for _, u := range used {
			if u.Len != wantLen {
				b.Fatalf("completion of %d bytes, want %d", u.Len, wantLen)
			}
			completed++
			free = append(free, u.Head)
			if submitted < b.N {
				publish()
			}
		}
	}
}

func benchSetup(b *testing.B) (*virtiofstest.Client, *vhostusertest.Ring, uint64, uint64) {
	s := newBenchSession(b, 64<<20)
	b.Cleanup(s.close)
	return s.c, s.rq, s.node, s.fh
}

// benchSession is a virtio-fs server and a FakeVM with memSize bytes of
// guest memory, INIT done and big.bin (8 MiB) open as fh.
type benchSession struct {
	c        *virtiofstest.Client
	vm       *vhostusertest.FakeVM
	rq       *vhostusertest.Ring
	node, fh uint64
	stop     func()
}

func (s *benchSession) close() {
	s.vm.Close()
	s.stop()
}

func newBenchSession(b *testing.B, memSize int) *benchSession {
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i)
	}
	sock := filepath.Join(b.TempDir(), "vfs.sock")
	l, err := vhostuser.Listen(sock)
	if err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	newFS := func(ctx context.Context) (fuse.RawFileSystem, error) {
		sec := time.Hour
		return fs.NewNodeFS(&memRoot{big: data}, &fs.Options{EntryTimeout: &sec, AttrTimeout: &sec}), nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- virtiofs.Serve(ctx, l, newFS, &virtiofs.Options{Logger: quiet}, false) }()
	s := &benchSession{stop: func() { cancel(); <-done }}

	s.vm, err = vhostusertest.Dial(sock, vhostusertest.Options{MemSize: memSize, QueueSize: 256})
	if err != nil {
		s.stop()
		b.Fatal(err)
	}
	if err := s.vm.MapMemory(); err != nil {
		s.close()
		b.Fatal(err)
	}
	if s.rq, err = s.vm.SetupQueue(1); err != nil {
		s.close()
		b.Fatal(err)
	}
	s.c = &virtiofstest.Client{T: b, VM: s.vm, Req: s.rq}
	s.c.Init()
	node, _, st := s.c.Lookup("big.bin")
	if st != 0 {
		s.close()
		b.Fatal(st)
	}
	oin := fuse.OpenIn{Flags: syscall.O_RDONLY}
	_, body := s.c.Call(virtiofstest.OpOpen, node, virtiofstest.StructBytes(&oin)[unsafe.Sizeof(fuse.InHeader{}):], int(unsafe.Sizeof(fuse.OpenOut{})))
	var oo fuse.OpenOut
	copy(virtiofstest.StructBytes(&oo), body)
	s.node, s.fh = node, oo.Fh
	return s
}
