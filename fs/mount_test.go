package fs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	castorfs "github.com/castor-nix/castor/fs"
	"github.com/castor-nix/castor/fs/fstest"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/memory"
)

func TestMain(m *testing.M) { fstest.Main(m) }

// logBuffer collects log lines from the filesystem, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a mounted filesystem over in-memory backends.
type env struct {
	blobs *memory.BlobService
	dirs  *memory.DirectoryService
	roots castorfs.Roots
	fsys  *castorfs.FS
	mp    string
	log   *logBuffer
}

// newEnv stores trees as roots and mounts them on a fresh directory.
func newEnv(t *testing.T, trees map[string]fstest.Node, opts castorfs.Options, mopts castorfs.MountOptions) *env {
	t.Helper()
	fstest.RequireFUSE(t)
	e := &env{blobs: memory.NewBlobService(), dirs: memory.NewDirectoryService(), roots: castorfs.Roots{}, log: &logBuffer{}}
	for name, tree := range trees {
		e.roots[name] = e.put(t, tree)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	fsys, err := castorfs.New(e.roots, e.dirs, e.blobs, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsys.Close() })
	e.fsys = fsys
	e.mp = t.TempDir()
	fstest.Mount(t, e.mp, fsys, mopts)
	return e
}

func (e *env) put(t *testing.T, tree fstest.Node) castore.Node {
	t.Helper()
	n, err := fstest.Put(context.Background(), e.blobs, e.dirs, tree)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) path(p ...string) string { return filepath.Join(append([]string{e.mp}, p...)...) }

func stat(t *testing.T, p string) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st
}

func randomTree(seed uint64, o fstest.RandomOptions) fstest.Dir {
	return fstest.Random(rand.New(rand.NewPCG(seed, seed^0x5eed)), o)
}

// The mounted tree equals the same tree written to disk: types, modes,
// sizes, symlink targets, and the hash of every file.
func TestMountMatchesDisk(t *testing.T) {
	tree := randomTree(1, fstest.RandomOptions{Files: 300, MaxSize: 2 << 20, Symlinks: 40, MaxDepth: 5, Duplicates: 0.2})
	e := newEnv(t, map[string]fstest.Node{"tree": tree, "file": fstest.File{Data: []byte("top-level file")}, "link": fstest.Symlink("tree")}, castorfs.Options{}, castorfs.MountOptions{})
	disk := filepath.Join(t.TempDir(), "tree")
	if err := fstest.WriteDisk(disk, tree); err != nil {
		t.Fatal(err)
	}
	want, err := fstest.Manifest(disk)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fstest.Manifest(e.path("tree"))
	if err != nil {
		t.Fatal(err)
	}
	if len(want) < 300 {
		t.Fatalf("random tree has only %d paths", len(want))
	}
	if d := fstest.DiffManifests(want, got); len(d) > 0 {
		t.Errorf("mounted tree differs from disk in %d paths:\n%s", len(d), strings.Join(d[:min(len(d), 20)], "\n"))
	}
	if b, err := os.ReadFile(e.path("file")); err != nil || string(b) != "top-level file" {
		t.Errorf("top-level file: %q, %v", b, err)
	}
	if target, err := os.Readlink(e.path("link")); err != nil || target != "tree" {
		t.Errorf("top-level symlink: %q, %v", target, err)
	}
	// A second walk is served from the kernel's caches and the same
	// inodes: it must be equal too.
	again, err := fstest.Manifest(e.path("tree"))
	if err != nil {
		t.Fatal(err)
	}
	if d := fstest.DiffManifests(got, again); len(d) > 0 {
		t.Errorf("second walk differs: %v", d[:min(len(d), 5)])
	}
}

