package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/castor-nix/castor/store/castore"
)

// Defaults for Options.
const (
	// DefaultTimeout is how long the kernel may trust entries and
	// attributes: the store is immutable, so as long as it likes.
	DefaultTimeout = 365 * 24 * time.Hour
	// blockSize is the st_blksize reported, and the unit of st_blocks is 512.
	blockSize = 4096
)

// Options tune an FS. The zero value is the default: root not listable,
// extended attributes on, long timeouts.
type Options struct {
	// ListRoot allows listing the root; the RootResolver must then also
	// be a RootLister. Listing walks the whole store, so it is off by
	// default and the root answers EPERM to OPENDIR.
	ListRoot bool
	// DisableXattrs hides the user.castore.* extended attributes.
	DisableXattrs bool
	// Timeout is the entry and attribute timeout for everything but
	// missing root names (DefaultTimeout when zero).
	Timeout time.Duration
	// RootNegativeTimeout is how long the kernel may remember that a
	// well-formed name is missing from the root. Zero (the default)
	// means not at all, since store paths are added while mounted.
	RootNegativeTimeout time.Duration
	// Prefetch is how many bytes the filesystem itself reads ahead of a
	// sequential reader, in parallel pieces, for blob services that do
	// not read ahead on their own (a remote one). Zero or negative, the
	// default, leaves read-ahead to the kernel and the blob service: the
	// chunked local store reads ahead of sequential ReadAt calls, and
	// reads go to it in order, so its read-ahead works; a second layer
	// measured only as extra copying there (see bench/fuse).
	Prefetch int
	// Logger receives errors (missing or corrupt data, with digests) and
	// debug lines. slog.Default() when nil.
	Logger *slog.Logger
}

// FS is a castore as a read-only fuse.RawFileSystem. It is safe for
// concurrent use, as go-fuse requires. Create it with New; Close it when no
// server uses it any more.
type FS struct {
	// Operations FS does not implement answer ENOSYS from here.
	fuse.RawFileSystem

	roots  RootResolver
	lister RootLister // nil unless Options.ListRoot
	dirs   castore.DirectoryGetter
	blobs  castore.BlobOpener
	opts   Options
	log    *slog.Logger

	// ctx is the life of the filesystem: background work (prefetching)
	// stops when it is done.
	ctx    context.Context
	cancel context.CancelFunc

	inodes *inodeTable

	loadMu  sync.Mutex
	loading map[castore.Digest]*dirLoad // guarded by loadMu: directory fetches in flight

	// prefetchBytes counts the read-ahead buffers in use by all open
	// files, which stays under maxPrefetchBytes.
	prefetchBytes atomic.Int64

	files    handles[*fileHandle]
	rootDirs handles[*rootListing]
}

var _ fuse.RawFileSystem = (*FS)(nil)

// New returns a filesystem showing the roots that roots resolves, with
// directories from dirs and file contents from blobs.
func New(roots RootResolver, dirs castore.DirectoryGetter, blobs castore.BlobOpener, opts Options) (*FS, error) {
	if roots == nil || dirs == nil || blobs == nil {
		return nil, fmt.Errorf("fs: New needs a root resolver, a directory getter and a blob opener")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	fsys := &FS{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		roots:         roots,
		dirs:          dirs,
		blobs:         blobs,
		opts:          opts,
		log:           opts.Logger,
		inodes:        newInodeTable(),
		loading:       map[castore.Digest]*dirLoad{},
	}
	if opts.ListRoot {
		l, ok := roots.(RootLister)
		if !ok {
			return nil, fmt.Errorf("fs: ListRoot needs a root resolver that can list (%T cannot)", roots)
		}
		fsys.lister = l
	}
	fsys.ctx, fsys.cancel = context.WithCancel(context.Background())
	return fsys, nil
}

// Close stops background work and closes open files. Call it after the
// server has stopped.
func (fsys *FS) Close() error {
	fsys.cancel()
	for _, h := range fsys.files.drain() {
		h.close()
	}
	for _, l := range fsys.rootDirs.drain() {
		l.close()
	}
	return nil
}

// String implements fuse.RawFileSystem; it names the filesystem type
// ("fuse.castor").
func (fsys *FS) String() string { return "castor" }

// SetDebug implements fuse.RawFileSystem. Debug output goes through the
// logger's level instead.
func (fsys *FS) SetDebug(bool) {}

// Init implements fuse.RawFileSystem. FS needs nothing from the server, so
// it works the same under a fuse.ProtocolServer, which never calls Init.
func (fsys *FS) Init(*fuse.Server) {}

// OnUnmount implements fuse.RawFileSystem.
func (fsys *FS) OnUnmount() { fsys.cancel() }

// LiveInodes returns how many inodes the kernel holds references to, the
// root included: memory use follows this number.
func (fsys *FS) LiveInodes() int { return fsys.inodes.len() }

// reqContext turns go-fuse's per-request cancel channel (closed when the
// kernel interrupts the request) into a context for backend calls.
type reqContext struct {
	context.Context
	done <-chan struct{}
}

func (c reqContext) Done() <-chan struct{} { return c.done }

func (c reqContext) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

func (fsys *FS) reqCtx(cancel <-chan struct{}) context.Context {
	if cancel == nil {
		return fsys.ctx
	}
	return reqContext{Context: fsys.ctx, done: cancel}
}

// ioError maps a backend error to a status: cancellation is EINTR, anything
// else is logged with what was being read and answered with EIO.
func (fsys *FS) ioError(ctx context.Context, err error, msg string, args ...any) fuse.Status {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return fuse.EINTR
	}
	fsys.log.Error(msg, append(args, "err", err)...)
	return fuse.EIO
}

