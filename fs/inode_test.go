package fs

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/memory"
)

// These tests drive the RawFileSystem directly, as a kernel (or a virtiofs
// guest) would, without mounting.

type tree struct {
	blobs *memory.BlobService
	dirs  *memory.DirectoryService
}

func newTree() *tree {
	return &tree{blobs: memory.NewBlobService(), dirs: memory.NewDirectoryService()}
}

func (tr *tree) file(t *testing.T, data string, exec bool) castore.Node {
	t.Helper()
	w, _ := tr.blobs.NewBlobWriter(context.Background())
	w.Write([]byte(data))
	d, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return castore.Node{Kind: castore.KindFile, Digest: d, Size: uint64(len(data)), Executable: exec}
}

func (tr *tree) dir(t *testing.T, entries ...castore.NamedNode) castore.Node {
	t.Helper()
	d, err := castore.NewDirectory(entries)
	if err != nil {
		t.Fatal(err)
	}
	p := tr.dirs.NewDirectoryPutter(context.Background())
	if _, err := p.Put(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	dg, err := p.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	size, _ := d.Size()
	return castore.Node{Kind: castore.KindDirectory, Digest: dg, Size: size}
}

func named(name string, n castore.Node) castore.NamedNode {
	return castore.NamedNode{Name: name, Node: n}
}

func lookup(t *testing.T, fsys *FS, parent uint64, name string) fuse.EntryOut {
	t.Helper()
	var out fuse.EntryOut
	if st := fsys.Lookup(nil, &fuse.InHeader{NodeId: parent}, name, &out); st != fuse.OK {
		t.Fatalf("lookup %d %q: %v", parent, name, st)
	}
	return out
}

func TestLookupForgetAndParents(t *testing.T) {
	tr := newTree()
	f := tr.file(t, "x", false)
	shared := tr.dir(t, named("f", f))
	a := tr.dir(t, named("shared", shared))
	b := tr.dir(t, named("shared", shared), named("g", f))
	fsys, err := New(Roots{"a": a, "b": b}, tr.dirs, tr.blobs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fsys.Close()

	ea := lookup(t, fsys, rootID, "a")
	es := lookup(t, fsys, ea.NodeId, "shared")
	eb := lookup(t, fsys, rootID, "b")
	es2 := lookup(t, fsys, eb.NodeId, "shared")
	if es.NodeId != es2.NodeId {
		t.Fatalf("shared directory: inodes %d and %d", es.NodeId, es2.NodeId)
	}
	// ".." is the parent first seen, a, even when reached through b.
	if up := lookup(t, fsys, es.NodeId, ".."); up.NodeId != ea.NodeId {
		t.Errorf(".. of shared = %d, want a = %d", up.NodeId, ea.NodeId)
	}
	if up := lookup(t, fsys, rootID, ".."); up.NodeId != rootID {
		t.Errorf(".. of root = %d", up.NodeId)
	}
	if self := lookup(t, fsys, ea.NodeId, "."); self.NodeId != ea.NodeId {
		t.Errorf(". of a = %d", self.NodeId)
	}
	// The kernel now holds: a ×3 (lookup, "..", "."), shared ×2, b ×1,
	// root. Forget a entirely: it stays, pinned as shared's parent.
	fsys.Forget(ea.NodeId, 3)
	if fsys.inodes.get(ea.NodeId) == nil {
		t.Fatalf("a dropped while it is the parent of a live inode")
	}
	var attr fuse.AttrOut
	if st := fsys.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: es.NodeId}}, &attr); st != fuse.OK || attr.Nlink != 2 {
		t.Errorf("getattr shared: %v nlink %d", st, attr.Nlink)
	}
	// Forgetting shared drops it, and with it a.
	fsys.Forget(es.NodeId, 2)
	if fsys.inodes.get(es.NodeId) != nil || fsys.inodes.get(ea.NodeId) != nil {
		t.Errorf("shared or a still live after every reference is gone")
	}
	if n := fsys.LiveInodes(); n != 2 { // root and b
		t.Errorf("%d live inodes, want 2", n)
	}
	// Looked up again, content gets the same numbers.
	if again := lookup(t, fsys, eb.NodeId, "shared"); again.NodeId != es.NodeId {
		t.Errorf("shared renumbered: %d, then %d", es.NodeId, again.NodeId)
	}
	// Over-forgetting and forgetting unknown or root inodes is harmless.
	fsys.Forget(eb.NodeId, 100)
	fsys.Forget(12345, 1)
	fsys.Forget(rootID, 1)
	if st := fsys.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: rootID}}, &attr); st != fuse.OK {
		t.Errorf("root after forget: %v", st)
	}
}

