package objectstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc" // registers fastcdc-v1.0.0
	"golang.org/x/sys/unix"

	"github.com/castor-nix/castor/store/castore"
)

// The write path.
//
// A blob of at most MinChunkSize bytes (most files) is one chunk: it is
// buffered and, at Commit, hashed once (its chunk digest is its digest),
// compressed and written on the caller's goroutine, in about six system
// calls.
//
// A larger blob goes through a pipeline, so that the caller's Write only
// copies bytes:
//
//	Write ─slabs─▶ hasher ─slabs─▶ chunker ─chunks─▶ workers (N)
//	               (BLAKE3 of      (FastCDC)         (BLAKE3 of the chunk,
//	                the blob)                         skip if present, else
//	                                                  compress and write)
//
// Memory is bounded whatever the blob's size: a slab queues between stages
// and at most N+2 chunks are in flight, about 8 MiB per writer.
// Commit waits for the pipeline, then publishes the chunk list.

const (
	// chunkerAlgorithm is go-cdc-chunkers' FastCDC as the paper gives it.
	chunkerAlgorithm = "fastcdc-v1.0.0"
	// slabSize is the unit Write hands to the pipeline.
	slabSize = 512 << 10
	// smallMax is the largest blob written without the pipeline: a blob no
	// larger than the minimum chunk size is always one chunk.
	smallMax = MinChunkSize
)

// Buffer pools. Slabs carry input between stages; chunk buffers hold one
// chunk's bytes; frame buffers one encoded chunk file.
var (
	smallBufs  = sync.Pool{New: func() any { b := make([]byte, 0, smallMax); return &b }}
	slabBufs   = sync.Pool{New: func() any { b := make([]byte, 0, slabSize); return &b }}
	chunkBufs  = sync.Pool{New: func() any { b := make([]byte, 0, MaxChunkSize); return &b }}
	frameBufs  = sync.Pool{New: func() any { b := make([]byte, 0, rawFrameSize(MaxChunkSize)); return &b }}
	cdcBuffers = sync.Pool{New: func() any { b := make([]byte, 2*MaxChunkSize); return &b }}
)

func getPooled(p *sync.Pool) []byte { return (*p.Get().(*[]byte))[:0] }
func putPooled(p *sync.Pool, b []byte) {
	b = b[:0]
	p.Put(&b)
}

// NewBlobWriter implements castore.BlobIngester.
func (s *Store) NewBlobWriter(ctx context.Context) (castore.BlobWriter, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return &blobWriter{s: s, ctx: ctx}, nil
}

// blobWriter is used by one goroutine (the pipeline's goroutines are its
// own).
type blobWriter struct {
	s   *Store
	ctx context.Context

	buf  []byte    // bytes not yet handed on: a small buffer, then slabs
	pipe *pipeline // nil while the blob fits in the small buffer
	done bool      // committed or closed
	err  error     // sticky
}

var (
	_ castore.BlobWriter = (*blobWriter)(nil)
	_ io.ReaderFrom      = (*blobWriter)(nil)
)

func (w *blobWriter) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return errors.New("objectstore: blob writer used after Commit or Close")
	}
	if err := w.s.check(w.ctx); err != nil {
		return err
	}
	if w.pipe != nil {
		return w.pipe.failed()
	}
	return nil
}

// room makes sure w.buf has free space, handing a full buffer to the
// pipeline (starting it on the first).
func (w *blobWriter) room() error {
	if w.buf == nil {
		w.buf = getPooled(&smallBufs)
	}
	if len(w.buf) < cap(w.buf) {
		return nil
	}
	if w.pipe == nil {
		w.pipe = w.s.startPipeline(w.ctx)
	}
	full := w.buf
	if cap(full) == smallMax {
		// The pipeline recycles slabs only; keep the small buffer's pool
		// for small blobs by copying it into a slab.
		full = append(getPooled(&slabBufs), w.buf...)
		putPooled(&smallBufs, w.buf)
	}
	w.buf = getPooled(&slabBufs)
	return w.pipe.send(full)
}