// fillAttr describes ino the way a canonical Nix store does: owned by
// root, mtime 1, files 0444, executables and directories 0555.
func (fsys *FS) fillAttr(ino *inode, a *fuse.Attr) {
	*a = fuse.Attr{
		Ino:     ino.id,
		Atime:   1,
		Mtime:   1,
		Ctime:   1,
		Nlink:   1,
		Blksize: blockSize,
	}
	n := &ino.node
	switch n.Kind {
	case castore.KindDirectory:
		a.Mode = syscall.S_IFDIR | 0o555
		if dd := ino.dir.Load(); dd != nil {
			a.Nlink = dd.nlink
			a.Size = uint64(len(dd.entries))
		}
		// The root's subdirectories are unknown (it is resolved on
		// lookup), and a link count of 1 is the convention for "not
		// counted" that find and fts honour.
	case castore.KindFile:
		a.Mode = syscall.S_IFREG | 0o444
		if n.Executable {
			a.Mode = syscall.S_IFREG | 0o555
		}
		a.Size = n.Size
		a.Blocks = (n.Size + 511) / 512
	case castore.KindSymlink:
		// Linux ignores a symlink's permissions and shows 0777.
		a.Mode = syscall.S_IFLNK | 0o777
		a.Size = uint64(len(n.Target))
	}
}

func (fsys *FS) fillEntry(ino *inode, out *fuse.EntryOut) {
	out.NodeId = ino.id
	out.Generation = 0
	out.SetEntryTimeout(fsys.opts.Timeout)
	out.SetAttrTimeout(fsys.opts.Timeout)
	fsys.fillAttr(ino, &out.Attr)
}

// Lookup implements fuse.RawFileSystem.
func (fsys *FS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	parent := fsys.inodes.get(h.NodeId)
	if parent == nil {
		return fuse.Status(syscall.ESTALE)
	}
	if parent.node.Kind != castore.KindDirectory {
		return fuse.ENOTDIR
	}
	ctx := fsys.reqCtx(cancel)
	switch name {
	case ".":
		return fsys.entryFor(parent, out)
	case "..":
		return fsys.entryFor(parent.parent, out)
	}
	var node castore.Node
	if parent.id == rootID {
		n, found, st := fsys.lookupRoot(ctx, name, out)
		if !found {
			return st
		}
		node = n
	} else {
		dd, st := fsys.dirOf(ctx, parent)
		if st != fuse.OK {
			return st
		}
		n, ok := dd.lookup(name)
		if !ok {
			// Immutable: the name will never appear, let the kernel
			// remember that.
			out.NodeId = 0
			out.SetEntryTimeout(fsys.opts.Timeout)
			return fuse.OK
		}
		node = n
	}
	var dd *dirData
	if node.Kind == castore.KindDirectory {
		var st fuse.Status
		if dd, st = fsys.loadDir(ctx, node.Digest); st != fuse.OK {
			return st
		}
	}
	ino := fsys.inodes.acquire(node, parent, dd, 1)
	fsys.fillEntry(ino, out)
	return fuse.OK
}

// entryFor answers a lookup of an inode the kernel already holds ("." and
// ".."), adding the reference the reply gives the kernel.
func (fsys *FS) entryFor(ino *inode, out *fuse.EntryOut) fuse.Status {
	fsys.inodes.mu.Lock()
	ino.nlookup++
	fsys.inodes.mu.Unlock()
	fsys.fillEntry(ino, out)
	return fuse.OK
}

// lookupRoot resolves a name in the root. When it finds nothing it returns
// found false and the status to answer: ENOENT, an error, or OK with a
// negative entry (NodeId 0) filled in out for the kernel to remember.
func (fsys *FS) lookupRoot(ctx context.Context, name string, out *fuse.EntryOut) (n castore.Node, found bool, st fuse.Status) {
	n, err := fsys.roots.LookupRoot(ctx, name)
	switch {
	case err == nil:
		if verr := n.Validate(); verr != nil {
			fsys.log.Error("root resolves to an invalid node", "name", name, "err", verr)
			return castore.Node{}, false, fuse.EIO
		}
		return n, true, fuse.OK
	case errors.Is(err, castore.ErrInvalid):
		// Malformed: it will never exist.
		out.NodeId = 0
		out.SetEntryTimeout(fsys.opts.Timeout)
		return castore.Node{}, false, fuse.OK
	case errors.Is(err, castore.ErrNotFound):
		if t := fsys.opts.RootNegativeTimeout; t > 0 {
			out.NodeId = 0
			out.SetEntryTimeout(t)
			return castore.Node{}, false, fuse.OK
		}
		return castore.Node{}, false, fuse.ENOENT
	}
	return castore.Node{}, false, fsys.ioError(ctx, err, "looking up a root", "name", name)
}