// Distinct content whose digests share their first 8 bytes gets distinct,
// stable inodes.
func TestInodeNumberCollision(t *testing.T) {
	tab := newInodeTable()
	var d1, d2 castore.Digest
	d2[31] = 1
	n1 := castore.Node{Kind: castore.KindFile, Digest: d1, Size: 1}
	n2 := castore.Node{Kind: castore.KindFile, Digest: d2, Size: 1}
	i1 := tab.acquire(n1, tab.root, nil, 1)
	i2 := tab.acquire(n2, tab.root, nil, 1)
	if i1.id == i2.id {
		t.Fatalf("colliding content shares inode %d", i1.id)
	}
	if tab.acquire(n2, tab.root, nil, 1) != i2 || tab.acquire(n1, tab.root, nil, 1) != i1 {
		t.Errorf("lookups after a collision find other inodes")
	}
	if i1.id != contentID(n1) || tab.idFor(n2) != i2.id {
		t.Errorf("ids: %d %d, content ids %d %d", i1.id, i2.id, contentID(n1), contentID(n2))
	}
	// The empty file and the empty directory share a digest, not an inode.
	e1 := tab.acquire(castore.Node{Kind: castore.KindFile, Digest: castore.EmptyDigest}, tab.root, nil, 1)
	e2 := tab.acquire(castore.Node{Kind: castore.KindDirectory, Digest: castore.EmptyDigest}, tab.root, nil, 1)
	e3 := tab.acquire(castore.Node{Kind: castore.KindFile, Digest: castore.EmptyDigest, Executable: true}, tab.root, nil, 1)
	if e1 == e2 || e1 == e3 || e1.id == e2.id || e1.id == e3.id {
		t.Errorf("empty file, directory and executable share inodes")
	}
	for _, id := range []uint64{0, 1, ^uint64(0), fuse.FUSE_UNKNOWN_INO} {
		if usableID(id) {
			t.Errorf("reserved id %d usable", id)
		}
	}
}

// READDIRPLUS hands out references the kernel later forgets; entries that
// do not fit take none.
func TestReadDirPlusReferences(t *testing.T) {
	tr := newTree()
	var entries []castore.NamedNode
	for i := range 200 {
		entries = append(entries, named(string(rune('a'+i%26))+string(rune('a'+i/26)), tr.file(t, string(rune(i)), i%3 == 0)))
	}
	entries = append(entries, named("zdir", tr.dir(t)), named("zlink", castore.Node{Kind: castore.KindSymlink, Target: "t"}))
	root := tr.dir(t, entries...)
	fsys, _ := New(Roots{"r": root}, tr.dirs, tr.blobs, Options{})
	defer fsys.Close()
	er := lookup(t, fsys, rootID, "r")
	var open fuse.OpenOut
	if st := fsys.OpenDir(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: er.NodeId}}, &open); st != fuse.OK {
		t.Fatal(st)
	}
	if open.OpenFlags&fuse.FOPEN_CACHE_DIR == 0 {
		t.Errorf("directory listing not cacheable")
	}
	refs := map[uint64]uint64{}
	names := map[string]bool{}
	off := uint64(0)
	for {
		buf := make([]byte, 1024) // small: many calls, entries that do not fit
		list := fuse.NewDirEntryList(buf, off)
		if st := fsys.ReadDirPlus(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: er.NodeId}, Offset: off}, list); st != fuse.OK {
			t.Fatal(st)
		}
		n := 0
		for _, e := range parsePlus(list.Bytes()) {
			names[e.name] = true
			if e.nodeID != 0 {
				refs[e.nodeID]++
			}
			off = e.off
			n++
		}
		if n == 0 {
			break
		}
	}
	if len(names) != len(entries)+2 {
		t.Fatalf("listed %d names, want %d", len(names), len(entries)+2)
	}
	// Forget exactly what was handed out: only r and the root remain
	// (zdir came without attributes: its listing was not loaded).
	for id, n := range refs {
		fsys.Forget(id, n)
	}
	if n := fsys.LiveInodes(); n != 2 {
		t.Errorf("%d live inodes after forgetting every READDIRPLUS reference, want 2", n)
	}
}

