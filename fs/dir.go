package fs

import (
	"context"
	"iter"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/castor-nix/castor/store/castore"
)

// Directory streams: position 0 is ".", 1 is "..", 2+i is entry i. An
// entry's offset (d_off) is its position plus one, which is the position
// the kernel asks for to continue after it.

// OpenDir implements fuse.RawFileSystem. Listing the root needs
// Options.ListRoot (EPERM otherwise); other directories are loaded here
// and their listings cached by the kernel.
func (fsys *FS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	ino := fsys.inodes.get(in.NodeId)
	if ino == nil {
		return fuse.Status(syscall.ESTALE)
	}
	if ino.node.Kind != castore.KindDirectory {
		return fuse.ENOTDIR
	}
	if ino.id == rootID {
		if fsys.lister == nil {
			return fuse.EPERM
		}
		out.Fh = fsys.rootDirs.add(fsys.newRootListing())
		// No FOPEN_CACHE_DIR: the root changes as paths are added.
		return fuse.OK
	}
	if _, st := fsys.dirOf(fsys.reqCtx(cancel), ino); st != fuse.OK {
		return st
	}
	out.OpenFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_CACHE_DIR
	return fuse.OK
}

// ReleaseDir implements fuse.RawFileSystem.
func (fsys *FS) ReleaseDir(in *fuse.ReleaseIn) {
	if in.NodeId == rootID {
		if l, ok := fsys.rootDirs.remove(in.Fh); ok {
			l.close()
		}
	}
}

// FsyncDir implements fuse.RawFileSystem: there is nothing to sync.
func (fsys *FS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status { return fuse.OK }

// ReadDir implements fuse.RawFileSystem.
func (fsys *FS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return fsys.readDir(cancel, in, out, false)
}

// ReadDirPlus implements fuse.RawFileSystem. Files and symlinks come with
// their attributes (and a kernel reference); subdirectories only when
// already loaded, since their link counts need their listings: the kernel
// looks the others up when it needs them.
func (fsys *FS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return fsys.readDir(cancel, in, out, true)
}

func (fsys *FS) readDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList, plus bool) fuse.Status {
	ino := fsys.inodes.get(in.NodeId)
	if ino == nil {
		return fuse.Status(syscall.ESTALE)
	}
	if ino.id == rootID {
		l, ok := fsys.rootDirs.get(in.Fh)
		if !ok {
			return fuse.EBADF
		}
		return fsys.readRoot(l, in.Offset, out, plus)
	}
	dd, st := fsys.dirOf(fsys.reqCtx(cancel), ino)
	if st != fuse.OK {
		return st
	}
	for pos := in.Offset; ; pos++ {
		var e fuse.DirEntry
		switch {
		case pos == 0:
			e = fuse.DirEntry{Name: ".", Ino: ino.id, Mode: syscall.S_IFDIR}
		case pos == 1:
			e = fuse.DirEntry{Name: "..", Ino: fsys.parentID(ino), Mode: syscall.S_IFDIR}
		case pos-2 < uint64(len(dd.entries)):
			if !fsys.addEntry(out, ino, dd.entries[pos-2], pos, plus) {
				return fuse.OK
			}
			continue
		default:
			return fuse.OK
		}
		e.Off = pos + 1
		if plus {
			// "." and ".." go without attributes: the kernel skips
			// them when linking entries anyway.
			if out.AddDirLookupEntry(e) == nil {
				return fuse.OK
			}
		} else if !out.AddDirEntry(e) {
			return fuse.OK
		}
	}
}

// addEntry adds one named node at position pos of the listing of parent,
// taking a kernel reference for it when plus. It reports whether it fit.
func (fsys *FS) addEntry(out *fuse.DirEntryList, parent *inode, nn castore.NamedNode, pos uint64, plus bool) bool {
	e := fuse.DirEntry{Name: nn.Name, Mode: typeBits(nn.Kind), Off: pos + 1, Ino: fsys.inodes.idFor(nn.Node)}
	if !plus {
		return out.AddDirEntry(e)
	}
	eo := out.AddDirLookupEntry(e)
	if eo == nil {
		return false
	}
	var dd *dirData
	if nn.Kind == castore.KindDirectory {
		if dd = fsys.inodes.loadedDir(nn.Digest); dd == nil {
			return true // NodeId 0: no attributes, no reference
		}
	}
	child := fsys.inodes.acquire(nn.Node, parent, dd, 1)
	fsys.fillEntry(child, eo)
	return true
}

