package nar

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/castor-nix/castor/store/castore"
)

// Ingest pipeline bounds: file contents move from the NAR to the blob
// writers in chunks of at most ingestChunk bytes; at most ingestBudget
// bytes of them are in flight; ingestWorkers blob writers run at once, so
// that small files are stored in parallel and a large file's storing
// overlaps the reading and hashing of the NAR.
const (
	ingestChunk   = 1 << 20
	ingestBudget  = 16 << 20
	ingestWorkers = 4
)

// copyBufferSize is the buffer Render copies the tail of large blobs with.
const copyBufferSize = 1 << 20

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// Chunk buffers by size class, so small files do not pin large buffers.
var chunkPools = [...]struct {
	size int
	pool sync.Pool
}{{size: 4 << 10}, {size: 64 << 10}, {size: ingestChunk}}

func getChunk(n int) []byte {
	for i := range chunkPools {
		c := &chunkPools[i]
		if n <= c.size {
			if b, ok := c.pool.Get().(*[]byte); ok {
				return (*b)[:n]
			}
			return make([]byte, n, c.size)
		}
	}
	panic("nar: chunk too large")
}

func putChunk(b []byte) {
	for i := range chunkPools {
		c := &chunkPools[i]
		if cap(b) == c.size {
			b = b[:cap(b)]
			c.pool.Put(&b)
			return
		}
	}
}

// hashingReader feeds everything read through it to a hash and counts it.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n uint64
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += uint64(n)
	return n, err
}

// blobJob is one file's contents on their way to a blob writer.
type blobJob struct {
	path   string
	chunks chan chunk // closed by the parser after the last chunk
	digest castore.Digest
}

// chunk is a piece of contents and the budget units it holds.
type chunk struct {
	buf   []byte
	units int
}

// jobQueue is the capacity of a job's chunk channel. The parser may block
// on a full one: the job's worker, or the next one free, drains it, since
// every job queued before it has all its chunks already.
const jobQueue = 4

// pendingDir is a directory of the NAR whose file digests may not be known
// yet. It is put once every blob is committed.
type pendingDir struct {
	path   string
	dir    castore.Directory
	files  []*blobJob // in step with dir.Files
	parent *pendingDir
	index  int // in parent.dir.Directories
}

// Ingest reads a NAR from r into the castore and returns the root node with
// the NAR's size and SHA-256, computed from the bytes as they stream by.
//
// File contents go in chunks to blob writers from bs, several files at once
// and never one held whole: at most a few MiB are in flight. Once the NAR
// has ended and every blob is committed, the directories are put through
// one DirectoryPutter from ds, leaves first; a NAR whose root is a file or
// symlink puts none (ds may then be nil). Directory sizes follow castore's
// formula (Directory.Size).
//
// On any error (malformed NAR, wrapping ErrInvalid; the source's or a
// store's error; ctx done) no directory becomes visible and uncommitted
// blobs are discarded; blobs already committed stay, which is harmless as
// they are addressed by content. Ingest reads r to its end (data after the
// NAR is an error) and does not close it. It returns only after every
// goroutine it started has ended.
func Ingest(ctx context.Context, r io.Reader, bs castore.BlobIngester, ds castore.DirectoryIngester) (root castore.Node, narSize uint64, narSHA256 [32]byte, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	in := &ingest{
		ctx:    ctx,
		fail:   cancel,
		bs:     bs,
		jobs:   make(chan *blobJob, ingestBudget/tokenUnit),
		budget: newTokens(ingestBudget),
	}
	for range ingestWorkers {
		in.wg.Add(1)
		go in.worker()
	}
	hr := &hashingReader{r: r, h: sha256.New()}
	p, err := in.parse(NewReader(hr))
	close(in.jobs)
	in.wg.Wait()
	if err != nil {
		cancel(err)
	}
	if cause := context.Cause(ctx); cause != nil {
		// A worker's error comes first: it is why the parse stopped.
		return castore.Node{}, 0, [32]byte{}, cause
	}
	if root, err = putDirs(ctx, ds, p); err != nil {
		return castore.Node{}, 0, [32]byte{}, err
	}
	hr.h.Sum(narSHA256[:0])
	return root, hr.n, narSHA256, nil
}

type ingest struct {
	ctx    context.Context
	fail   context.CancelCauseFunc
	bs     castore.BlobIngester
	jobs   chan *blobJob
	budget tokens
	wg     sync.WaitGroup
}

// parsed is what parse found: the root node, its digest still unknown if
// it is a file (then rootJob stores it) or a directory (then dirs holds the
// directories in the order they ended: children before parents).
type parsed struct {
	root    castore.Node
	rootJob *blobJob
	dirs    []*pendingDir
}