// Attributes are those of a canonical Nix store.
func TestAttributes(t *testing.T) {
	tree := fstest.Dir{
		"file": fstest.File{Data: []byte("hello\n")},
		"exe":  fstest.File{Data: []byte("#!/bin/sh\n"), Executable: true},
		"big":  fstest.File{Data: bytes.Repeat([]byte{7}, 10000)},
		"link": fstest.Symlink("/nix/store/somewhere"),
		"sub":  fstest.Dir{"a": fstest.Dir{}, "b": fstest.Dir{"x": fstest.File{}}, "f": fstest.File{}},
	}
	e := newEnv(t, map[string]fstest.Node{"t": tree}, castorfs.Options{}, castorfs.MountOptions{})
	for _, c := range []struct {
		path        string
		mode        uint32
		size, nlink int64
	}{
		{"t", syscall.S_IFDIR | 0o555, 5, 3},
		{"t/file", syscall.S_IFREG | 0o444, 6, 1},
		{"t/exe", syscall.S_IFREG | 0o555, 10, 1},
		{"t/big", syscall.S_IFREG | 0o444, 10000, 1},
		{"t/link", syscall.S_IFLNK | 0o777, int64(len("/nix/store/somewhere")), 1},
		{"t/sub", syscall.S_IFDIR | 0o555, 3, 4},
		{"t/sub/a", syscall.S_IFDIR | 0o555, 0, 2},
	} {
		st := stat(t, e.path(c.path))
		if st.Mode != c.mode || st.Size != c.size || int64(st.Nlink) != c.nlink {
			t.Errorf("%s: mode %o size %d nlink %d, want %o %d %d", c.path, st.Mode, st.Size, st.Nlink, c.mode, c.size, c.nlink)
		}
		if st.Mtim.Sec != 1 || st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s: mtime %d uid %d gid %d, want 1 0 0", c.path, st.Mtim.Sec, st.Uid, st.Gid)
		}
		if st.Mode&syscall.S_IFMT == syscall.S_IFREG && st.Blocks*512 < st.Size {
			t.Errorf("%s: %d blocks for %d bytes", c.path, st.Blocks, st.Size)
		}
	}
	root := stat(t, e.mp)
	if root.Mode != syscall.S_IFDIR|0o555 {
		t.Errorf("root mode %o", root.Mode)
	}
}

// Inodes are shared by content and stable.
func TestInodeSharing(t *testing.T) {
	data := []byte("shared contents")
	sub := fstest.Dir{"x": fstest.File{Data: []byte("x")}}
	tree := fstest.Dir{
		"a":     fstest.File{Data: data},
		"b":     fstest.File{Data: data},
		"exec":  fstest.File{Data: data, Executable: true},
		"d1":    sub,
		"d2":    fstest.Dir{"deeper": sub, "c": fstest.File{Data: data}},
		"l1":    fstest.Symlink("target"),
		"l2":    fstest.Symlink("target"),
		"l3":    fstest.Symlink("other"),
		"empty": fstest.Dir{},
		"nil":   fstest.File{},
	}
	e := newEnv(t, map[string]fstest.Node{"t": tree, "t2": tree}, castorfs.Options{}, castorfs.MountOptions{})
	ino := func(p string) uint64 { return stat(t, e.path(p)).Ino }
	same := [][]string{
		{"t/a", "t/b", "t/d2/c", "t2/a"},
		{"t/d1", "t/d2/deeper", "t2/d1"},
		{"t/d1/x", "t/d2/deeper/x"},
		{"t/l1", "t/l2"},
		{"t", "t2"},
	}
	for _, group := range same {
		for _, p := range group[1:] {
			if ino(p) != ino(group[0]) {
				t.Errorf("%s and %s: different inodes %d, %d", group[0], p, ino(group[0]), ino(p))
			}
		}
	}
	distinct := []string{"t/a", "t/exec", "t/d1", "t/l1", "t/l3", "t/empty", "t/nil", "t", e.mp}
	seen := map[uint64]string{}
	for _, p := range distinct {
		if p != e.mp {
			p = e.path(p)
		}
		i := stat(t, p).Ino
		if other, dup := seen[i]; dup {
			t.Errorf("%s and %s share inode %d", other, p, i)
		}
		seen[i] = p
	}
	// Hard-link detection by tools keys on nlink > 1; shared inodes keep
	// nlink 1 for files so copies stay copies.
	if n := stat(t, e.path("t/a")).Nlink; n != 1 {
		t.Errorf("shared file nlink %d", n)
	}
	// Readdir reports the same numbers as stat, "." and ".." included.
	ents := readDirInos(t, e.path("t/d2"))
	if ents["."] != ino("t/d2") || ents[".."] != ino("t") || ents["deeper"] != ino("t/d1") || ents["c"] != ino("t/a") {
		t.Errorf("readdir inodes %v", ents)
	}
}