func (fsys *FS) parentID(ino *inode) uint64 {
	fsys.inodes.mu.Lock()
	defer fsys.inodes.mu.Unlock()
	if ino.parent == nil {
		return ino.id // dropped meanwhile; only a stale kernel could ask
	}
	return ino.parent.id
}

// idFor returns the number of the inode that shows n, live or not yet.
func (t *inodeTable) idFor(n castore.Node) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, id := t.findLocked(n)
	return id
}

func typeBits(k castore.NodeKind) uint32 {
	switch k {
	case castore.KindDirectory:
		return syscall.S_IFDIR
	case castore.KindSymlink:
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

// rootListing streams the root's entries to one open directory handle.
// Seeking backwards restarts the stream.
type rootListing struct {
	fsys *FS

	mu      sync.Mutex
	next    func() (castore.NamedNode, error, bool) // guarded by mu, like the rest
	stop    func()
	cancel  context.CancelFunc
	pos     uint64             // position of the entry next() or pending gives
	pending *castore.NamedNode // taken from the stream but not yet sent
}

func (fsys *FS) newRootListing() *rootListing {
	return &rootListing{fsys: fsys, pos: 2}
}

func (l *rootListing) start() {
	ctx, cancel := context.WithCancel(l.fsys.ctx)
	l.cancel = cancel
	l.next, l.stop = iter.Pull2(l.fsys.lister.ListRoots(ctx))
	l.pos, l.pending = 2, nil
}

func (l *rootListing) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stop != nil {
		l.stop()
		l.cancel()
		l.next, l.stop = nil, nil
	}
}

// take returns the entry at l.pos, ok false at the end of the stream.
func (l *rootListing) take() (castore.NamedNode, bool, error) {
	if l.pending != nil {
		return *l.pending, true, nil
	}
	for {
		nn, err, ok := l.next()
		if !ok {
			return castore.NamedNode{}, false, nil
		}
		if err != nil {
			return castore.NamedNode{}, false, err
		}
		if verr := castore.ValidateName(nn.Name); verr != nil {
			l.fsys.log.Error("root lister yields an invalid name", "name", nn.Name, "err", verr)
			continue
		}
		if verr := nn.Node.Validate(); verr != nil {
			l.fsys.log.Error("root lister yields an invalid node", "name", nn.Name, "err", verr)
			continue
		}
		l.pending = &nn
		return nn, true, nil
	}
}

func (fsys *FS) readRoot(l *rootListing, off uint64, out *fuse.DirEntryList, plus bool) fuse.Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	root := fsys.inodes.root
	for pos := off; pos < 2; pos++ {
		e := fuse.DirEntry{Name: ".", Ino: rootID, Mode: syscall.S_IFDIR, Off: pos + 1}
		if pos == 1 {
			e.Name = ".."
		}
		if plus {
			if out.AddDirLookupEntry(e) == nil {
				return fuse.OK
			}
		} else if !out.AddDirEntry(e) {
			return fuse.OK
		}
	}
	off = max(off, 2)
	if l.next == nil || off < l.pos {
		if l.next != nil {
			l.stop()
			l.cancel()
		}
		l.start()
	}
	for {
		nn, ok, err := l.take()
		if err != nil {
			return fsys.ioError(fsys.ctx, err, "listing the root")
		}
		if !ok {
			return fuse.OK
		}
		if l.pos < off { // skipping forward to where the kernel is
			l.pending = nil
			l.pos++
			continue
		}
		if !fsys.addEntry(out, root, nn, l.pos, plus) {
			return fuse.OK // stays pending for the next call
		}
		l.pending = nil
		l.pos++
	}
}
