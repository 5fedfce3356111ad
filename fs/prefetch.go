package fs

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
)

// pieceSize is the unit of read-ahead: the kernel's largest read request
// (max_read) and twice the chunk size of the chunked blob store, so one
// piece is one or two chunk fetches.
const pieceSize = 512 << 10

// maxPrefetchBytes bounds the read-ahead buffers of all open files
// together, so that many sequential readers cannot make the daemon's
// memory grow without limit: past it, reads simply go to the backend.
const maxPrefetchBytes = 64 << 20

var piecePool = sync.Pool{New: func() any { b := make([]byte, pieceSize); return &b }}

// piece is one aligned pieceSize range of a blob, read ahead.
type piece struct {
	off    int64
	done   chan struct{} // closed once buf and err are set
	buf    []byte        // the bytes read: all of the range, or less on error
	err    error
	refs   atomic.Int32 // the prefetcher's map, the fetch, and each reader copying out
	pool   *[]byte
	budget *atomic.Int64 // the filesystem's count of buffers in use
}

func (pc *piece) release() {
	if pc.refs.Add(-1) == 0 {
		piecePool.Put(pc.pool)
		pc.budget.Add(-pieceSize)
	}
}

// prefetcher reads ahead of a sequential reader: after two reads in a row,
// it keeps the next `ahead` bytes being fetched in pieces, in parallel, so
// that the kernel's next requests find their data ready instead of waiting
// for the backend (decompression, a remote fetch). Random reads go straight
// to the blob reader. It relies on ReadAt being safe for concurrent use, as
// castore.BlobReader promises.
type prefetcher struct {
	ctx    context.Context // done when the file is released
	r      io.ReaderAt
	size   int64
	ahead  int64
	budget *atomic.Int64 // shared by all files: see maxPrefetchBytes

	fetches sync.WaitGroup // fetches in flight, waited for before the reader closes

	mu     sync.Mutex
	next   int64            // end of the last read
	pieces map[int64]*piece // by index (offset / pieceSize)
}

func newPrefetcher(ctx context.Context, r io.ReaderAt, size, ahead int64, budget *atomic.Int64) *prefetcher {
	return &prefetcher{ctx: ctx, r: r, size: size, ahead: max(ahead, pieceSize), budget: budget, next: -1, pieces: map[int64]*piece{}}
}

// readAt fills p from offset off (the caller keeps within the blob).
func (f *prefetcher) readAt(ctx context.Context, p []byte, off int64) error {
	end := off + int64(len(p))
	first, last := off/pieceSize, (end-1)/pieceSize

	f.mu.Lock()
	// A read is sequential if it starts near where the last one ended: the
	// kernel sends readahead requests concurrently, so they may arrive a
	// little out of order.
	seq := f.next >= 0 && off >= f.next-f.ahead && off <= f.next+f.ahead
	f.next = end
	var use [3]*piece // a read spans at most max_read/pieceSize+1 pieces
	covered := false
	for i := first; i <= last && i-first < int64(len(use)); i++ {
		if pc := f.pieces[i]; pc != nil {
			pc.refs.Add(1)
			use[i-first] = pc
			covered = true
		}
	}
	if seq {
		for i := end / pieceSize; i*pieceSize < min(f.size, end+f.ahead); i++ {
			if f.pieces[i] == nil && !f.startLocked(i) {
				break // over budget
			}
		}
	}
	// Forget what lies behind the reader, or everything when it jumped.
	for i, pc := range f.pieces {
		if (i+1)*pieceSize <= off || !seq && (i < first || i > last) {
			delete(f.pieces, i)
			pc.release()
		}
	}
	f.mu.Unlock()

	if !covered || last-first >= int64(len(use)) {
		for _, pc := range use {
			if pc != nil {
				pc.release()
			}
		}
		return readFull(f.r, p, off)
	}
	var err error
	for i := first; i <= last; i++ {
		lo, hi := max(off, i*pieceSize), min(end, (i+1)*pieceSize)
		dst := p[lo-off : hi-off]
		pc := use[i-first]
		if pc == nil {
			if err == nil {
				err = readFull(f.r, dst, lo)
			}
			continue
		}
		if err == nil {
			select {
			case <-pc.done:
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		if err == nil {
			if pc.err == nil && int64(len(pc.buf)) >= hi-pc.off {
				copy(dst, pc.buf[lo-pc.off:hi-pc.off])
			} else {
				// The fetch failed (or was cancelled): try again
				// directly, so the error reported is this read's.
				err = readFull(f.r, dst, lo)
			}
		}
		pc.release()
	}
	return err
}

// startLocked starts fetching piece i, unless all files together hold
// maxPrefetchBytes already. f.mu is held.
func (f *prefetcher) startLocked(i int64) bool {
	if f.budget.Add(pieceSize) > maxPrefetchBytes {
		f.budget.Add(-pieceSize)
		return false
	}
	bp := piecePool.Get().(*[]byte)
	off := i * pieceSize
	n := min(pieceSize, f.size-off)
	pc := &piece{off: off, done: make(chan struct{}), pool: bp, budget: f.budget}
	pc.refs.Store(2) // the map's and the fetch's
	f.pieces[i] = pc
	f.fetches.Add(1)
	go func() {
		defer f.fetches.Done()
		defer pc.release()
		buf := (*bp)[:n]
		if err := f.ctx.Err(); err != nil {
			pc.err = err
		} else if err := readFull(f.r, buf, off); err != nil {
			pc.err = err
		} else {
			pc.buf = buf
		}
		close(pc.done)
	}()
	return true
}

// close drops every piece and waits for fetches in flight, so that the
// blob reader can be closed after it. Cancel the context first: fetches
// not yet started then end at once.
func (f *prefetcher) close() {
	f.mu.Lock()
	for i, pc := range f.pieces {
		delete(f.pieces, i)
		pc.release()
	}
	f.mu.Unlock()
	f.fetches.Wait()
}
