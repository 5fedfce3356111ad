package fs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/castor-nix/castor/store/castore"
)

// readv is what go-fuse looks for on a ReadResult to fill a virtio-fs
// guest's scattered buffers.
type readv interface {
	Readv(dst [][]byte) (int, fuse.Status)
}

// failingBlobs opens blobs whose ReadAt fails past failAt.
type failingBlobs struct {
	castore.BlobOpener
	failAt int64
}

type failingReader struct {
	castore.BlobReader
	failAt int64
}

func (b failingBlobs) OpenBlob(ctx context.Context, d castore.Digest) (castore.BlobReader, error) {
	r, err := b.BlobOpener.OpenBlob(ctx, d)
	if err != nil {
		return nil, err
	}
	return failingReader{r, b.failAt}, nil
}

func (r failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > r.failAt {
		return 0, errors.New("disk on fire")
	}
	return r.BlobReader.ReadAt(p, off)
}

// TestReadScattered reads through both of a READ's answers: Bytes (the
// /dev/fuse path) and Readv into buffers of uneven sizes (virtio-fs), and
// checks that a backend failure in either is EIO, not short data.
func TestReadScattered(t *testing.T) {
	data := make([]byte, 10000)
	for i := range data {
		data[i] = byte(i*7 + i>>8)
	}
	tr := newTree()
	f := tr.file(t, string(data), false)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	open := func(t *testing.T, blobs castore.BlobOpener) (*FS, uint64) {
		fsys, err := New(Roots{"f": f}, tr.dirs, blobs, Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fsys.Close() })
		e := lookup(t, fsys, rootID, "f")
		var out fuse.OpenOut
		if st := fsys.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: e.NodeId}}, &out); st != fuse.OK {
			t.Fatal(st)
		}
		return fsys, out.Fh
	}

	fsys, fh := open(t, tr.blobs)
	const off, size = 100, 9000
	res, st := fsys.Read(nil, &fuse.ReadIn{Fh: fh, Offset: off, Size: size}, nil)
	if st != fuse.OK || res.Size() != size {
		t.Fatalf("read: %v, size %d", st, res.Size())
	}
	dst := [][]byte{make([]byte, 3000), make([]byte, 4096), make([]byte, 1), make([]byte, 1903)}
	n, st := res.(readv).Readv(dst)
	if got := bytes.Join(dst, nil); st != fuse.OK || n != size || !bytes.Equal(got, data[off:off+size]) {
		t.Errorf("Readv: %d bytes, %v, data equal: %v", n, st, bytes.Equal(got, data[off:off+size]))
	}
	if b, st := res.Bytes(make([]byte, 10)); st != fuse.OK || !bytes.Equal(b, data[off:off+size]) {
		t.Errorf("Bytes into a short buffer: %d bytes, %v", len(b), st)
	}
	res, _ = fsys.Read(nil, &fuse.ReadIn{Fh: fh, Offset: 9990, Size: 4096}, nil)
	if b, st := res.Bytes(make([]byte, 4096)); st != fuse.OK || !bytes.Equal(b, data[9990:]) {
		t.Errorf("read across the end: %d bytes, %v", len(b), st)
	}

	fsys, fh = open(t, failingBlobs{tr.blobs, 5000})
	res, st = fsys.Read(nil, &fuse.ReadIn{Fh: fh, Offset: 0, Size: 8192}, nil)
	if st != fuse.OK {
		t.Fatal(st)
	}
	if n, st := res.(readv).Readv([][]byte{make([]byte, 4096), make([]byte, 4096)}); st != fuse.EIO || n != 0 {
		t.Errorf("Readv of a failing blob: %d bytes, %v; want EIO", n, st)
	}
	if b, st := res.Bytes(nil); st != fuse.EIO || b != nil {
		t.Errorf("Bytes of a failing blob: %d bytes, %v; want EIO", len(b), st)
	}
}