// readDirInos lists a directory with getdents, "." and ".." included.
func readDirInos(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	out := map[string]uint64{}
	buf := make([]byte, 4096)
	for {
		n, err := syscall.Getdents(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return out
		}
		for b := buf[:n]; len(b) > 0; {
			ino := *(*uint64)(unsafePointer(&b[0]))
			reclen := int(b[16]) | int(b[17])<<8
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			out[string(name)] = ino
			b = b[reclen:]
		}
	}
}

func TestXattrs(t *testing.T) {
	file := []byte("contents")
	tree := fstest.Dir{"f": fstest.File{Data: file}, "l": fstest.Symlink("f"), "d": fstest.Dir{}}
	e := newEnv(t, map[string]fstest.Node{"t": tree}, castorfs.Options{}, castorfs.MountOptions{})
	root := e.roots["t"]
	get := func(p, attr string) (string, error) {
		buf := make([]byte, 256)
		n, err := syscall.Getxattr(e.path(p), attr, buf)
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	if v, err := get("t/f", castorfs.XattrBlobDigest); err != nil || v != castore.Sum(file).String() {
		t.Errorf("blob digest xattr: %q, %v; want %s", v, err, castore.Sum(file))
	}
	if v, err := get("t", castorfs.XattrDirectoryDigest); err != nil || v != root.Digest.String() {
		t.Errorf("directory digest xattr: %q, %v; want %s", v, err, root.Digest)
	}
	if v, err := get("t/d", castorfs.XattrDirectoryDigest); err != nil || v != castore.EmptyDigest.String() {
		t.Errorf("empty directory digest xattr: %q, %v", v, err)
	}
	if _, err := get("t/f", castorfs.XattrDirectoryDigest); !errors.Is(err, syscall.ENODATA) {
		t.Errorf("directory xattr on a file: %v, want ENODATA", err)
	}
	if n, err := syscall.Getxattr(e.path("t/f"), castorfs.XattrBlobDigest, nil); err != nil || n != len(castore.Sum(file).String()) {
		t.Errorf("xattr size query: %d, %v", n, err)
	}
	if _, err := syscall.Getxattr(e.path("t/f"), castorfs.XattrBlobDigest, make([]byte, 4)); !errors.Is(err, syscall.ERANGE) {
		t.Errorf("small buffer: %v, want ERANGE", err)
	}
	buf := make([]byte, 256)
	n, err := syscall.Listxattr(e.path("t/f"), buf)
	if err != nil || string(buf[:n]) != castorfs.XattrBlobDigest+"\x00" {
		t.Errorf("listxattr: %q, %v", buf[:n], err)
	}

	off := newEnv(t, map[string]fstest.Node{"t": tree}, castorfs.Options{DisableXattrs: true}, castorfs.MountOptions{})
	if _, err := syscall.Getxattr(off.path("t/f"), castorfs.XattrBlobDigest, buf); err == nil {
		t.Errorf("xattrs disabled, but getxattr succeeds")
	}
}

// Every write answers EROFS: from the kernel on a read-only mount, and
// from the filesystem itself on a writable one (as a virtiofs guest may
// mount it).
func TestWritesAreEROFS(t *testing.T) {
	tree := fstest.Dir{"f": fstest.File{Data: []byte("x")}, "d": fstest.Dir{"g": fstest.File{}}, "l": fstest.Symlink("f")}
	for _, writable := range []bool{false, true} {
		t.Run(fmt.Sprintf("writable=%v", writable), func(t *testing.T) {
			e := newEnv(t, map[string]fstest.Node{"t": tree}, castorfs.Options{}, castorfs.MountOptions{Writable: writable})
			p := e.path
			ops := map[string]func() error{
				"create":     func() error { f, err := os.Create(p("t/new")); f.Close(); return err },
				"open-w":     func() error { f, err := os.OpenFile(p("t/f"), os.O_WRONLY, 0); f.Close(); return err },
				"open-rw":    func() error { f, err := os.OpenFile(p("t/f"), os.O_RDWR, 0); f.Close(); return err },
				"truncate":   func() error { return os.Truncate(p("t/f"), 0) },
				"mkdir":      func() error { return os.Mkdir(p("t/newdir"), 0o755) },
				"mkdir-root": func() error { return os.Mkdir(p("newroot"), 0o755) },
				"rmdir":      func() error { return syscall.Rmdir(p("t/d")) },
				"unlink":     func() error { return syscall.Unlink(p("t/f")) },
				"rename":     func() error { return os.Rename(p("t/f"), p("t/f2")) },
				"symlink":    func() error { return os.Symlink("x", p("t/l2")) },
				"link":       func() error { return os.Link(p("t/f"), p("t/f3")) },
				"chmod":      func() error { return os.Chmod(p("t/f"), 0o777) },
				"chown":      func() error { return os.Lchown(p("t/f"), 1, 1) },
				"utimes":     func() error { return syscall.UtimesNano(p("t/f"), make([]syscall.Timespec, 2)) },
				"setxattr":   func() error { return syscall.Setxattr(p("t/f"), "user.x", []byte("y"), 0) },
				"rmxattr":    func() error { return syscall.Removexattr(p("t/f"), castorfs.XattrBlobDigest) },
				"mknod":      func() error { return syscall.Mknod(p("t/fifo"), syscall.S_IFIFO|0o644, 0) },
			}
			if !writable {
				// With default_permissions the kernel answers access(2)
				// from the mode bits, and root may write anything on a
				// writable mount: only a read-only mount says EROFS.
				ops["access-w"] = func() error { return syscall.Access(p("t/f"), 2) }
			}
			for name, op := range ops {
				if err := op(); !errors.Is(err, syscall.EROFS) {
					t.Errorf("%s: %v, want EROFS", name, err)
				}
			}
			if b, err := os.ReadFile(p("t/f")); err != nil || string(b) != "x" {
				t.Errorf("after the attempts: %q, %v", b, err)
			}
		})
	}
}

type malformedRoots struct{ castorfs.Roots }

func (r malformedRoots) LookupRoot(ctx context.Context, name string) (castore.Node, error) {
	if strings.HasPrefix(name, "bad") {
		return castore.Node{}, fmt.Errorf("name %q: %w", name, castore.ErrInvalid)
	}
	return r.Roots.LookupRoot(ctx, name)
}

// lateRoots has one root, "late", once added.
type lateRoots struct {
	mu   sync.Mutex
	node *castore.Node
}

func (r *lateRoots) add(n castore.Node) {
	r.mu.Lock()
	r.node = &n
	r.mu.Unlock()
}

func (r *lateRoots) LookupRoot(ctx context.Context, name string) (castore.Node, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name != "late" || r.node == nil {
		return castore.Node{}, castore.ErrNotFound
	}
	return *r.node, nil
}

type failingRoots struct{}

func (failingRoots) LookupRoot(ctx context.Context, name string) (castore.Node, error) {
	return castore.Node{}, errors.New("backend unreachable")
}

func TestRoot(t *testing.T) {
	trees := map[string]fstest.Node{"a": fstest.File{Data: []byte("a")}, "b": fstest.Dir{"x": fstest.File{}}, "c": fstest.Symlink("a")}
	e := newEnv(t, trees, castorfs.Options{}, castorfs.MountOptions{})
	for _, name := range []string{"missing", "bad-name", strings.Repeat("x", 255)} {
		if _, err := os.Lstat(e.path(name)); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("%q: %v, want ENOENT", name, err)
		}
	}
	if _, err := os.ReadDir(e.mp); !errors.Is(err, syscall.EPERM) {
		t.Errorf("listing the root without ListRoot: %v, want EPERM", err)
	}
	// A root added after a failed lookup appears: misses are not cached.
	late := &lateRoots{}
	le := newEnvWith(t, late, castorfs.Options{})
	if _, err := os.Lstat(filepath.Join(le.mp, "late")); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("late root before it is added: %v", err)
	}
	late.add(le.put(t, fstest.File{Data: []byte("late")}))
	if b, err := os.ReadFile(filepath.Join(le.mp, "late")); err != nil || string(b) != "late" {
		t.Errorf("root added while mounted: %q, %v", b, err)
	}

	listed := newEnv(t, trees, castorfs.Options{ListRoot: true}, castorfs.MountOptions{})
	ents, err := os.ReadDir(listed.mp)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range ents {
		names = append(names, de.Name())
	}
	if strings.Join(names, ",") != "a,b,c" {
		t.Errorf("root listing %v", names)
	}
	if ents[1].Type() != os.ModeDir || ents[2].Type() != os.ModeSymlink || ents[0].Type() != 0 {
		t.Errorf("root listing types %v", ents)
	}

	if _, err := castorfs.New(failingRoots{}, e.dirs, e.blobs, castorfs.Options{ListRoot: true}); err == nil {
		t.Errorf("ListRoot with a resolver that cannot list: no error")
	}
	m := newEnvWith(t, malformedRoots{castorfs.Roots{}}, castorfs.Options{})
	if _, err := os.Lstat(filepath.Join(m.mp, "bad-name")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("malformed name: %v, want ENOENT", err)
	}
	f := newEnvWith(t, failingRoots{}, castorfs.Options{})
	if _, err := os.Lstat(filepath.Join(f.mp, "x")); !errors.Is(err, syscall.EIO) {
		t.Errorf("failing resolver: %v, want EIO", err)
	}
	if !strings.Contains(f.log.String(), "backend unreachable") {
		t.Errorf("failing resolver not logged: %s", f.log)
	}
}

