package virtiofs_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/castor-nix/castor/e2e/testenv"
	castorfs "github.com/castor-nix/castor/fs"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/fsimport"
	"github.com/castor-nix/castor/vmm/vhostuser"
	"github.com/castor-nix/castor/vmm/vhostuser/vhostusertest"
	"github.com/castor-nix/castor/vmm/virtiofs"
	"github.com/castor-nix/castor/vmm/virtiofs/virtiofstest"
)

// BenchmarkServers compares castor's backend serving castor's filesystem
// with QEMU's virtiofsd (/usr/lib/qemu/virtiofsd, cache=always) serving
// the same bytes from a directory, without a guest: a FakeVM sends what a
// Linux guest's sequential read sends (READs of 128 KiB, one descriptor
// per page through an indirect table, pages apart in guest memory, two
// requests in flight) and what `ls -l` sends (GETATTR). Under TCG the
// guest's own work hides the server (bench/vm/run.sh); this measures the
// server's side alone, the time a request spends between the kick and
// the call. The guest pages are reused, so neither server pays its first
// touch of guest memory here (BenchmarkReadGuestPages measures castor's).
//
//	go test ./vmm/virtiofs -run '^$' -bench Servers -count 6 | benchstat -col /server -
func BenchmarkServers(b *testing.B) {
	share := b.TempDir()
	data := filepath.Join(share, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		b.Fatal(err)
	}
	const fileSize = 64 << 20
	content := make([]byte, fileSize)
	for i := range content {
		content[i] = byte(i*7 + i>>11)
	}
	if err := os.WriteFile(filepath.Join(data, "big.bin"), content, 0o444); err != nil {
		b.Fatal(err)
	}
	blobs, dirs := memory.NewBlobService(), memory.NewDirectoryService()
	root, _, _, err := fsimport.Import(context.Background(), data, blobs, dirs, nil)
	if err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	servers := []struct {
		name  string
		start func(b *testing.B, sock string)
	}{
		{"castor", func(b *testing.B, sock string) {
			l, err := vhostuser.Listen(sock)
			if err != nil {
				b.Fatal(err)
			}
			newFS := func(context.Context) (fuse.RawFileSystem, error) {
				return castorfs.New(castorfs.Roots{"data": root}, dirs, blobs, castorfs.Options{Logger: quiet})
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- virtiofs.Serve(ctx, l, newFS, &virtiofs.Options{Logger: quiet}, true) }()
			b.Cleanup(func() { cancel(); <-done })
		}},
		{"virtiofsd", func(b *testing.B, sock string) {
			testenv.RequireBinary(b, virtiofstest.VirtiofsdPath)
			testenv.RequireRoot(b)
			_, stop, err := virtiofstest.StartVirtiofsd(share, sock)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(stop)
		}},
	}
	for _, srv := range servers {
		b.Run("server="+srv.name, func(b *testing.B) {
			sock := filepath.Join(b.TempDir(), "vfs.sock")
			srv.start(b, sock)
			vm, err := vhostusertest.Dial(sock, vhostusertest.Options{MemSize: 64 << 20, QueueSize: 1024, EventIdx: true})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { vm.Close() })
			c := virtiofstest.Start(b, vm, 1)
			dirNode, _, st := c.Lookup("data")
			if st != 0 {
				b.Fatalf("LOOKUP data: %d", st)
			}
			node, _, st := c.LookupIn(dirNode, "big.bin")
			if st != 0 {
				b.Fatalf("LOOKUP big.bin: %d", st)
			}
			oin := fuse.OpenIn{Flags: syscall.O_RDONLY}
			oh, body := c.Call(virtiofstest.OpOpen, node, virtiofstest.StructBytes(&oin)[unsafe.Sizeof(fuse.InHeader{}):], int(unsafe.Sizeof(fuse.OpenOut{})))
			if oh.Status != 0 {
				b.Fatalf("OPEN: %d", oh.Status)
			}
			var oo fuse.OpenOut
			copy(virtiofstest.StructBytes(&oo), body)
			b.Run("op=read128k", func(b *testing.B) { benchGuestReads(b, c, node, oo.Fh, fileSize) })
			b.Run("op=getattr", func(b *testing.B) { benchGetattr(b, c, node) })
		})
	}
}

// benchGuestReads keeps two 128 KiB READs in flight, sequentially through
// the file, each into 32 scattered guest pages.
func benchGuestReads(b *testing.B, c *virtiofstest.Client, node, fh uint64, fileSize int) {
	const chunk, page, depth, chains = 128 << 10, 4 << 10, 2, 16
	rq, vm := c.Req, c.VM
	// The pages of all chains are interleaved, so no two pages of one
	// chain are adjacent.
	pages := vm.Alloc(chains*(chunk/page)*page + page)
	pages = (pages + page - 1) &^ (page - 1)
	heads := make([]uint16, chains)
	offsets := map[uint16]int{} // head -> index of its ReadIn in ins
	ins := make([]uint64, chains)
	for k := range heads {
		rin := fuse.ReadIn{Fh: fh, Size: chunk}
		rin.InHeader = fuse.InHeader{Length: uint32(unsafe.Sizeof(rin)), Opcode: virtiofstest.OpRead, Unique: uint64(1000 + k), NodeId: node}
		bufs := []vhostusertest.Buf{
			{Data: append([]byte(nil), virtiofstest.StructBytes(&rin)...)},
			{Len: int(unsafe.Sizeof(fuse.OutHeader{})), Writable: true},
		}
		for p := 0; p < chunk/page; p++ {
			bufs = append(bufs, vhostusertest.Buf{Len: page, Writable: true, Addr: pages + uint64((p*chains+k)*page)})
		}
		h, err := rq.Prepare(bufs, true)
		if err != nil {
			b.Fatal(err)
		}
		heads[k] = h
		offsets[h] = k
		ins[k], _ = rq.DescAddr(h, 0)
	}
	// setOffset points a prepared READ at the next piece of the file.
	next := 0
	setOffset := func(h uint16) {
		var rin fuse.ReadIn
		copy(virtiofstest.StructBytes(&rin), vm.Mem[ins[offsets[h]]:])
		rin.Offset = uint64(next % fileSize)
		copy(vm.Mem[ins[offsets[h]]:], virtiofstest.StructBytes(&rin))
		next += chunk
	}
	b.SetBytes(chunk)
	runPrepared(b, rq, heads, depth, chunk+16, setOffset)
}

// benchGetattr sends one GETATTR at a time.
func benchGetattr(b *testing.B, c *virtiofstest.Client, node uint64) {
	var gin fuse.GetAttrIn
	gin.InHeader = fuse.InHeader{Length: uint32(unsafe.Sizeof(gin)), Opcode: 3, Unique: 77, NodeId: node}
	outLen := uint32(unsafe.Sizeof(fuse.OutHeader{}) + unsafe.Sizeof(fuse.AttrOut{}))
	h, err := c.Req.Prepare([]vhostusertest.Buf{
		{Data: append([]byte(nil), virtiofstest.StructBytes(&gin)...)},
		{Len: int(outLen), Writable: true},
	}, false)
	if err != nil {
		b.Fatal(err)
	}
	runPrepared(b, c.Req, []uint16{h}, 1, outLen, nil)
}
