package fsimport

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"syscall"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/nar"
)

// Tuning. Each worker owns buffersPerWorker buffers of bufferSize bytes:
// the whole import holds at most Workers*buffersPerWorker*bufferSize bytes
// of file data (12 MiB with three workers), however large the files.
const (
	bufferSize       = 1 << 20
	buffersPerWorker = 4
)

// ErrUnsupported is wrapped by errors about files the import cannot
// represent: sockets, devices, FIFOs, and names or symlink targets the
// castore does not allow.
var ErrUnsupported = errors.New("unsupported file")

// Progress reports how far an import is. Totals are known once the tree
// has been walked, before any contents are read.
type Progress struct {
	// Files and Bytes count regular files and their contents hashed so far.
	Files, Bytes uint64
	// TotalFiles and TotalBytes are the tree's regular files and bytes.
	TotalFiles, TotalBytes uint64
}

// Options tune an import. The zero value is ready to use.
type Options struct {
	// Workers is how many files are read and stored at once. Zero means
	// GOMAXPROCS+1 (reading overlaps hashing and storing).
	Workers int
	// Progress, when set, is called after each piece of contents is
	// hashed and once the walk is done. Calls come from one goroutine, one
	// at a time; the function must return quickly.
	Progress func(Progress)
}

// node is one entry of the walked tree.
type node struct {
	name     string
	kind     castore.NodeKind
	size     int64
	exec     bool
	target   string
	children []*node // sorted by name
	digest   castore.Digest
}

// job is one file handed to a worker; the hasher consumes its chunks.
type job struct {
	n      *node
	path   string
	chunks chan chunk
}

// chunk is a piece of a file's contents in a worker's buffer; the hasher
// sends the buffer home when done with it.
type chunk struct {
	buf  []byte
	home chan []byte
}

// Import adds the tree at path (not following a symlink at path itself)
// to the castore and returns its root node and its NAR's size and
// SHA-256, exactly what `nix hash path` computes.
//
// The tree is walked first (metadata only), then the files are read once
// each, concurrently, their contents written to blob writers from bs and,
// in NAR order, to the NAR hash. Directories are put leaves first through
// one putter from ds, after every blob is committed; a tree whose root is a
// file or symlink puts none. A name or symlink target the castore cannot
// hold, or a file that is neither regular, directory nor symlink, is an
// error wrapping ErrUnsupported and naming the path; a file that changes
// size while being read is an error. On error or cancellation nothing
// becomes visible in ds (blobs already committed may stay: they are
// content-addressed and harmless).
func Import(ctx context.Context, path string, bs castore.BlobIngester, ds castore.DirectoryIngester, opt *Options) (root castore.Node, narSize uint64, narSHA256 [32]byte, err error) {
	if opt == nil {
		opt = &Options{}
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0) + 1
	}

	var files []job
	var prog Progress
	tree, err := walk(ctx, path, &files, &prog)
	if err != nil {
		return castore.Node{}, 0, [32]byte{}, err
	}
	if opt.Progress != nil {
		opt.Progress(prog)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	fail := func(err error) { cancel(err) }

	// Dispatch files in NAR order to the workers, and tell the hasher the
	// same order.
	jobs := make(chan *job)
	order := make(chan *job, workers+2)
	go func() {
		defer close(jobs)
		for i := range files {
			j := &files[i]
			j.chunks = make(chan chunk, buffersPerWorker)
			select {
			case order <- j:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range min(workers, len(files)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &worker{free: make(chan []byte, buffersPerWorker)}
			for j := range jobs {
				// After an error, keep taking jobs so the dispatcher is
				// never stuck; the cancelled context fails them at once.
				w.file(ctx, bs, j, fail)
			}
		}()
	}
	// Workers may be waiting on the hasher; make sure they end on error.
	defer wg.Wait()

	h := sha256.New()
	cw := &countingWriter{w: h}
	nw := nar.NewWriter(cw)
	hs := &hasher{ctx: ctx, nw: nw, order: order, prog: prog, progress: opt.Progress}
	if err := hs.node("/", tree); err != nil {
		fail(err)
		return castore.Node{}, 0, [32]byte{}, importErr(ctx, err)
	}
	if err := nw.Close(); err != nil {
		fail(err)
		return castore.Node{}, 0, [32]byte{}, err
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return castore.Node{}, 0, [32]byte{}, err
	}

	root, err = putTree(ctx, ds, tree)
	if err != nil {
		return castore.Node{}, 0, [32]byte{}, err
	}
	h.Sum(narSHA256[:0])
	return root, cw.n, narSHA256, nil
}

// importErr prefers the error that stopped the import (a worker's) over
// what the hasher saw as a consequence.
func importErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return err
}

// walk reads the tree's metadata, collecting the regular files in NAR
// order.
func walk(ctx context.Context, path string, files *[]job, prog *Progress) (*node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("fsimport: %w", err)
	}
	n := &node{name: filepath.Base(path)}
	switch mode := fi.Mode(); {
	case mode.IsRegular():
		n.kind, n.size, n.exec = castore.KindFile, fi.Size(), mode&0o100 != 0
		*files = append(*files, job{n: n, path: path})
		prog.TotalFiles++
		prog.TotalBytes += uint64(fi.Size())
	case mode&os.ModeSymlink != 0:
		n.kind = castore.KindSymlink
		if n.target, err = os.Readlink(path); err != nil {
			return nil, fmt.Errorf("fsimport: %w", err)
		}
		if err := (castore.Node{Kind: castore.KindSymlink, Target: n.target}).Validate(); err != nil {
			return nil, fmt.Errorf("fsimport: %s: %w: %w", path, ErrUnsupported, err)
		}
	case mode.IsDir():
		n.kind = castore.KindDirectory
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("fsimport: %w", err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("fsimport: %w", err)
		}
		sort.Strings(names)
		n.children = make([]*node, len(names))
		for i, name := range names {
			child := filepath.Join(path, name)
			if err := castore.ValidateName(name); err != nil {
				return nil, fmt.Errorf("fsimport: %s: %w: %w", child, ErrUnsupported, err)
			}
			if n.children[i], err = walk(ctx, child, files, prog); err != nil {
				return nil, err
			}
			n.children[i].name = name
		}
	default:
		return nil, fmt.Errorf("fsimport: %s: %w: %v (only regular files, directories and symlinks can be imported)", path, ErrUnsupported, mode.Type())
	}
	return n, nil
}