type plusEntry struct {
	name   string
	nodeID uint64
	off    uint64
}

// parsePlus decodes a READDIRPLUS reply: EntryOut, then a dirent (ino,
// off, namelen, type, name padded to 8).
func parsePlus(b []byte) []plusEntry {
	var out []plusEntry
	const entryOut = 128
	for len(b) >= entryOut+24 {
		nodeID := le64(b[0:])
		d := b[entryOut:]
		off := le64(d[8:])
		nameLen := int(le32(d[16:]))
		name := string(d[24 : 24+nameLen])
		out = append(out, plusEntry{name: name, nodeID: nodeID, off: off})
		rec := entryOut + 24 + (nameLen+7)&^7
		b = b[rec:]
	}
	return out
}

func le64(b []byte) uint64 {
	return uint64(le32(b)) | uint64(le32(b[4:]))<<32
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// Lookups and forgets racing over shared content keep the table
// consistent: afterwards only the root is left. Run with -race.
func TestConcurrentLookupForget(t *testing.T) {
	tr := newTree()
	leaf := tr.dir(t, named("f", tr.file(t, "f", false)), named("l", castore.Node{Kind: castore.KindSymlink, Target: "x"}))
	mid := tr.dir(t, named("leaf1", leaf), named("leaf2", leaf), named("g", tr.file(t, "f", false)))
	roots := Roots{}
	for i := range 8 {
		roots[string(rune('a'+i))] = mid
	}
	fsys, _ := New(roots, tr.dirs, tr.blobs, Options{})
	defer fsys.Close()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range 500 {
				root := lookup(t, fsys, rootID, string(rune('a'+rng.IntN(8))))
				l := lookup(t, fsys, root.NodeId, []string{"leaf1", "leaf2"}[rng.IntN(2)])
				f := lookup(t, fsys, l.NodeId, []string{"f", "l"}[rng.IntN(2)])
				g := lookup(t, fsys, root.NodeId, "g")
				fsys.Forget(f.NodeId, 1)
				fsys.Forget(g.NodeId, 1)
				fsys.Forget(l.NodeId, 1)
				fsys.Forget(root.NodeId, 1)
			}
		})
	}
	wg.Wait()
	if n := fsys.LiveInodes(); n != 1 {
		t.Errorf("%d live inodes after balanced lookups and forgets, want 1", n)
	}
}