func (w *blobWriter) Write(p []byte) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	n := 0
	for n < len(p) {
		if err := w.room(); err != nil {
			w.err = err
			return n, err
		}
		k := copy(w.buf[len(w.buf):cap(w.buf)], p[n:])
		w.buf = w.buf[:len(w.buf)+k]
		n += k
	}
	return n, nil
}

// ReadFrom implements io.ReaderFrom: io.Copy into a writer reads straight
// into the pipeline's buffers.
func (w *blobWriter) ReadFrom(r io.Reader) (int64, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	var total int64
	for empty := 0; ; {
		if err := w.room(); err != nil {
			w.err = err
			return total, err
		}
		n, err := r.Read(w.buf[len(w.buf):cap(w.buf)])
		w.buf = w.buf[:len(w.buf)+n]
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		if n > 0 {
			empty = 0
			continue
		}
		if cerr := w.usable(); cerr != nil {
			return total, cerr
		}
		if empty++; empty == 100 {
			return total, io.ErrNoProgress // as bufio does with such readers
		}
	}
}

// Commit implements castore.BlobWriter.
func (w *blobWriter) Commit() (castore.Digest, error) {
	if err := w.usable(); err != nil {
		return castore.Digest{}, err
	}
	var d castore.Digest
	var err error
	if w.pipe == nil && len(w.buf) <= smallMax {
		d, err = w.s.putSmall(w.ctx, w.buf)
	} else {
		d, err = w.commitPipeline()
	}
	w.release()
	if err != nil {
		w.err = err
		return castore.Digest{}, err
	}
	return d, nil
}

func (w *blobWriter) commitPipeline() (castore.Digest, error) {
	if w.pipe == nil {
		w.pipe = w.s.startPipeline(w.ctx)
	}
	p := w.pipe
	if len(w.buf) > 0 {
		last := w.buf
		if cap(last) == smallMax {
			last = append(getPooled(&slabBufs), w.buf...)
			putPooled(&smallBufs, w.buf)
		}
		w.buf = nil
		if err := p.send(last); err != nil {
			p.abort()
			return castore.Digest{}, err
		}
	}
	close(p.hashIn)
	p.wg.Wait()
	if err := p.failed(); err != nil {
		return castore.Digest{}, err
	}
	if err := w.s.check(w.ctx); err != nil {
		return castore.Digest{}, err
	}
	d := p.digest
	metas := make([]castore.ChunkMeta, len(p.chunks))
	for i, c := range p.chunks {
		metas[i] = castore.ChunkMeta{Digest: c.digest, Size: uint64(c.size)}
	}
	var list []byte
	switch {
	case len(metas) == 0:
		return castore.Digest{}, errors.New("objectstore: internal error: blob without chunks")
	case len(metas) == 1:
		if metas[0].Digest != d {
			return castore.Digest{}, fmt.Errorf("objectstore: internal error: one-chunk blob %s has chunk %s", d, metas[0].Digest)
		}
	default:
		var err error
		if list, err = marshalChunkList(metas); err != nil {
			return castore.Digest{}, fmt.Errorf("objectstore: encode chunk list: %w", err)
		}
	}
	if list == nil {
		// A one-chunk blob is its chunk, visible since it was stored.
		return d, nil
	}
	// The chunk list must not name chunks a crash could still lose.
	ds := make([]castore.Digest, len(metas))
	for i, m := range metas {
		ds[i] = m.Digest
	}
	if err := w.s.packs.sealFor(ds); err != nil {
		return castore.Digest{}, fmt.Errorf("objectstore: blob %s: %w", d, err)
	}
	if err := w.s.putBlobFile(d, list); err != nil {
		return castore.Digest{}, err
	}
	return d, nil
}

