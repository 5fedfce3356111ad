package castoretest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/castor-nix/castor/store/castore"
)

// BlobOptions tunes RunBlobService to a backend.
type BlobOptions struct {
	// Corrupt, if set, damages the stored data of blob d (for example by
	// flipping a byte of a chunk file), so the suite can check that reads
	// report ErrCorrupt instead of returning wrong bytes.
	Corrupt func(t *testing.T, d castore.Digest)
	// LargeSize is the size of the large blob test (default 3 MiB, enough
	// for several chunks of a 256 KiB-average chunker).
	LargeSize int
}

// mustDigest parses a hex digest for fixtures.
func mustDigest(t *testing.T, s string) castore.Digest {
	t.Helper()
	d, err := castore.ParseDigest(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// PutBlob writes data through a new writer and commits it.
func PutBlob(t testing.TB, svc castore.BlobIngester, data []byte) castore.Digest {
	t.Helper()
	w, err := svc.NewBlobWriter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Write in odd-sized pieces to exercise buffering.
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 7919)
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	d, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// ReadBlob reads a whole blob.
func ReadBlob(t testing.TB, svc castore.BlobOpener, d castore.Digest) []byte {
	t.Helper()
	r, err := svc.OpenBlob(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Pattern returns n bytes mixing compressible runs and random data, seeded.
func Pattern(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; {
		run := min(n-i, 1+rng.IntN(64<<10))
		if rng.IntN(2) == 0 {
			for j := range run {
				b[i+j] = byte(rng.Uint32())
			}
		} else {
			c := byte(rng.Uint32())
			for j := range run {
				b[i+j] = c + byte(j/512)
			}
		}
		i += run
	}
	return b
}

// RunBlobService runs the blob conformance suite. newService returns a
// fresh, empty service for each subtest.
func RunBlobService(t *testing.T, newService func(t *testing.T) castore.BlobService, opts BlobOptions) {
	if opts.LargeSize == 0 {
		opts.LargeSize = 3 << 20
	}
	ctx := context.Background()

	t.Run("Vectors", func(t *testing.T) {
		svc := newService(t)
		pattern := make([]byte, 0, 255*4096)
		for range 4096 {
			for b := range 255 {
				pattern = append(pattern, byte(b))
			}
		}
		for _, c := range []struct {
			data []byte
			hex  string
		}{
			{nil, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"},
			{[]byte("Hello World!"), "5ca7815adcb484e9a136c11efe69c1d530176d549b5d18d038eb5280b4b3470c"},
			{[]byte{0, 1}, "7b7015bb92cf0b318037702a6cdd81dee41224f734684c2c122cd6359cb1ee63"},
			{pattern, "a82c5154a7a0c262c6fdb929a317585646f8fbcf80326d0a7b8747edaf2d99d2"},
		} {
			want := mustDigest(t, c.hex)
			got := PutBlob(t, svc, c.data)
			if got != want {
				t.Errorf("digest of %d bytes = %x, want %s", len(c.data), got, c.hex)
			}
			if back := ReadBlob(t, svc, got); !bytes.Equal(back, c.data) {
				t.Errorf("read back %d bytes, want the %d written", len(back), len(c.data))
			}
			st, err := svc.StatBlob(ctx, got)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size != uint64(len(c.data)) {
				t.Errorf("stat size %d, want %d", st.Size, len(c.data))
			}
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		svc := newService(t)
		d := castore.Sum([]byte("never written"))
		if _, err := svc.OpenBlob(ctx, d); !errors.Is(err, castore.ErrNotFound) {
			t.Errorf("OpenBlob of unknown digest: %v, want ErrNotFound", err)
		}
		if _, err := svc.StatBlob(ctx, d); !errors.Is(err, castore.ErrNotFound) {
			t.Errorf("StatBlob of unknown digest: %v, want ErrNotFound", err)
		}
	})

	t.Run("InvisibleUntilCommit", func(t *testing.T) {
		svc := newService(t)
		data := Pattern(opts.LargeSize, 1)
		d := castore.Sum(data)
		w, err := svc.NewBlobWriter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.StatBlob(ctx, d); !errors.Is(err, castore.ErrNotFound) {
			t.Errorf("blob visible before commit: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.StatBlob(ctx, d); !errors.Is(err, castore.ErrNotFound) {
			t.Errorf("blob visible after close without commit: %v", err)
		}
		if _, err := svc.OpenBlob(ctx, d); !errors.Is(err, castore.ErrNotFound) {
			t.Errorf("blob readable after close without commit: %v", err)
		}
	})

	t.Run("CommitTwice", func(t *testing.T) {
		svc := newService(t)
		data := Pattern(100<<10, 2)
		a := PutBlob(t, svc, data)
		b := PutBlob(t, svc, data)
		if a != b {
			t.Fatalf("same content, digests %s and %s", a, b)
		}
		if !bytes.Equal(ReadBlob(t, svc, a), data) {
			t.Fatal("content changed after writing it twice")
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		svc := newService(t)
		cctx, cancel := context.WithCancel(ctx)
		w, err := svc.NewBlobWriter(cctx)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		data := []byte("cancelled before commit")
		_, _ = w.Write(data)
		cancel()
		if _, err := w.Commit(); err == nil {
			t.Fatal("commit after cancellation succeeded")
		}
		if _, err := svc.StatBlob(ctx, castore.Sum(data)); !errors.Is(err, castore.ErrNotFound) {
			t.Errorf("cancelled blob visible: %v", err)
		}
	})

	t.Run("LargeRandomAccess", func(t *testing.T) {
		svc := newService(t)
		data := Pattern(opts.LargeSize, 3)
		d := PutBlob(t, svc, data)
		if d != castore.Sum(data) {
			t.Fatal("wrong digest for large blob")
		}
		st, err := svc.StatBlob(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size != uint64(len(data)) {
			t.Errorf("stat size %d, want %d", st.Size, len(data))
		}
		if len(st.Chunks) > 0 {
			var sum uint64
			for _, c := range st.Chunks {
				sum += c.Size
			}
			if sum != st.Size {
				t.Errorf("chunk sizes add up to %d, blob is %d", sum, st.Size)
			}
		}
		r, err := svc.OpenBlob(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if r.Size() != int64(len(data)) {
			t.Errorf("reader size %d, want %d", r.Size(), len(data))
		}
		rng := rand.New(rand.NewPCG(4, 5))
		for range 200 {
			off := rng.IntN(len(data))
			n := rng.IntN(600 << 10)
			buf := make([]byte, n)
			got, err := r.ReadAt(buf, int64(off))
			want := min(n, len(data)-off)
			if got != want || (err != nil && !(errors.Is(err, io.EOF) && got < n)) {
				t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d", n, off, got, err, want)
			}
			if !bytes.Equal(buf[:got], data[off:off+got]) {
				t.Fatalf("ReadAt(%d bytes at %d): wrong bytes", n, off)
			}
		}
		// Seek then read sequentially to the end.
		off := int64(len(data) / 3)
		if pos, err := r.Seek(off, io.SeekStart); err != nil || pos != off {
			t.Fatalf("Seek = %d, %v", pos, err)
		}
		rest, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rest, data[off:]) {
			t.Fatal("read after seek: wrong bytes")
		}
		if pos, err := r.Seek(-10, io.SeekEnd); err != nil || pos != int64(len(data)-10) {
			t.Fatalf("Seek from end = %d, %v", pos, err)
		}
		if _, err := r.Seek(-1, io.SeekStart); err == nil {
			t.Error("seek to a negative offset succeeded")
		}
	})

	t.Run("ConcurrentReaders", func(t *testing.T) {
		svc := newService(t)
		blobs := make([][]byte, 4)
		digests := make([]castore.Digest, len(blobs))
		for i := range blobs {
			blobs[i] = Pattern(opts.LargeSize/2+i*1000, uint64(10+i))
			digests[i] = PutBlob(t, svc, blobs[i])
		}
		r0, err := svc.OpenBlob(ctx, digests[0])
		if err != nil {
			t.Fatal(err)
		}
		defer r0.Close()
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for g := range 16 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), 99))
				for range 20 {
					i := rng.IntN(len(blobs))
					// Half the goroutines share one reader through ReadAt.
					if g%2 == 0 {
						off := rng.IntN(len(blobs[0]))
						buf := make([]byte, min(len(blobs[0])-off, 100<<10))
						if _, err := r0.ReadAt(buf, int64(off)); err != nil && !errors.Is(err, io.EOF) {
							errs <- err
							return
						}
						if !bytes.Equal(buf, blobs[0][off:off+len(buf)]) {
							errs <- errors.New("shared ReadAt: wrong bytes")
							return
						}
						continue
					}
					r, err := svc.OpenBlob(ctx, digests[i])
					if err != nil {
						errs <- err
						return
					}
					b, err := io.ReadAll(r)
					r.Close()
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(b, blobs[i]) {
						errs <- errors.New("concurrent read: wrong bytes")
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("Corruption", func(t *testing.T) {
		if opts.Corrupt == nil {
			t.Skip("backend gives no way to damage stored data")
		}
		svc := newService(t)
		data := Pattern(opts.LargeSize, 6)
		d := PutBlob(t, svc, data)
		opts.Corrupt(t, d)
		r, err := svc.OpenBlob(ctx, d)
		if err != nil {
			if !errors.Is(err, castore.ErrCorrupt) {
				t.Fatalf("open of damaged blob: %v, want ErrCorrupt", err)
			}
			return
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		if !errors.Is(err, castore.ErrCorrupt) {
			t.Fatalf("read of damaged blob: %d bytes, err %v; want ErrCorrupt", len(b), err)
		}
		// Whatever was returned before the error must be right.
		if !bytes.Equal(b, data[:len(b)]) {
			t.Fatal("damaged blob returned wrong bytes")
		}
	})
}