// parse reads the NAR, sending file contents to the workers.
func (in *ingest) parse(nr *Reader) (parsed, error) {
	var (
		stack   []*pendingDir
		dirs    []*pendingDir
		root    castore.Node
		rootJob *blobJob
	)
	pop := func() {
		dirs = append(dirs, stack[len(stack)-1])
		stack = stack[:len(stack)-1]
	}
	for {
		h, err := nr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return parsed{}, err
		}
		if err := context.Cause(in.ctx); err != nil {
			return parsed{}, err
		}
		// Directories that do not hold this node have ended.
		parentPath, name := parentPath(h.Path)
		for len(stack) > 0 && stack[len(stack)-1].path != parentPath {
			pop()
		}
		var parent *pendingDir
		if len(stack) > 0 {
			parent = stack[len(stack)-1]
		}
		switch h.Type {
		case TypeRegular:
			job, err := in.file(nr, h)
			if err != nil {
				return parsed{}, err
			}
			if parent == nil {
				root, rootJob = castore.Node{Kind: castore.KindFile, Size: uint64(h.Size), Executable: h.Executable}, job
				break
			}
			parent.dir.Files = append(parent.dir.Files, castore.FileEntry{Name: name, Size: uint64(h.Size), Executable: h.Executable})
			parent.files = append(parent.files, job)
		case TypeSymlink:
			if parent == nil {
				root = castore.Node{Kind: castore.KindSymlink, Target: h.LinkTarget}
				break
			}
			parent.dir.Symlinks = append(parent.dir.Symlinks, castore.SymlinkEntry{Name: name, Target: h.LinkTarget})
		case TypeDirectory:
			d := &pendingDir{path: h.Path, parent: parent}
			if parent == nil {
				root = castore.Node{Kind: castore.KindDirectory}
			} else {
				d.index = len(parent.dir.Directories)
				parent.dir.Directories = append(parent.dir.Directories, castore.DirectoryEntry{Name: name})
			}
			stack = append(stack, d)
		}
	}
	for len(stack) > 0 {
		pop()
	}
	return parsed{root: root, rootJob: rootJob, dirs: dirs}, nil
}

// file hands the current file's contents to a worker, chunk by chunk. On
// error it fails the ingest before it closes the job's chunks, so the
// worker sees the cause and never commits a partial blob.
func (in *ingest) file(nr *Reader, h *Header) (_ *blobJob, err error) {
	job := &blobJob{path: h.Path, chunks: make(chan chunk, jobQueue)}
	defer func() {
		if err != nil {
			in.fail(err)
		}
		close(job.chunks)
	}()
	select {
	case in.jobs <- job:
	case <-in.ctx.Done():
		return nil, context.Cause(in.ctx)
	}
	for left := h.Size; ; {
		n := min(left, ingestChunk)
		u := units(n)
		if err := in.budget.acquire(in.ctx, u); err != nil {
			return nil, err
		}
		buf := getChunk(int(n))
		if _, err := io.ReadFull(nr, buf); err != nil {
			in.budget.release(u)
			putChunk(buf)
			return nil, err
		}
		select {
		case job.chunks <- chunk{buf, u}:
		case <-in.ctx.Done():
			in.budget.release(u)
			putChunk(buf)
			return nil, context.Cause(in.ctx)
		}
		left -= n
		if left == 0 {
			return job, nil
		}
	}
}

// worker stores files as blobs. After a failure it keeps draining jobs,
// giving back their budget, so the parser is never stuck.
func (in *ingest) worker() {
	defer in.wg.Done()
	for job := range in.jobs {
		if err := in.store(job); err != nil {
			in.fail(err)
		}
		for c := range job.chunks {
			in.budget.release(c.units)
			putChunk(c.buf)
		}
	}
}

func (in *ingest) store(job *blobJob) error {
	if err := context.Cause(in.ctx); err != nil {
		return err
	}
	bw, err := in.bs.NewBlobWriter(in.ctx)
	if err != nil {
		return fmt.Errorf("nar: ingest %s: %w", job.path, err)
	}
	defer bw.Close()
	for c := range job.chunks {
		_, err := bw.Write(c.buf)
		in.budget.release(c.units)
		putChunk(c.buf)
		if err != nil {
			return fmt.Errorf("nar: ingest %s: %w", job.path, err)
		}
	}
	// The parser closes chunks early only on error; the cause tells.
	if err := context.Cause(in.ctx); err != nil {
		return err
	}
	dg, err := bw.Commit()
	if err != nil {
		return fmt.Errorf("nar: ingest %s: commit blob: %w", job.path, err)
	}
	job.digest = dg
	return nil
}

// putDirs fills in digests, children first, and puts the directories
// through one putter; a file root gets its digest.
func putDirs(ctx context.Context, ds castore.DirectoryIngester, parsed parsed) (castore.Node, error) {
	root, dirs := parsed.root, parsed.dirs
	if root.Kind == castore.KindFile {
		root.Digest = parsed.rootJob.digest
		return root, nil
	}
	if root.Kind != castore.KindDirectory {
		return root, nil
	}
	if ds == nil {
		return castore.Node{}, fmt.Errorf("nar: ingest: NAR holds directories but no directory service was given")
	}
	p := ds.NewDirectoryPutter(ctx)
	for _, d := range dirs {
		for i, job := range d.files {
			d.dir.Files[i].Digest = job.digest
		}
		dg, err := p.Put(ctx, &d.dir)
		if err != nil {
			p.Abort()
			return castore.Node{}, fmt.Errorf("nar: ingest: put directory %s: %w", d.path, err)
		}
		size, ok := d.dir.Size()
		if !ok {
			p.Abort()
			return castore.Node{}, fmt.Errorf("%w: directory %s: size overflows", ErrInvalid, d.path)
		}
		if d.parent != nil {
			e := &d.parent.dir.Directories[d.index]
			e.Digest, e.Size = dg, size
		} else {
			root = castore.Node{Kind: castore.KindDirectory, Digest: dg, Size: size}
		}
	}
	dg, err := p.Close(ctx)
	if err != nil {
		return castore.Node{}, fmt.Errorf("nar: ingest: commit directories: %w", err)
	}
	if dg != root.Digest {
		return castore.Node{}, fmt.Errorf("nar: ingest: directory putter returned root %s, want %s", dg, root.Digest)
	}
	return root, nil
}

// onlyWriter hides any ReadFrom of a writer so that io.CopyBuffer uses
// the large buffer given to it.
type onlyWriter struct{ io.Writer }
