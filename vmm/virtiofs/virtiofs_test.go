package virtiofs_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
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

const guard = 20 * time.Second

// memRoot is an in-memory tree: /hello.txt and /big.bin.
type memRoot struct {
	fs.Inode
	big []byte
}

func (r *memRoot) OnAdd(ctx context.Context) {
	r.AddChild("hello.txt", r.NewPersistentInode(ctx, &fs.MemRegularFile{Data: []byte("hello, virtio-fs\n"), Attr: fuse.Attr{Mode: 0o444}}, fs.StableAttr{}), false)
	r.AddChild("big.bin", r.NewPersistentInode(ctx, &fs.MemRegularFile{Data: r.big, Attr: fuse.Attr{Mode: 0o444}}, fs.StableAttr{}), false)
}

func bigData() []byte {
	b := make([]byte, 300<<10)
	for i := range b {
		b[i] = byte(i*7 + i>>9)
	}
	return b
}

type session struct {
	made   atomic.Int32
	mu     sync.Mutex
	bridge []fuse.RawFileSystem
}

func TestVirtiofsSessions(t *testing.T) {
	big := bigData()
	var s session
	path := filepath.Join(t.TempDir(), "vfs.sock")
	l, err := vhostuser.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	newFS := func(ctx context.Context) (fuse.RawFileSystem, error) {
		s.made.Add(1)
		sec := time.Hour
		raw := fs.NewNodeFS(&memRoot{big: big}, &fs.Options{EntryTimeout: &sec, AttrTimeout: &sec})
		s.mu.Lock()
		s.bridge = append(s.bridge, raw)
		s.mu.Unlock()
		return raw, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- virtiofs.Serve(ctx, l, newFS, &virtiofs.Options{Logger: quiet, RequestQueues: 2}, false)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	var firstNode uint64
	for vmNo := 0; vmNo < 2; vmNo++ {
		vm, err := vhostusertest.Dial(path, vhostusertest.Options{EventIdx: true, QueueSize: 128, SetMemTab: vmNo == 1})
		if err != nil {
			t.Fatal(err)
		}
		vm.SetDeadline(time.Now().Add(guard))
		if n, err := vm.QueueNum(); err != nil || n != 3 {
			t.Fatalf("GET_QUEUE_NUM = %d, %v; want 3", n, err)
		}
		if err := vm.MapMemory(); err != nil {
			t.Fatal(err)
		}
		hi, err := vm.SetupQueue(0)
		if err != nil {
			t.Fatal(err)
		}
		rq, err := vm.SetupQueue(2)
		if err != nil {
			t.Fatal(err)
		}
		c := &virtiofstest.Client{T: t, VM: vm, Req: rq}
		c.Init()
		node, attr, st := c.Lookup("hello.txt")
		if st != 0 || attr.Size != 17 {
			t.Fatalf("LOOKUP hello.txt: status %d size %d", st, attr.Size)
		}
		if got := c.ReadAll(node, 17); string(got) != "hello, virtio-fs\n" {
			t.Fatalf("READ = %q", got)
		}
		bnode, battr, st := c.Lookup("big.bin")
		if st != 0 || int(battr.Size) != len(big) {
			t.Fatalf("LOOKUP big.bin: status %d size %d", st, battr.Size)
		}
		if got := c.ReadAll(bnode, len(big)); !bytes.Equal(got, big) {
			t.Fatalf("READ big.bin: %d bytes, differ", len(got))
		}
		if _, _, st := c.Lookup("missing"); st != -int32(syscall.ENOENT) {
			t.Fatalf("LOOKUP missing: status %d, want ENOENT", st)
		}
		// A fresh session numbers nodes afresh: nothing carried over.
		if vmNo == 0 {
			firstNode = node
		} else if node != firstNode {
			t.Errorf("second VM got node %d for hello.txt, first got %d", node, firstNode)
		}
		// FORGET goes on the high-priority queue and gets no reply
		// bytes, only the chain back.
		fin := fuse.ForgetIn{Nlookup: 1}
		h := fuse.InHeader{Length: uint32(unsafe.Sizeof(fin)), Opcode: virtiofstest.OpForget, Unique: 999, NodeId: node}
		fin.InHeader = h
		if _, err := hi.Submit([]vhostusertest.Buf{{Data: virtiofstest.StructBytes(&fin)}}, false); err != nil {
			t.Fatal(err)
		}
		used, err := hi.WaitUsed(1, guard)
		if err != nil {
			t.Fatal(err)
		}
		if used[0].Len != 0 {
			t.Errorf("FORGET reply length %d", used[0].Len)
		}
		// GET_VRING_BASE on both rings answers at once (guest shutdown).
		if base, err := rq.GetBase(); err != nil || base == 0 {
			t.Fatalf("GET_VRING_BASE request queue = %d, %v", base, err)
		}
		if base, err := hi.GetBase(); err != nil || base != 1 {
			t.Fatalf("GET_VRING_BASE hiprio = %d, %v", base, err)
		}
		vm.Close()
	}
	if n := s.made.Load(); n != 2 {
		t.Fatalf("filesystems made: %d, want one per VM (2)", n)
	}
}

// blockingFS holds READs at offsets from blockAt on (in steps of 4 KiB)
// until release is closed.
type blockingFS struct {
	fuse.RawFileSystem
	blockAt uint64
	blocked chan uint64 // gets the offset of each READ being held
	release chan struct{}
}

func (b *blockingFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	if in.Offset >= b.blockAt {
		b.blocked <- in.Offset
		<-b.release
	}
	return b.RawFileSystem.Read(cancel, in, buf)
}

// Requests the filesystem takes long over do not hold up the next ones:
// a goroutine waiting on the standby lets another pop while the popper
// serves, up to Workers requests at once. With Workers 2 and one slow
// READ, the LOOKUP takes the second slot; with two slow READs, the
// LOOKUP is the third request served at once.
func TestSlowRequestDoesNotStallQueue(t *testing.T) {
	for _, tc := range []struct{ workers, slow int }{{2, 1}, {16, 1}, {16, 2}} {
		t.Run(fmt.Sprintf("Workers=%d,slow=%d", tc.workers, tc.slow), func(t *testing.T) {
			workers := tc.workers
			bfs := &blockingFS{blockAt: 128 << 10, blocked: make(chan uint64, tc.slow), release: make(chan struct{})}
			path := filepath.Join(t.TempDir(), "vfs.sock")
			l, err := vhostuser.Listen(path)
			if err != nil {
				t.Fatal(err)
			}
			newFS := func(ctx context.Context) (fuse.RawFileSystem, error) {
				sec := time.Hour
				bfs.RawFileSystem = fs.NewNodeFS(&memRoot{big: bigData()}, &fs.Options{EntryTimeout: &sec, AttrTimeout: &sec})
				return bfs, nil
			}
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- virtiofs.Serve(ctx, l, newFS, &virtiofs.Options{Logger: quiet, Workers: workers}, false)
			}()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Serve: %v", err)
				}
			}()
			// Held READs are let go however the test ends, or Serve
			// would wait for them forever.
			release := sync.OnceFunc(func() { close(bfs.release) })
			defer release()
			vm, err := vhostusertest.Dial(path, vhostusertest.Options{EventIdx: true})
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Close()
			vm.SetDeadline(time.Now().Add(guard))
			c := virtiofstest.Start(t, vm, 1)
			node, _, st := c.Lookup("big.bin")
			if st != 0 {
				t.Fatalf("LOOKUP big.bin: status %d", st)
			}
			oin := fuse.OpenIn{Flags: syscall.O_RDONLY}
			_, body := c.Call(virtiofstest.OpOpen, node, virtiofstest.StructBytes(&oin)[unsafe.Sizeof(fuse.InHeader{}):], int(unsafe.Sizeof(fuse.OpenOut{})))
			var oo fuse.OpenOut
			copy(virtiofstest.StructBytes(&oo), body)

			slow := map[uint16]bool{}
			for i := 0; i < tc.slow; i++ {
				rin := fuse.ReadIn{Fh: oo.Fh, Offset: bfs.blockAt + uint64(i)*4096, Size: 4096}
				rin.InHeader = fuse.InHeader{Length: uint32(unsafe.Sizeof(rin)), Opcode: virtiofstest.OpRead, Unique: 1<<40 + uint64(i), NodeId: node}
				h, err := c.Req.Submit([]vhostusertest.Buf{
					{Data: virtiofstest.StructBytes(&rin)},
					{Len: int(unsafe.Sizeof(fuse.OutHeader{})), Writable: true},
					{Len: 4096, Writable: true},
				}, false)
				if err != nil {
					t.Fatal(err)
				}
				slow[h] = true
				select {
				case <-bfs.blocked:
				case <-time.After(guard):
					t.Fatalf("READ %d never reached the filesystem", i)
				}
			}
			// Answered while the READs are held (Call fails on a
			// completion for another chain).
			if _, _, st := c.Lookup("hello.txt"); st != 0 {
				t.Fatalf("LOOKUP hello.txt: status %d", st)
			}
			release()
			used, err := c.Req.WaitUsed(tc.slow, guard)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range used {
				if !slow[u.Head] || u.Len != uint32(unsafe.Sizeof(fuse.OutHeader{}))+4096 {
					t.Fatalf("completion %+v, want a held READ with 4096 bytes", u)
				}
			}
		})
	}
}