// newEnvWith mounts an empty store with a custom resolver.
func newEnvWith(t *testing.T, roots castorfs.RootResolver, opts castorfs.Options) *env {
	t.Helper()
	fstest.RequireFUSE(t)
	e := &env{blobs: memory.NewBlobService(), dirs: memory.NewDirectoryService(), log: &logBuffer{}}
	opts.Logger = slog.New(slog.NewTextHandler(e.log, nil))
	fsys, err := castorfs.New(roots, e.dirs, e.blobs, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsys.Close() })
	e.fsys, e.mp = fsys, t.TempDir()
	fstest.Mount(t, e.mp, fsys, castorfs.MountOptions{})
	return e
}

// Data the metadata promises but the backend lacks, or cannot verify, is
// EIO with a log line naming the digest: never wrong bytes.
func TestMissingAndCorruptData(t *testing.T) {
	missing := []byte("this blob will be missing")
	corrupt := bytes.Repeat([]byte("corrupt me "), 100)
	lost := fstest.Dir{"inner": fstest.File{Data: []byte("unreachable")}}
	tree := fstest.Dir{
		"missing": fstest.File{Data: missing},
		"corrupt": fstest.File{Data: corrupt},
		"lost":    lost,
		"ok":      fstest.File{Data: []byte("fine")},
	}
	e := newEnv(t, map[string]fstest.Node{"t": tree}, castorfs.Options{}, castorfs.MountOptions{})
	// Damage the store behind the filesystem's back.
	e.blobs.Corrupt(castore.Sum(missing), nil)
	e.blobs.Corrupt(castore.Sum(corrupt), bytes.Repeat([]byte("CORRUPT ME "), 100))
	lostNode, err := fstest.Put(context.Background(), memory.NewBlobService(), memory.NewDirectoryService(), lost)
	if err != nil {
		t.Fatal(err)
	}
	e.dirs.Delete(lostNode.Digest)

	for _, c := range []struct{ path, digest string }{
		{"t/missing", castore.Sum(missing).String()},
		{"t/corrupt", castore.Sum(corrupt).String()},
	} {
		b, err := os.ReadFile(e.path(c.path))
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("%s: read %d bytes, err %v; want EIO", c.path, len(b), err)
		}
		if !strings.Contains(e.log.String(), c.digest) {
			t.Errorf("%s: no log line names %s:\n%s", c.path, c.digest, e.log)
		}
	}
	if _, err := os.Lstat(e.path("t/lost")); !errors.Is(err, syscall.EIO) {
		t.Errorf("missing directory: %v, want EIO", err)
	}
	if !strings.Contains(e.log.String(), lostNode.Digest.String()) {
		t.Errorf("no log line names the missing directory %s:\n%s", lostNode.Digest, e.log)
	}
	if b, err := os.ReadFile(e.path("t/ok")); err != nil || string(b) != "fine" {
		t.Errorf("intact file next to damage: %q, %v", b, err)
	}
}