// Close implements castore.BlobWriter. Uncommitted data is dropped; chunks
// already written stay (they may be shared with other blobs, and are
// harmless: nothing refers to them until a chunk list does).
func (w *blobWriter) Close() error {
	if w.pipe != nil {
		w.pipe.abort()
	}
	w.release()
	w.done = true
	return nil
}

func (w *blobWriter) release() {
	w.done = true
	if w.buf != nil {
		if cap(w.buf) == smallMax {
			putPooled(&smallBufs, w.buf)
		} else if cap(w.buf) == slabSize {
			putPooled(&slabBufs, w.buf)
		}
		w.buf = nil
	}
	if w.pipe != nil {
		w.pipe.abort()
		w.pipe = nil
	}
}

// putSmall stores a blob of one chunk from the caller's goroutine.
func (s *Store) putSmall(ctx context.Context, data []byte) (castore.Digest, error) {
	d := castore.Sum(data)
	if err := ctx.Err(); err != nil {
		return castore.Digest{}, err
	}
	// A one-chunk blob is its chunk: no chunk list to write.
	compress, release := s.mayCompressSmall()
	err := s.putChunk(d, data, compress)
	release()
	if err != nil {
		return castore.Digest{}, err
	}
	return d, nil
}

// putChunk writes chunk d unless a plausible chunk file is there already.
// A file too short to be a zstd frame (left empty by a power loss) is
// replaced.
func (s *Store) putChunk(d castore.Digest, data []byte, compress bool) error {
	if s.cfg.layout == LayoutPacks {
		return s.putPacked(d, data, compress)
	}
	path := s.chunkPath(d)
	size, ok, err := statSize(path)
	if err != nil {
		return fmt.Errorf("objectstore: %w", err)
	}
	if ok && size >= minFrameSize {
		s.stats.chunksSkipped.Add(1)
		return nil
	}
	if err := s.chunkShards.ensure(s.root, chunksDir, d); err != nil {
		return fmt.Errorf("objectstore: %w", err)
	}
	frame := getPooled(&frameBufs)
	frame = s.codec.encode(frame, data, compress && s.cfg.compression != CompressNone)
	err = s.publish(path, frame, false)
	s.stats.chunksWritten.Add(1)
	s.stats.bytesIn.Add(int64(len(data)))
	s.stats.bytesStored.Add(int64(len(frame)))
	putPooled(&frameBufs, frame)
	if err != nil {
		return fmt.Errorf("objectstore: chunk %s: %w", d, err)
	}
	return nil
}

// putPacked appends chunk d to the open pack unless a pack holds it.
func (s *Store) putPacked(d castore.Digest, data []byte, compress bool) error {
	if s.packs.has(d) {
		s.stats.chunksSkipped.Add(1)
		return nil
	}
	frame := getPooled(&frameBufs)
	frame = s.codec.encode(frame, data, compress && s.cfg.compression != CompressNone)
	wrote, err := s.packs.append(d, frame, len(data))
	if wrote {
		s.stats.chunksWritten.Add(1)
		s.stats.bytesIn.Add(int64(len(data)))
		s.stats.bytesStored.Add(int64(len(frame)))
	} else if err == nil {
		s.stats.chunksSkipped.Add(1)
	}
	putPooled(&frameBufs, frame)
	if err != nil {
		return fmt.Errorf("objectstore: chunk %s: %w", d, err)
	}
	return nil
}

