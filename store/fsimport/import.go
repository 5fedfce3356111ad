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

	"golang.org/x/sys/unix"

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
	// Filter, when set, selects the entries below the root to import, as
	// Nix's path filters (builtins.path, filterSource) do: it gets each
	// entry's path (the root's path joined with the names below it) and
	// its type bits (0 for a regular file, os.ModeDir, os.ModeSymlink, or
	// others for files that cannot be imported), in NAR order, before
	// anything below a directory is read; a rejected directory is left out
	// with everything in it. The root is never filtered. Filter is called
	// on the goroutine that called Import, before any contents are read;
	// a panic in it propagates out of Import.
	Filter func(path string, mode os.FileMode) bool
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
	tree, err := walk(ctx, path, &files, &prog, opt.Filter)
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
// order. Entries are stat'ed relative to their directory's descriptor, so
// the kernel resolves one name per call, not the whole path.
func walk(ctx context.Context, path string, files *[]job, prog *Progress, filter func(string, os.FileMode) bool) (*node, error) {
	w := &walker{files: files, prog: prog, filter: filter}
	return w.walkAt(ctx, unix.AT_FDCWD, path, path, true)
}

// walker is the state of one walk.
type walker struct {
	files  *[]job
	prog   *Progress
	filter func(string, os.FileMode) bool
}

// walkAt returns the node at name in dirfd, or nil if the filter rejects
// it.
func (w *walker) walkAt(ctx context.Context, dirfd int, name, path string, root bool) (*node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	files, prog := w.files, w.prog
	var st unix.Stat_t
	if err := ignoringEINTR(func() error { return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
		return nil, pathErr("lstat", path, err)
	}
	if !root && w.filter != nil && !w.filter(path, fileModeType(st.Mode)) {
		return nil, nil
	}
	n := &node{name: name}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		n.kind, n.size, n.exec = castore.KindFile, st.Size, st.Mode&unix.S_IXUSR != 0
		*files = append(*files, job{n: n, path: path})
		prog.TotalFiles++
		prog.TotalBytes += uint64(st.Size)
	case unix.S_IFLNK:
		n.kind = castore.KindSymlink
		var buf [castore.MaxTargetLen + 1]byte
		k, err := unix.Readlinkat(dirfd, name, buf[:])
		if err != nil {
			return nil, pathErr("readlink", path, err)
		}
		if k > castore.MaxTargetLen {
			return nil, fmt.Errorf("fsimport: %s: %w: symlink target longer than %d bytes", path, ErrUnsupported, castore.MaxTargetLen)
		}
		n.target = string(buf[:k])
		if err := (castore.Node{Kind: castore.KindSymlink, Target: n.target}).Validate(); err != nil {
			return nil, fmt.Errorf("fsimport: %s: %w: %w", path, ErrUnsupported, err)
		}
	case unix.S_IFDIR:
		n.kind = castore.KindDirectory
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, pathErr("open", path, err)
		}
		// A blocking descriptor: os.NewFile keeps it out of the poller.
		f := os.NewFile(uintptr(fd), path)
		defer f.Close()
		names, err := f.Readdirnames(-1)
		if err != nil {
			return nil, fmt.Errorf("fsimport: %w", err)
		}
		sort.Strings(names)
		n.children = make([]*node, 0, len(names))
		for _, name := range names {
			child := filepath.Join(path, name)
			if err := castore.ValidateName(name); err != nil {
				return nil, fmt.Errorf("fsimport: %s: %w: %w", child, ErrUnsupported, err)
			}
			c, err := w.walkAt(ctx, fd, name, child, false)
			if err != nil {
				return nil, err
			}
			if c != nil {
				n.children = append(n.children, c)
			}
		}
	default:
		return nil, fmt.Errorf("fsimport: %s: %w: %v (only regular files, directories and symlinks can be imported)", path, ErrUnsupported, modeType(st.Mode))
	}
	return n, nil
}

// fileModeType is the os.FileMode type bits of a stat mode.
func fileModeType(m uint32) os.FileMode {
	switch m & unix.S_IFMT {
	case unix.S_IFREG:
		return 0
	case unix.S_IFDIR:
		return os.ModeDir
	case unix.S_IFLNK:
		return os.ModeSymlink
	}
	return modeType(m)
}

// modeType names a file type for errors.
func modeType(m uint32) os.FileMode {
	switch m & unix.S_IFMT {
	case unix.S_IFSOCK:
		return os.ModeSocket
	case unix.S_IFIFO:
		return os.ModeNamedPipe
	case unix.S_IFCHR:
		return os.ModeDevice | os.ModeCharDevice
	case unix.S_IFBLK:
		return os.ModeDevice
	}
	return os.ModeIrregular
}

func pathErr(op, path string, err error) error {
	return fmt.Errorf("fsimport: %w", &os.PathError{Op: op, Path: path, Err: err})
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
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
	// Raw descriptors: os.File would try (and fail) to register each
	// regular file with the poller, a syscall per file for nothing.
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Open(j.path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		if err == unix.ELOOP {
			return fmt.Errorf("fsimport: %s changed during the import (now a symlink)", j.path)
		}
		return pathErr("open", j.path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return pathErr("fstat", j.path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != j.n.size {
		return fmt.Errorf("fsimport: %s changed during the import", j.path)
	}
	f := fdReader(fd)
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
		if _, err := io.ReadFull(&f, buf); err != nil {
			w.free <- buf[:cap(buf)]
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return fmt.Errorf("fsimport: %s shrank during the import", j.path)
			}
			return pathErr("read", j.path, err)
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

// fdReader reads a raw descriptor.
type fdReader int

func (f *fdReader) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(*f), p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}