// worker reads files into its own buffers and stores them as blobs.
type worker struct {
	free      chan []byte // buffers back from the hasher
	allocated int
}

func (w *worker) buffer(ctx context.Context) ([]byte, error) {
	if w.allocated < buffersPerWorker {
		select {
		case b := <-w.free:
			return b, nil
		default:
		}
		w.allocated++
		return make([]byte, bufferSize), nil
	}
	select {
	case b := <-w.free:
		return b, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// file reads one file once, writing each piece to a blob and handing it to
// the hasher. It closes j.chunks whatever happens, after reporting an
// error to fail, so the hasher finds the cause when contents stop short.
func (w *worker) file(ctx context.Context, bs castore.BlobIngester, j *job, fail func(error)) {
	err := w.copyFile(ctx, bs, j)
	if err != nil {
		fail(err)
	}
	close(j.chunks)
}

func (w *worker) copyFile(ctx context.Context, bs castore.BlobIngester, j *job) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	f, err := os.OpenFile(j.path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("fsimport: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("fsimport: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != j.n.size {
		return fmt.Errorf("fsimport: %s changed during the import", j.path)
	}
	bw, err := bs.NewBlobWriter(ctx)
	if err != nil {
		return fmt.Errorf("fsimport: %s: %w", j.path, err)
	}
	defer bw.Close()
	for left := j.n.size; left > 0; {
		buf, err := w.buffer(ctx)
		if err != nil {
			return err
		}
		buf = buf[:min(int64(len(buf)), left)]
		if _, err := io.ReadFull(f, buf); err != nil {
			w.free <- buf[:cap(buf)]
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return fmt.Errorf("fsimport: %s shrank during the import", j.path)
			}
			return fmt.Errorf("fsimport: %w", err)
		}
		if _, err := bw.Write(buf); err != nil {
			w.free <- buf[:cap(buf)]
			return fmt.Errorf("fsimport: %s: store blob: %w", j.path, err)
		}
		// Never blocks: the channel holds as many chunks as we have buffers.
		j.chunks <- chunk{buf: buf, home: w.free}
		left -= int64(len(buf))
	}
	dg, err := bw.Commit()
	if err != nil {
		return fmt.Errorf("fsimport: %s: commit blob: %w", j.path, err)
	}
	j.n.digest = dg
	return nil
}

// hasher writes the tree's NAR into the SHA-256, in NAR order, taking
// file contents from the workers.
type hasher struct {
	ctx      context.Context
	nw       *nar.Writer
	order    chan *job
	prog     Progress
	progress func(Progress)
}

func (h *hasher) node(path string, n *node) error {
	switch n.kind {
	case castore.KindFile:
		if err := h.nw.WriteHeader(&nar.Header{Path: path, Type: nar.TypeRegular, Size: n.size, Executable: n.exec}); err != nil {
			return err
		}
		var j *job
		select {
		case j = <-h.order:
		case <-h.ctx.Done():
			return context.Cause(h.ctx)
		}
		if j.n != n {
			panic("fsimport: files dispatched out of NAR order")
		}
		var done int64
		for c := range j.chunks {
			_, err := h.nw.Write(c.buf)
			c.home <- c.buf[:cap(c.buf)]
			if err != nil {
				return err
			}
			done += int64(len(c.buf))
			h.prog.Bytes += uint64(len(c.buf))
			if h.progress != nil && done < n.size {
				h.progress(h.prog)
			}
		}
		if done == n.size {
			h.prog.Files++
			if h.progress != nil {
				h.progress(h.prog)
			}
		}
		// A worker that failed closed the channel early; the writer
		// would report missing contents, the cause says why.
		if err := context.Cause(h.ctx); err != nil {
			return err
		}
		return nil
	case castore.KindSymlink:
		return h.nw.WriteHeader(&nar.Header{Path: path, Type: nar.TypeSymlink, LinkTarget: n.target})
	default:
		if err := h.nw.WriteHeader(&nar.Header{Path: path, Type: nar.TypeDirectory}); err != nil {
			return err
		}
		for _, c := range n.children {
			p := "/" + c.name
			if path != "/" {
				p = path + p
			}
			if err := h.node(p, c); err != nil {
				return err
			}
		}
		return nil
	}
}

// putTree puts the directories of the tree, leaves first, through one
// putter and returns the root node.
func putTree(ctx context.Context, ds castore.DirectoryIngester, tree *node) (castore.Node, error) {
	if tree.kind != castore.KindDirectory {
		return leaf(tree), nil
	}
	if ds == nil {
		return castore.Node{}, fmt.Errorf("fsimport: tree has directories but no directory service was given")
	}
	p := ds.NewDirectoryPutter(ctx)
	var put func(n *node) (castore.Node, error)
	put = func(n *node) (castore.Node, error) {
		d := &castore.Directory{}
		for _, c := range n.children {
			cn := leaf(c)
			if c.kind == castore.KindDirectory {
				var err error
				if cn, err = put(c); err != nil {
					return castore.Node{}, err
				}
			}
			switch cn.Kind {
			case castore.KindDirectory:
				d.Directories = append(d.Directories, castore.DirectoryEntry{Name: c.name, Digest: cn.Digest, Size: cn.Size})
			case castore.KindFile:
				d.Files = append(d.Files, castore.FileEntry{Name: c.name, Digest: cn.Digest, Size: cn.Size, Executable: cn.Executable})
			case castore.KindSymlink:
				d.Symlinks = append(d.Symlinks, castore.SymlinkEntry{Name: c.name, Target: cn.Target})
			}
		}
		dg, err := p.Put(ctx, d)
		if err != nil {
			return castore.Node{}, fmt.Errorf("fsimport: put directory: %w", err)
		}
		size, ok := d.Size()
		if !ok {
			return castore.Node{}, fmt.Errorf("fsimport: %w: directory size overflows", castore.ErrInvalid)
		}
		return castore.Node{Kind: castore.KindDirectory, Digest: dg, Size: size}, nil
	}
	root, err := put(tree)
	if err != nil {
		p.Abort()
		return castore.Node{}, err
	}
	dg, err := p.Close(ctx)
	if err != nil {
		return castore.Node{}, fmt.Errorf("fsimport: commit directories: %w", err)
	}
	if dg != root.Digest {
		return castore.Node{}, fmt.Errorf("fsimport: directory putter returned root %s, want %s", dg, root.Digest)
	}
	return root, nil
}

func leaf(n *node) castore.Node {
	switch n.kind {
	case castore.KindFile:
		return castore.Node{Kind: castore.KindFile, Digest: n.digest, Size: uint64(n.size), Executable: n.exec}
	case castore.KindSymlink:
		return castore.Node{Kind: castore.KindSymlink, Target: n.target}
	}
	return castore.Node{}
}

type countingWriter struct {
	w io.Writer
	n uint64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += uint64(n)
	return n, err
}
