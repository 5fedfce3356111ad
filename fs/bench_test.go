package fs

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/castore/objectstore"
)

// These benchmarks call the RawFileSystem directly: they measure castor's
// own cost per request, without the kernel (bench/fuse/run.sh measures
// the whole mount against tmpfs).

type malformed struct{ Roots }

func (m malformed) LookupRoot(ctx context.Context, name string) (castore.Node, error) {
	return castore.Node{}, fmt.Errorf("%q: %w", name, castore.ErrInvalid)
}

func BenchmarkLookupMissingRoot(b *testing.B) {
	fsys, _ := New(Roots{}, memory.NewDirectoryService(), memory.NewBlobService(), Options{})
	var out fuse.EntryOut
	h := &fuse.InHeader{NodeId: rootID}
	for b.Loop() {
		if st := fsys.Lookup(nil, h, "00000000000000000000000000000000-missing", &out); st != fuse.ENOENT {
			b.Fatal(st)
		}
	}
}

func BenchmarkLookupMalformedRoot(b *testing.B) {
	fsys, _ := New(malformed{}, memory.NewDirectoryService(), memory.NewBlobService(), Options{})
	var out fuse.EntryOut
	h := &fuse.InHeader{NodeId: rootID}
	for b.Loop() {
		if st := fsys.Lookup(nil, h, "garbage", &out); st != fuse.OK || out.NodeId != 0 {
			b.Fatal(st)
		}
	}
}

// benchTree is a root directory of n files.
func benchTree(b *testing.B, n int) (*FS, uint64) {
	b.Helper()
	blobs, dirs := memory.NewBlobService(), memory.NewDirectoryService()
	var entries []castore.NamedNode
	for i := range n {
		w, _ := blobs.NewBlobWriter(context.Background())
		fmt.Fprintf(w, "file %d", i)
		d, _ := w.Commit()
		entries = append(entries, castore.NamedNode{Name: fmt.Sprintf("f%06d", i), Node: castore.Node{Kind: castore.KindFile, Digest: d, Size: uint64(len(fmt.Sprintf("file %d", i)))}})
	}
	dir, _ := castore.NewDirectory(entries)
	p := dirs.NewDirectoryPutter(context.Background())
	p.Put(context.Background(), dir)
	dg, _ := p.Close(context.Background())
	fsys, _ := New(Roots{"r": {Kind: castore.KindDirectory, Digest: dg}}, dirs, blobs, Options{})
	var out fuse.EntryOut
	if st := fsys.Lookup(nil, &fuse.InHeader{NodeId: rootID}, "r", &out); st != fuse.OK {
		b.Fatal(st)
	}
	return fsys, out.NodeId
}

// BenchmarkLookupForget: a lookup of a file in a loaded directory and the
// forget that follows it, the steady state of a tree walk.
func BenchmarkLookupForget(b *testing.B) {
	fsys, dir := benchTree(b, 10000)
	var out fuse.EntryOut
	h := &fuse.InHeader{NodeId: dir}
	i := 0
	for b.Loop() {
		if st := fsys.Lookup(nil, h, fmt.Sprintf("f%06d", i%10000), &out); st != fuse.OK {
			b.Fatal(st)
		}
		fsys.Forget(out.NodeId, 1)
		i++
	}
}

// BenchmarkReadDirPlus lists a 10000-entry directory in 4 KiB replies, with
// attributes, and forgets the entries.
func BenchmarkReadDirPlus(b *testing.B) {
	fsys, dir := benchTree(b, 10000)
	buf := make([]byte, 4096)
	for b.Loop() {
		off := uint64(0)
		for {
			list := fuse.NewDirEntryList(buf, off)
			if st := fsys.ReadDirPlus(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: dir}, Offset: off}, list); st != fuse.OK {
				b.Fatal(st)
			}
			if list.Offset == off {
				break
			}
			off = list.Offset
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10000), "ns/entry")
}

// BenchmarkRead reads a 64 MiB blob sequentially in 512 KiB requests, as
// the kernel does with max_read 512 KiB, with and without prefetching,
// from memory and from the chunked on-disk store (whose 32 MiB chunk cache
// the blob outgrows, so chunks are read, decompressed and verified again
// each time: the cost of a first read through the mount, minus the kernel).
func BenchmarkRead(b *testing.B) {
	data := make([]byte, 64<<20)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < len(data); i += 8 {
		v := rng.Uint64()
		if i/(64<<10)%2 == 1 {
			v = 0x0a6b636f6c622063 // text-like half: compressible
		}
		binary.LittleEndian.PutUint64(data[i:], v)
	}
	backends := map[string]func(b *testing.B) castore.BlobService{
		"memory": func(b *testing.B) castore.BlobService { return memory.NewBlobService() },
		"objectstore": func(b *testing.B) castore.BlobService {
			s, err := objectstore.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		},
	}
	for _, backend := range []string{"memory", "objectstore"} {
		for _, pf := range []int{0, 2 << 20} {
			name := fmt.Sprintf("%s/prefetch=%dKiB", backend, max(pf, 0)>>10)
			b.Run(name, func(b *testing.B) {
				blobs := backends[backend](b)
				w, _ := blobs.NewBlobWriter(context.Background())
				w.Write(data)
				d, err := w.Commit()
				if err != nil {
					b.Fatal(err)
				}
				fsys, _ := New(Roots{"f": {Kind: castore.KindFile, Digest: d, Size: uint64(len(data))}}, memory.NewDirectoryService(), blobs, Options{Prefetch: pf})
				var out fuse.EntryOut
				fsys.Lookup(nil, &fuse.InHeader{NodeId: rootID}, "f", &out)
				buf := make([]byte, 512<<10)
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					var open fuse.OpenOut
					if st := fsys.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: out.NodeId}}, &open); st != fuse.OK {
						b.Fatal(st)
					}
					for off := 0; off < len(data); off += len(buf) {
						res, st := fsys.Read(nil, &fuse.ReadIn{Fh: open.Fh, Offset: uint64(off), Size: uint32(len(buf))}, buf)
						if st == fuse.OK {
							_, st = res.Bytes(buf)
						}
						if st != fuse.OK {
							b.Fatal(st)
						}
					}
					fsys.Release(nil, &fuse.ReleaseIn{Fh: open.Fh})
				}
			})
		}
	}
}