// putBlobFile makes blob d visible with the given chunk list (empty for a
// one-chunk blob), after all its chunks are in place. An existing blob
// file with other contents is replaced: ours lists chunks known present,
// and the other may be damaged.
func (s *Store) putBlobFile(d castore.Digest, list []byte) error {
	path := s.blobPath(d)
	if err := s.blobShards.ensure(s.root, blobsDir, d); err != nil {
		return fmt.Errorf("objectstore: %w", err)
	}
	if len(list) == 0 && s.cfg.sync == SyncNone {
		// The common case, a new one-chunk blob, in one system call.
		err := createEmpty(path)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("objectstore: blob %s: %w", d, err)
		}
	}
	size, ok, err := statSize(path)
	if err != nil {
		return fmt.Errorf("objectstore: %w", err)
	}
	if ok && size == int64(len(list)) {
		if size == 0 {
			return nil
		}
		if b, err := readFile(path); err == nil {
			same := bytes.Equal(b, list)
			putBuf(b)
			if same {
				return nil
			}
		}
	}
	if ok && size > 0 && len(list) == 0 {
		// Snix writes a one-chunk blob as a one-entry list; keep that.
		if refs, err := s.readChunkList(d); err == nil && len(refs) == 1 && refs[0].digest == d {
			return nil
		}
	}
	if s.cfg.sync == SyncCommit {
		if err := s.syncfs(); err != nil {
			return err
		}
	}
	if !ok && len(list) == 0 {
		if err = createEmpty(path); errors.Is(err, unix.EEXIST) {
			err = nil // another writer was quicker
		}
	} else {
		err = s.publish(path, list, false)
	}
	if err != nil {
		return fmt.Errorf("objectstore: blob %s: %w", d, err)
	}
	if s.cfg.sync == SyncCommit {
		if err := fsyncDir(path); err != nil {
			return fmt.Errorf("objectstore: blob %s: %w", d, err)
		}
	}
	return nil
}

// pipeline is the concurrent part of a large blob's writer.
type pipeline struct {
	s      *Store
	ctx    context.Context
	cancel context.CancelFunc

	hashIn chan []byte    // slabs from Write, in order
	cdcIn  chan []byte    // slabs hashed, in order
	jobs   chan *chunkJob // chunks cut, to the workers
	slots  chan struct{}  // bounds chunks in flight

	wg      sync.WaitGroup
	errOnce sync.Once
	err     error // set once, before cancel

	// Written by the hasher and chunker goroutines, read after wg.Wait.
	digest castore.Digest
	chunks []*chunkJob
}

type chunkJob struct {
	data   []byte // the chunk's bytes, from chunkBufs; nil once written
	digest castore.Digest
	size   int64
}

func (s *Store) startPipeline(ctx context.Context) *pipeline {
	workers := s.cfg.workers
	p := &pipeline{
		s:      s,
		hashIn: make(chan []byte, 1),
		cdcIn:  make(chan []byte, 1),
		jobs:   make(chan *chunkJob, workers),
		slots:  make(chan struct{}, workers+2),
	}
	p.ctx, p.cancel = context.WithCancel(ctx)
	p.wg.Add(2 + workers)
	go p.hash()
	go p.chunk()
	for range workers {
		go p.work()
	}
	return p
}

// fail records the pipeline's first error and stops it.
func (p *pipeline) fail(err error) {
	p.errOnce.Do(func() {
		p.err = err
		p.cancel()
	})
}

// failed returns the pipeline's error: the first failure, or the
// context's end.
func (p *pipeline) failed() error {
	select {
	case <-p.ctx.Done():
	default:
		return nil
	}
	p.errOnce.Do(func() { p.err = context.Cause(p.ctx) })
	return p.err
}

// send hands a slab to the hasher.
func (p *pipeline) send(slab []byte) error {
	select {
	case p.hashIn <- slab:
		return nil
	case <-p.ctx.Done():
		putPooled(&slabBufs, slab)
		return p.failed()
	}
}

// abort stops the pipeline and waits for its goroutines.
func (p *pipeline) abort() {
	p.fail(errors.New("objectstore: blob writer closed"))
	p.wg.Wait()
}

// mayCompress decides whether a worker of p compresses its chunk. With
// CompressAuto it does only on a core the pipeline leaves spare: when a
// compression slot is free (GOMAXPROCS-2 of them, as hashing and chunking
// keep about two cores busy) and no chunk is queued behind it. The
// returned func gives the slot back.
func (s *Store) mayCompress(p *pipeline) (bool, func()) {
	if s.cfg.compression != CompressAuto {
		return s.cfg.compression != CompressNone, func() {}
	}
	if len(p.jobs) > 0 {
		return false, func() {}
	}
	select {
	case s.compressSlots <- struct{}{}:
		return true, func() { <-s.compressSlots }
	default:
		return false, func() {}
	}
}

