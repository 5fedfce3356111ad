package objectstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync/atomic"

	"github.com/castor-nix/castor/store/castore"
)

// bytesReader serves a blob held whole in memory: a one-chunk blob, its
// chunk verified when loaded. The slice is shared with the cache and never
// written.
type bytesReader struct {
	*bytes.Reader
	size int64
}

var _ castore.BlobReader = (*bytesReader)(nil)

func newBytesReader(b []byte) *bytesReader {
	return &bytesReader{Reader: bytes.NewReader(b), size: int64(len(b))}
}

func (r *bytesReader) Size() int64  { return r.size }
func (r *bytesReader) Close() error { return nil }

// chunkedReader serves a blob of several chunks, loading each through the
// store's cache when first touched. ReadAt may be called concurrently;
// Read, Seek and Close belong to one goroutine at a time.
type chunkedReader struct {
	s    *Store
	d    castore.Digest
	refs []chunkRef
	size int64

	// Read/Seek state. Read feeds what it returns, while it reads in
	// order from the start, to a goroutine hashing the whole blob: it
	// receives slices of the cached chunks (never modified), so hashing
	// costs the reader no copy and runs beside it.
	pos     int64
	hashed  int64               // bytes sent to hashIn; Read hashes while pos == hashed
	hashIn  chan []byte         // nil until the first Read at 0, and once closed
	hashOut chan castore.Digest // the hasher's result
	err     error               // sticky: the whole-blob check failed

	// lastChunk is the chunk the latest read ended in, to tell sequential
	// reads (which get read-ahead) from random ones.
	lastChunk atomic.Int64
	closed    atomic.Bool
}

var _ castore.BlobReader = (*chunkedReader)(nil)

func (s *Store) newChunkedReader(d castore.Digest, refs []chunkRef) *chunkedReader {
	last := refs[len(refs)-1]
	r := &chunkedReader{s: s, d: d, refs: refs, size: last.offset + last.size}
	r.lastChunk.Store(-1)
	return r
}

func (r *chunkedReader) Size() int64 { return r.size }

func (r *chunkedReader) Close() error {
	r.closed.Store(true)
	r.stopHashing()
	return nil
}

// chunkAt returns the index of the chunk holding byte off (0 <= off < size).
func (r *chunkedReader) chunkAt(off int64) int {
	return sort.Search(len(r.refs), func(i int) bool { return r.refs[i].offset+r.refs[i].size > off })
}

// ReadAt implements io.ReaderAt. Each chunk is verified against its
// digest when loaded; a damaged chunk yields an error wrapping
// castore.ErrCorrupt, with the bytes before it.
func (r *chunkedReader) ReadAt(p []byte, off int64) (int, error) {
	return r.readAt(p, off, nil)
}

// readAt reads like ReadAt, and passes each piece of chunk it copied from
// to sink, if not nil.
func (r *chunkedReader) readAt(p []byte, off int64, sink func([]byte)) (int, error) {
	if r.closed.Load() {
		return 0, os.ErrClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("blob %s: ReadAt at negative offset %d", r.d, off)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	first := r.chunkAt(off)
	end := min(off+int64(len(p)), r.size)
	last := r.chunkAt(end - 1)
	r.readAhead(first, last)
	n := 0
	for i := first; i <= last; i++ {
		ref := r.refs[i]
		data, err := r.s.loadChunk(ref.digest, ref.size)
		if err != nil {
			return n, fmt.Errorf("blob %s: %w", r.d, err)
		}
		piece := data[off-ref.offset:]
		k := copy(p[n:], piece)
		if sink != nil {
			sink(piece[:k])
		}
		n += k
		off += int64(k)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readAhead starts background loads of the chunks after last when the
// read of first..last continues the previous one.
func (r *chunkedReader) readAhead(first, last int) {
	prev := int(r.lastChunk.Swap(int64(last)))
	if first != prev && first != prev+1 {
		return
	}
	for j := last + 1; j <= last+r.s.cfg.readAhead && j < len(r.refs); j++ {
		r.s.prefetch(r.refs[j])
	}
}

// Read implements io.Reader. A reader that reads from the start to the end
// in order also checks the whole blob against its digest, and reports a
// mismatch instead of the last bytes.
func (r *chunkedReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.pos >= r.size {
		return 0, io.EOF
	}
	var sink func([]byte)
	if r.pos == r.hashed && r.pos == 0 && r.hashIn == nil && r.hashOut == nil {
		r.startHashing()
	}
	if r.pos == r.hashed && r.hashIn != nil {
		sink = func(b []byte) { r.hashIn <- b }
	}
	n, err := r.readAt(p, r.pos, sink)
	if sink != nil {
		r.hashed += int64(n)
		if r.hashed == r.size {
			close(r.hashIn)
			r.hashIn = nil
			if <-r.hashOut != r.d {
				r.err = fmt.Errorf("blob %s: %w: its chunks do not hash to the blob's digest", r.d, castore.ErrCorrupt)
				return 0, r.err
			}
		}
	}
	r.pos += int64(n)
	if errors.Is(err, io.EOF) && n > 0 {
		err = nil
	}
	return n, err
}

// startHashing starts the goroutine hashing the whole blob.
func (r *chunkedReader) startHashing() {
	in := make(chan []byte, 16)
	out := make(chan castore.Digest, 1)
	r.hashIn, r.hashOut = in, out
	go func() {
		h := castore.NewHasher()
		for b := range in {
			h.Write(b)
		}
		out <- castore.DigestOf(h)
	}()
}

// stopHashing ends the hasher goroutine, if running.
func (r *chunkedReader) stopHashing() {
	if r.hashIn != nil {
		close(r.hashIn)
		r.hashIn = nil
	}
}

// Seek implements io.Seeker.
func (r *chunkedReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.pos + offset
	case io.SeekEnd:
		abs = r.size + offset
	default:
		return 0, fmt.Errorf("blob %s: Seek: invalid whence %d", r.d, whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("blob %s: Seek to negative position %d", r.d, abs)
	}
	r.pos = abs
	return abs, nil
}

// prefetch loads chunk ref into the cache in the background, unless it is
// there already or the cache is off. At most cap(bgSem) loads run at once;
// the others wait their turn (and find nothing to do if the reader got
// there first).
func (s *Store) prefetch(ref chunkRef) {
	if s.cfg.cacheBytes == 0 || s.cache.has(ref.digest) {
		return
	}
	s.bgMu.RLock()
	defer s.bgMu.RUnlock()
	if s.closed.Load() {
		return
	}
	s.bgWG.Add(1)
	go func() {
		defer s.bgWG.Done()
		select {
		case s.bgSem <- struct{}{}:
		case <-s.bgStop:
			return
		}
		defer func() { <-s.bgSem }()
		if s.cache.has(ref.digest) {
			return
		}
		// Errors are left for the reader to meet when it gets there.
		_, _ = s.loadChunk(ref.digest, ref.size)
	}()
}