// dirOf returns the listing of directory inode ino, loading it if needed.
func (fsys *FS) dirOf(ctx context.Context, ino *inode) (*dirData, fuse.Status) {
	if dd := ino.dir.Load(); dd != nil {
		return dd, fuse.OK
	}
	dd, st := fsys.loadDir(ctx, ino.node.Digest)
	if st == fuse.OK {
		ino.dir.CompareAndSwap(nil, dd)
	}
	return dd, st
}

// loadDir returns the listing of directory digest d, from a live inode if
// one has it, else from the directory service. Concurrent loads of one
// digest (parallel lookups in a directory the kernel has not seen) share
// one fetch.
func (fsys *FS) loadDir(ctx context.Context, d castore.Digest) (*dirData, fuse.Status) {
	for {
		if dd := fsys.inodes.loadedDir(d); dd != nil {
			return dd, fuse.OK
		}
		fsys.loadMu.Lock()
		l, waiting := fsys.loading[d]
		if !waiting {
			l = &dirLoad{done: make(chan struct{})}
			fsys.loading[d] = l
		}
		fsys.loadMu.Unlock()
		if !waiting {
			l.dd, l.st = fsys.fetchDir(ctx, d)
			fsys.loadMu.Lock()
			delete(fsys.loading, d)
			fsys.loadMu.Unlock()
			close(l.done)
			return l.dd, l.st
		}
		select {
		case <-l.done:
		case <-ctx.Done():
			return nil, fuse.EINTR
		}
		if l.st != fuse.EINTR {
			return l.dd, l.st
		}
		// The request that fetched was interrupted, not this one: again.
	}
}

// dirLoad is a directory fetch in flight; dd and st are set before done
// is closed.
type dirLoad struct {
	done chan struct{}
	dd   *dirData
	st   fuse.Status
}

func (fsys *FS) fetchDir(ctx context.Context, d castore.Digest) (*dirData, fuse.Status) {
	dir, err := fsys.dirs.GetDirectory(ctx, d)
	if err != nil {
		if errors.Is(err, castore.ErrNotFound) {
			return nil, fsys.ioError(ctx, err, "directory missing from the store", "directory", d.String())
		}
		return nil, fsys.ioError(ctx, err, "reading a directory", "directory", d.String())
	}
	return newDirData(dir), fuse.OK
}

// Forget implements fuse.RawFileSystem.
func (fsys *FS) Forget(nodeid, nlookup uint64) {
	fsys.inodes.forget(nodeid, nlookup)
}

// GetAttr implements fuse.RawFileSystem.
func (fsys *FS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	ino := fsys.inodes.get(in.NodeId)
	if ino == nil {
		return fuse.Status(syscall.ESTALE)
	}
	if ino.node.Kind == castore.KindDirectory && ino.id != rootID {
		if _, st := fsys.dirOf(fsys.reqCtx(cancel), ino); st != fuse.OK {
			return st
		}
	}
	out.SetTimeout(fsys.opts.Timeout)
	fsys.fillAttr(ino, &out.Attr)
	return fuse.OK
}

// Statx implements fuse.RawFileSystem: ENOSYS makes the kernel fall back to
// GETATTR.
func (fsys *FS) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	return fuse.ENOSYS
}

// Access implements fuse.RawFileSystem: everything may be read (and
// searched or executed as its mode says); nothing may be written.
func (fsys *FS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	ino := fsys.inodes.get(in.NodeId)
	if ino == nil {
		return fuse.Status(syscall.ESTALE)
	}
	if in.Mask&2 != 0 { // W_OK
		return fuse.EROFS
	}
	if in.Mask&1 != 0 && ino.node.Kind == castore.KindFile && !ino.node.Executable { // X_OK
		return fuse.EACCES
	}
	return fuse.OK
}

// Readlink implements fuse.RawFileSystem.
func (fsys *FS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	ino := fsys.inodes.get(h.NodeId)
	if ino == nil {
		return nil, fuse.Status(syscall.ESTALE)
	}
	if ino.node.Kind != castore.KindSymlink {
		return nil, fuse.EINVAL
	}
	return []byte(ino.node.Target), fuse.OK
}

// StatFs implements fuse.RawFileSystem. The store has no free space to
// speak of; the counts are zero, as for other synthetic filesystems.
func (fsys *FS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	*out = fuse.StatfsOut{Bsize: blockSize, Frsize: blockSize, NameLen: castore.MaxNameLen}
	return fuse.OK
}