// mayCompressSmall decides whether a small blob is compressed. With
// CompressAuto it is only on a core the writers leave spare (a free
// compression slot, GOMAXPROCS-2 of them): compressing at zstd's fastest
// level (about 210 MB/s per core) took a third of the CPU time of adding a
// tree of 20k source files on 2 cores, where reading, hashing and writing
// keep both busy. The returned func gives the slot back.
func (s *Store) mayCompressSmall() (bool, func()) {
	if s.cfg.compression != CompressAuto {
		return s.cfg.compression != CompressNone, func() {}
	}
	select {
	case s.compressSlots <- struct{}{}:
		return true, func() { <-s.compressSlots }
	default:
		return false, func() {}
	}
}

// hash computes the whole blob's digest and passes slabs on.
func (p *pipeline) hash() {
	defer p.wg.Done()
	defer close(p.cdcIn)
	h := castore.NewHasher()
	for {
		var slab []byte
		select {
		case s, ok := <-p.hashIn:
			if !ok {
				p.digest = castore.DigestOf(h)
				return
			}
			slab = s
		case <-p.ctx.Done():
			return
		}
		h.Write(slab)
		select {
		case p.cdcIn <- slab:
		case <-p.ctx.Done():
			return
		}
	}
}

// slabReader feeds slabs from the hasher to the chunker.
type slabReader struct {
	p   *pipeline
	cur []byte // slab being read
	off int
}

func (r *slabReader) Read(b []byte) (int, error) {
	for r.cur == nil || r.off == len(r.cur) {
		if r.cur != nil {
			putPooled(&slabBufs, r.cur)
			r.cur = nil
		}
		select {
		case slab, ok := <-r.p.cdcIn:
			if !ok {
				return 0, io.EOF
			}
			r.cur, r.off = slab, 0
		case <-r.p.ctx.Done():
			return 0, r.p.failed()
		}
	}
	n := copy(b, r.cur[r.off:])
	r.off += n
	return n, nil
}

// chunk cuts the stream into chunks and hands them to the workers.
func (p *pipeline) chunk() {
	defer p.wg.Done()
	defer close(p.jobs)
	buf := cdcBuffers.Get().(*[]byte)
	defer cdcBuffers.Put(buf)
	src := &slabReader{p: p}
	c, err := chunkers.NewChunkerBuffer(chunkerAlgorithm, src, &chunkers.ChunkerOpts{
		MinSize: MinChunkSize, NormalSize: AvgChunkSize, MaxSize: MaxChunkSize,
	}, *buf)
	if err != nil {
		p.fail(fmt.Errorf("objectstore: chunker: %w", err))
		return
	}
	for {
		data, err := c.Next()
		if err != nil && err != io.EOF {
			p.fail(err)
			return
		}
		if len(data) > 0 {
			select {
			case p.slots <- struct{}{}:
			case <-p.ctx.Done():
				return
			}
			job := &chunkJob{data: append(getPooled(&chunkBufs), data...), size: int64(len(data))}
			p.chunks = append(p.chunks, job)
			select {
			case p.jobs <- job:
			case <-p.ctx.Done():
				return
			}
		}
		if err == io.EOF {
			return
		}
	}
}

// work hashes chunks and writes those not yet stored.
func (p *pipeline) work() {
	defer p.wg.Done()
	for job := range p.jobs {
		if p.ctx.Err() == nil {
			job.digest = castore.Sum(job.data)
			compress, release := p.s.mayCompress(p)
			if err := p.s.putChunk(job.digest, job.data, compress); err != nil {
				p.fail(err)
			}
			release()
		}
		putPooled(&chunkBufs, job.data)
		job.data = nil
		<-p.slots
	}
}
