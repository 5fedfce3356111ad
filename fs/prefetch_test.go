package fs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// countingReader is an io.ReaderAt over data that counts calls and can be
// told to fail a range.
type countingReader struct {
	data    []byte
	calls   atomic.Int64
	bytes   atomic.Int64
	failAt  int64 // a read covering this offset fails (-1: never)
	failErr error
}

func (r *countingReader) ReadAt(p []byte, off int64) (int, error) {
	r.calls.Add(1)
	if r.failAt >= 0 && off <= r.failAt && r.failAt < off+int64(len(p)) {
		return 0, r.failErr
	}
	if off >= int64(len(r.data)) {
		return 0, io.EOF
	}
	n := copy(p, r.data[off:])
	r.bytes.Add(int64(n))
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func testData(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{9}).Read(b)
	return b
}

// Sequential, random and mixed reads all return the right bytes, and
// sequential reads are served from pieces read ahead.
func TestPrefetcherReads(t *testing.T) {
	data := testData(10*pieceSize + 12345)
	ctx := context.Background()
	r := &countingReader{data: data, failAt: -1}
	f := newPrefetcher(ctx, r, int64(len(data)), 2*pieceSize, new(atomic.Int64))
	defer f.close()
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(off, n int64) {
		t.Helper()
		n = min(n, int64(len(data))-off)
		p := make([]byte, n)
		if err := f.readAt(ctx, p, off); err != nil {
			t.Fatalf("read %d at %d: %v", n, off, err)
		}
		if !bytes.Equal(p, data[off:off+n]) {
			t.Fatalf("read %d at %d: wrong bytes", n, off)
		}
	}
	// Sequential in kernel-sized requests.
	for off := int64(0); off < int64(len(data)); off += 128 << 10 {
		check(off, 128<<10)
	}
	if got := r.bytes.Load(); got > int64(len(data))+3*pieceSize {
		t.Errorf("sequential read of %d bytes fetched %d from the backend", len(data), got)
	}
	// Random, then sequential again from a random place, in odd sizes.
	for range 200 {
		off := rng.Int64N(int64(len(data)))
		check(off, 1+rng.Int64N(pieceSize))
	}
	off := rng.Int64N(int64(len(data)) / 2)
	for off < int64(len(data)) {
		n := 1 + rng.Int64N(300<<10)
		check(off, n)
		off += n
	}
	f.mu.Lock()
	held := len(f.pieces)
	f.mu.Unlock()
	if held > 2*int(f.ahead/pieceSize)+3 {
		t.Errorf("%d pieces held for %d bytes of read-ahead", held, f.ahead)
	}
	f.close()
	if b := f.budget.Load(); b != 0 {
		t.Errorf("%d bytes of read-ahead counted after close", b)
	}
}

// Readers racing on one handle, as the kernel's asynchronous readahead
// does, each get their bytes. Run with -race.
func TestPrefetcherConcurrent(t *testing.T) {
	data := testData(8*pieceSize + 777)
	ctx := context.Background()
	f := newPrefetcher(ctx, &countingReader{data: data, failAt: -1}, int64(len(data)), 4*pieceSize, new(atomic.Int64))
	defer f.close()
	const req = 128 << 10
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			p := make([]byte, req)
			for {
				off := next.Add(req) - req
				if off >= int64(len(data)) {
					return
				}
				n := min(req, int64(len(data))-off)
				if err := f.readAt(ctx, p[:n], off); err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(p[:n], data[off:off+n]) {
					t.Errorf("wrong bytes at %d", off)
				}
			}
		})
	}
	wg.Wait()
}

// A failing backend is an error, never other bytes, whether the failure
// hits a piece read ahead or a direct read.
func TestPrefetcherErrors(t *testing.T) {
	data := testData(6 * pieceSize)
	boom := errors.New("disk on fire")
	ctx := context.Background()
	r := &countingReader{data: data, failAt: 3*pieceSize + 10, failErr: boom}
	f := newPrefetcher(ctx, r, int64(len(data)), 4*pieceSize, new(atomic.Int64))
	defer f.close()
	p := make([]byte, 128<<10)
	var err error
	off := int64(0)
	for ; off < int64(len(data)); off += int64(len(p)) {
		if err = f.readAt(ctx, p, off); err != nil {
			break
		}
		if !bytes.Equal(p, data[off:off+int64(len(p))]) {
			t.Fatalf("wrong bytes at %d", off)
		}
	}
	if !errors.Is(err, boom) || off != 3*pieceSize {
		t.Errorf("error %v at %d, want %v at %d", err, off, boom, 3*pieceSize)
	}
	// A cancelled request gives up waiting, with the context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	slow := &blockingReader{release: make(chan struct{})}
	g := newPrefetcher(ctx, slow, 4*pieceSize, 2*pieceSize, new(atomic.Int64))
	g.readAt(ctx, make([]byte, 10), 0)  // direct
	g.readAt(ctx, make([]byte, 10), 10) // sequential: starts read-ahead, which blocks
	if err := g.readAt(cctx, make([]byte, 10), pieceSize); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled read: %v", err)
	}
	close(slow.release)
	g.close()
}

type blockingReader struct{ release chan struct{} }

func (b *blockingReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= pieceSize {
		<-b.release
	}
	clear(p)
	return len(p), nil
}

// All files together keep their read-ahead under maxPrefetchBytes, and
// give it all back when closed.
func TestPrefetchBudget(t *testing.T) {
	data := testData(24 * pieceSize)
	ctx := context.Background()
	budget := new(atomic.Int64)
	var fs []*prefetcher
	for range 40 { // 40 readers × 8 MiB ahead want far more than the budget
		f := newPrefetcher(ctx, &countingReader{data: data, failAt: -1}, int64(len(data)), 8<<20, budget)
		fs = append(fs, f)
		p := make([]byte, 128<<10)
		for off := int64(0); off < 4*pieceSize; off += int64(len(p)) {
			if err := f.readAt(ctx, p, off); err != nil || !bytes.Equal(p, data[off:off+int64(len(p))]) {
				t.Fatalf("read at %d: %v", off, err)
			}
			if b := budget.Load(); b > maxPrefetchBytes {
				t.Fatalf("%d bytes of read-ahead held, budget %d", b, maxPrefetchBytes)
			}
		}
	}
	for _, f := range fs {
		f.close()
	}
	if b := budget.Load(); b != 0 {
		t.Errorf("%d bytes of read-ahead still counted after every file closed", b)
	}
}
