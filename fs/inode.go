package fs

import (
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/castor-nix/castor/store/castore"
)

const rootID = fuse.FUSE_ROOT_ID

// inode is one piece of content as the kernel sees it: a blob with its
// executable bit, a directory digest or a symlink target, wherever it
// occurs.
type inode struct {
	id uint64
	// node is what the inode shows. The root has Kind directory and a zero
	// digest. For files it is the first occurrence seen (all occurrences
	// share the digest, so they share the contents).
	node castore.Node

	// dir is the directory's listing once loaded; nil for files,
	// symlinks and the root.
	dir atomic.Pointer[dirData]

	// Guarded by inodeTable.mu.
	nlookup  uint64 // the kernel's references: LOOKUP and READDIRPLUS add, FORGET subtracts
	children int64  // live inodes whose parent this is
	parent   *inode // the directory this inode was first reached through; pinned while this lives
}

// dirData is a loaded directory: its entries merged in name order, as
// READDIR lists them and LOOKUP searches them.
type dirData struct {
	entries []castore.NamedNode
	nlink   uint32
}

func newDirData(d *castore.Directory) *dirData {
	// A directory's link count is 2 (its name and its ".") plus one
	// ".." per subdirectory: tools like find rely on that convention.
	nlink := 2 + uint64(len(d.Directories))
	return &dirData{entries: d.Entries(), nlink: uint32(min(nlink, math.MaxUint32))}
}

func (d *dirData) lookup(name string) (castore.Node, bool) {
	i, ok := slices.BinarySearchFunc(d.entries, name, func(e castore.NamedNode, name string) int {
		return strings.Compare(e.Name, name)
	})
	if !ok {
		return castore.Node{}, false
	}
	return d.entries[i].Node, true
}

// Salts keep apart the numbers of different kinds of content with the same
// digest (the empty blob and the empty directory share one).
var idSalt = [...]uint64{
	0: 0x9e3779b97f4a7c15, // file
	1: 0xbf58476d1ce4e5b9, // executable file
	2: 0x94d049bb133111eb, // directory
	3: 0xd6e8feb86659fd93, // symlink
}

// contentID is the preferred inode number of a node: 64 bits of its digest
// (of its target, for a symlink), mixed with its kind.
func contentID(n castore.Node) uint64 {
	d := n.Digest
	var salt uint64
	switch n.Kind {
	case castore.KindFile:
		salt = idSalt[0]
		if n.Executable {
			salt = idSalt[1]
		}
	case castore.KindDirectory:
		salt = idSalt[2]
	case castore.KindSymlink:
		d = castore.Sum([]byte(n.Target))
		salt = idSalt[3]
	}
	return binary.LittleEndian.Uint64(d[:8]) ^ salt
}

// usableID excludes the numbers FUSE reserves: 0 (none), the root, go-fuse's
// poll hack (all ones) and FUSE_UNKNOWN_INO.
func usableID(id uint64) bool {
	return id > rootID && id != math.MaxUint64 && id != fuse.FUSE_UNKNOWN_INO
}

// sameContent reports whether a and b are shown by the same inode.
func sameContent(a, b castore.Node) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case castore.KindFile:
		return a.Digest == b.Digest && a.Executable == b.Executable
	case castore.KindDirectory:
		return a.Digest == b.Digest
	case castore.KindSymlink:
		return a.Target == b.Target
	}
	return false
}

// inodeTable holds the inodes the kernel knows.
type inodeTable struct {
	mu   sync.Mutex
	byID map[uint64]*inode // guarded by mu
	root *inode
}

func newInodeTable() *inodeTable {
	root := &inode{id: rootID, node: castore.Node{Kind: castore.KindDirectory}, nlookup: 1}
	root.parent = root
	return &inodeTable{byID: map[uint64]*inode{rootID: root}, root: root}
}

// get returns the live inode numbered id, or nil.
func (t *inodeTable) get(id uint64) *inode {
	t.mu.Lock()
	ino := t.byID[id]
	t.mu.Unlock()
	return ino
}

// findLocked returns the live inode showing n and, when there is none,
// the number a new one would get.
func (t *inodeTable) findLocked(n castore.Node) (*inode, uint64) {
	id := contentID(n)
	for {
		if usableID(id) {
			ino := t.byID[id]
			if ino == nil {
				return nil, id
			}
			if sameContent(ino.node, n) {
				return ino, id
			}
		}
		id++ // a collision of 64-bit prefixes: probe
	}
}

// loadedDir returns the listing of a live inode for directory digest d, if
// one is loaded, so that content reached again is not fetched again.
func (t *inodeTable) loadedDir(d castore.Digest) *dirData {
	t.mu.Lock()
	defer t.mu.Unlock()
	ino, _ := t.findLocked(castore.Node{Kind: castore.KindDirectory, Digest: d})
	if ino == nil {
		return nil
	}
	return ino.dir.Load()
}

// acquire returns the inode showing n, creating it under parent if it is
// not live, and adds count kernel references to it. dd, if not nil, is the
// directory's listing.
func (t *inodeTable) acquire(n castore.Node, parent *inode, dd *dirData, count uint64) *inode {
	t.mu.Lock()
	defer t.mu.Unlock()
	ino, id := t.findLocked(n)
	if ino == nil {
		ino = &inode{id: id, node: n, parent: parent}
		parent.children++
		t.byID[id] = ino
	}
	ino.nlookup += count
	if dd != nil && ino.dir.Load() == nil {
		ino.dir.Store(dd)
	}
	return ino
}

// forget drops n kernel references to inode id; an inode without
// references and children is removed, and so, in turn, may be its parent.
func (t *inodeTable) forget(id, n uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ino := t.byID[id]
	if ino == nil || ino == t.root {
		return
	}
	ino.nlookup -= min(n, ino.nlookup)
	for ino != t.root && ino.nlookup == 0 && ino.children == 0 {
		if t.byID[ino.id] == ino { // a kernel that broke the protocol could have us see a dead one
			delete(t.byID, ino.id)
		}
		p := ino.parent
		ino.parent = nil
		p.children--
		ino = p
	}
}

// len returns the number of live inodes, the root included.
func (t *inodeTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}