func TestDirectCalls(t *testing.T) {
	tr := newTree()
	f := tr.file(t, "hello", false)
	root := tr.dir(t, named("f", f), named("l", castore.Node{Kind: castore.KindSymlink, Target: "f"}))
	fsys, _ := New(Roots{"r": root}, tr.dirs, tr.blobs, Options{})
	defer fsys.Close()
	er := lookup(t, fsys, rootID, "r")
	ef := lookup(t, fsys, er.NodeId, "f")
	el := lookup(t, fsys, er.NodeId, "l")
	var neg fuse.EntryOut
	if st := fsys.Lookup(nil, &fuse.InHeader{NodeId: er.NodeId}, "missing", &neg); st != fuse.OK || neg.NodeId != 0 || neg.EntryTimeout() == 0 {
		t.Errorf("missing name in a directory: %v, node %d, timeout %v; want a cached negative entry", st, neg.NodeId, neg.EntryTimeout())
	}
	if st := fsys.Lookup(nil, &fuse.InHeader{NodeId: rootID}, "missing", &neg); st != fuse.ENOENT {
		t.Errorf("missing root: %v, want ENOENT (not cached)", st)
	}
	if st := fsys.Lookup(nil, &fuse.InHeader{NodeId: ef.NodeId}, "x", &neg); st != fuse.ENOTDIR {
		t.Errorf("lookup in a file: %v", st)
	}
	if target, st := fsys.Readlink(nil, &fuse.InHeader{NodeId: el.NodeId}); st != fuse.OK || string(target) != "f" {
		t.Errorf("readlink: %q %v", target, st)
	}
	var open fuse.OpenOut
	if st := fsys.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: ef.NodeId}, Flags: syscall.O_RDWR}, &open); st != fuse.EROFS {
		t.Errorf("open O_RDWR: %v", st)
	}
	if st := fsys.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: ef.NodeId}}, &open); st != fuse.OK || open.OpenFlags&fuse.FOPEN_KEEP_CACHE == 0 {
		t.Fatalf("open: %v flags %x", st, open.OpenFlags)
	}
	buf := make([]byte, 100)
	res, st := fsys.Read(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: ef.NodeId}, Fh: open.Fh, Offset: 1, Size: 100}, buf)
	if st != fuse.OK {
		t.Fatal(st)
	}
	if b, _ := res.Bytes(nil); string(b) != "ello" {
		t.Errorf("read at 1: %q", b)
	}
	fsys.Release(nil, &fuse.ReleaseIn{Fh: open.Fh})
	if fsys.OpenFiles() != 0 {
		t.Errorf("handle kept after release")
	}
	if _, st := fsys.Read(nil, &fuse.ReadIn{Fh: open.Fh, Size: 1}, buf); st != fuse.EBADF {
		t.Errorf("read after release: %v", st)
	}
	if st := fsys.OpenDir(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: rootID}}, &open); st != fuse.EPERM {
		t.Errorf("opendir root: %v, want EPERM", st)
	}
	for name, st := range map[string]fuse.Status{
		"mkdir":   fsys.Mkdir(nil, &fuse.MkdirIn{InHeader: fuse.InHeader{NodeId: er.NodeId}}, "d", &neg),
		"create":  fsys.Create(nil, &fuse.CreateIn{InHeader: fuse.InHeader{NodeId: er.NodeId}}, "c", &fuse.CreateOut{}),
		"unlink":  fsys.Unlink(nil, &fuse.InHeader{NodeId: er.NodeId}, "f"),
		"setattr": fsys.SetAttr(nil, &fuse.SetAttrIn{}, &fuse.AttrOut{}),
	} {
		if st != fuse.EROFS {
			t.Errorf("%s: %v", name, st)
		}
	}
	if _, st := fsys.Write(nil, &fuse.WriteIn{}, []byte("x")); st != fuse.EROFS {
		t.Errorf("write: %v", st)
	}
	var sfs fuse.StatfsOut
	if st := fsys.StatFs(nil, &fuse.InHeader{}, &sfs); st != fuse.OK || sfs.NameLen != 255 {
		t.Errorf("statfs: %v %+v", st, sfs)
	}
}

// gatedDirs blocks the first GetDirectory until released, and counts calls.
type gatedDirs struct {
	castore.DirectoryGetter
	calls   atomic.Int64
	release chan struct{}
}

func (g *gatedDirs) GetDirectory(ctx context.Context, d castore.Digest) (*castore.Directory, error) {
	if g.calls.Add(1) == 1 {
		<-g.release
	}
	return g.DirectoryGetter.GetDirectory(ctx, d)
}

// Parallel lookups reaching one unloaded directory share one fetch.
func TestDirectoryLoadsShared(t *testing.T) {
	tr := newTree()
	sub := tr.dir(t, named("f", tr.file(t, "x", false)))
	var roots = Roots{}
	for i := range 8 {
		roots[string(rune('a'+i))] = sub
	}
	g := &gatedDirs{DirectoryGetter: tr.dirs, release: make(chan struct{})}
	fsys, _ := New(roots, g, tr.blobs, Options{})
	defer fsys.Close()
	var wg sync.WaitGroup
	ids := make([]uint64, 8)
	for i := range 8 {
		wg.Go(func() { ids[i] = lookup(t, fsys, rootID, string(rune('a'+i))).NodeId })
	}
	time.Sleep(100 * time.Millisecond) // let them all reach the fetch (a scheduling aid only)
	close(g.release)
	wg.Wait()
	if n := g.calls.Load(); n != 1 {
		t.Errorf("%d directory fetches for one digest looked up 8 times at once", n)
	}
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Errorf("inodes %v", ids)
		}
	}
}
