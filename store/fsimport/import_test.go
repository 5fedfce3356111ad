package fsimport_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/fsimport"
	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/nar/nartest"
)

// trees makes generated trees plus roots that are a file, a symlink and an
// empty directory.
func trees(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	var roots []string
	for i := range 4 {
		p := filepath.Join(dir, fmt.Sprintf("tree%d", i))
		nartest.GenTree(t, p, uint64(100+i), nartest.TreeOptions{LargeFiles: i < 2, Entries: 50 + 40*i, MaxDepth: 4 + 4*i})
		roots = append(roots, p)
	}
	f := filepath.Join(dir, "file-root")
	os.WriteFile(f, bytes.Repeat([]byte("data"), 300000), 0o755)
	l := filepath.Join(dir, "link-root")
	os.Symlink("../somewhere", l)
	e := filepath.Join(dir, "empty-root")
	os.Mkdir(e, 0o755)
	return append(roots, f, l, e)
}

// TestImportNix checks Import against Nix 2.8: the NAR size and hash must
// be those of `nix-store --dump` and `nix hash path`; the root node must be
// the one nar.Ingest makes of Nix's NAR; the stored tree must render back
// to Nix's NAR.
func TestImportNix(t *testing.T) {
	nartest.NeedNix(t)
	ctx := context.Background()
	for _, root := range trees(t) {
		t.Run(filepath.Base(root), func(t *testing.T) {
			want := nartest.NixDump(t, root)
			wantSum := nartest.NixHashPath(t, root)
			for _, workers := range []int{1, 0, 7} {
				bs, ds := memory.NewBlobService(), memory.NewDirectoryService()
				var last fsimport.Progress
				calls := 0
				node, size, sum, err := fsimport.Import(ctx, root, bs, ds, &fsimport.Options{
					Workers: workers,
					Progress: func(p fsimport.Progress) {
						if p.Files < last.Files || p.Bytes < last.Bytes {
							t.Errorf("progress went back: %+v after %+v", p, last)
						}
						last = p
						calls++
					},
				})
				if err != nil {
					t.Fatalf("Import: %v", err)
				}
				if size != uint64(len(want)) || sum != wantSum {
					t.Fatalf("workers=%d: Import says size %d sha256 %x; Nix %d %x", workers, size, sum, len(want), wantSum)
				}
				if last.Files != last.TotalFiles || last.Bytes != last.TotalBytes || calls == 0 {
					t.Fatalf("final progress %+v after %d calls", last, calls)
				}
				ibs, ids := memory.NewBlobService(), memory.NewDirectoryService()
				inode, _, _, err := nar.Ingest(ctx, bytes.NewReader(want), ibs, ids)
				if err != nil {
					t.Fatal(err)
				}
				if inode != node {
					t.Fatalf("Import root %+v, Ingest of Nix's NAR %+v", node, inode)
				}
				var got bytes.Buffer
				if err := nar.Render(ctx, &got, node, bs, ds); err != nil {
					t.Fatalf("Render: %v", err)
				}
				if !bytes.Equal(got.Bytes(), want) {
					t.Fatal("imported tree renders differently from nix-store --dump")
				}
			}
		})
	}
}

// recordingDS remembers the directories put, to check none is visible
// after a failure.
type recordingDS struct {
	*memory.DirectoryService
	mu  sync.Mutex
	put []castore.Digest
}

func (r *recordingDS) NewDirectoryPutter(ctx context.Context) castore.DirectoryPutter {
	return &recordingPutter{r.DirectoryService.NewDirectoryPutter(ctx), r}
}

type recordingPutter struct {
	castore.DirectoryPutter
	r *recordingDS
}

func (p *recordingPutter) Put(ctx context.Context, d *castore.Directory) (castore.Digest, error) {
	p.r.mu.Lock()
	p.r.put = append(p.r.put, d.Digest())
	p.r.mu.Unlock()
	return p.DirectoryPutter.Put(ctx, d)
}

func importFails(t *testing.T, root string, ctx context.Context, bs castore.BlobIngester) error {
	t.Helper()
	ds := &recordingDS{DirectoryService: memory.NewDirectoryService()}
	_, _, _, err := fsimport.Import(ctx, root, bs, ds, nil)
	if err == nil {
		t.Fatal("Import succeeded")
	}
	for _, d := range ds.put {
		if _, err := ds.GetDirectory(context.Background(), d); !errors.Is(err, castore.ErrNotFound) {
			t.Fatalf("directory %s visible after a failed import", d)
		}
	}
	return err
}

func TestImportUnsupported(t *testing.T) {
	ctx := context.Background()
	mk := func(t *testing.T) string {
		root := filepath.Join(t.TempDir(), "t")
		nartest.GenTree(t, root, 7, nartest.TreeOptions{Entries: 30})
		return root
	}
	t.Run("fifo", func(t *testing.T) {
		root := mk(t)
		p := filepath.Join(root, "emptydir", "fifo")
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
		err := importFails(t, root, ctx, memory.NewBlobService())
		if !errors.Is(err, fsimport.ErrUnsupported) || !strings.Contains(err.Error(), p) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("socket", func(t *testing.T) {
		root := mk(t)
		p := filepath.Join(root, "sock")
		l, err := net.Listen("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		err = importFails(t, root, ctx, memory.NewBlobService())
		if !errors.Is(err, fsimport.ErrUnsupported) || !strings.Contains(err.Error(), p) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("device", func(t *testing.T) {
		err := importFails(t, "/dev/null", ctx, memory.NewBlobService())
		if !errors.Is(err, fsimport.ErrUnsupported) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		err := importFails(t, filepath.Join(t.TempDir(), "nope"), ctx, memory.NewBlobService())
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		c, cancel := context.WithCancel(ctx)
		cancel()
		if err := importFails(t, mk(t), c, memory.NewBlobService()); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})
}

// swapBS runs swap before the first blob writer is made: the tree changes
// between the walk and the reads.
type swapBS struct {
	*memory.BlobService
	once sync.Once
	swap func()
}

func (s *swapBS) NewBlobWriter(ctx context.Context) (castore.BlobWriter, error) {
	s.once.Do(s.swap)
	return s.BlobService.NewBlobWriter(ctx)
}

// failingBS fails writes after n blob writers.
type failingBS struct {
	*memory.BlobService
	mu sync.Mutex
	n  int
}

var errStore = errors.New("store full")

func (f *failingBS) NewBlobWriter(ctx context.Context) (castore.BlobWriter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n <= 0 {
		return nil, errStore
	}
	f.n--
	return f.BlobService.NewBlobWriter(ctx)
}

func TestImportStoreError(t *testing.T) {
	root := filepath.Join(t.TempDir(), "t")
	nartest.GenTree(t, root, 9, nartest.TreeOptions{Entries: 80, LargeFiles: true})
	for _, n := range []int{0, 1, 5, 20} {
		err := importFails(t, root, context.Background(), &failingBS{BlobService: memory.NewBlobService(), n: n})
		if !errors.Is(err, errStore) {
			t.Fatalf("after %d blobs: got %v", n, err)
		}
	}
}

// TestImportChangedFile: a file that changes between the walk and its
// read, or shrinks while being read, is an error naming it, not a wrong
// hash.
func TestImportChangedFile(t *testing.T) {
	ctx := context.Background()
	for name, change := range map[string]func(p string){
		"grown":    func(p string) { os.WriteFile(p, []byte("0123456789abc"), 0o644) },
		"shrunk":   func(p string) { os.WriteFile(p, []byte("01"), 0o644) },
		"dir":      func(p string) { os.Remove(p); os.Mkdir(p, 0o755) },
		"symlink":  func(p string) { os.Remove(p); os.Symlink("x", p) },
		"vanished": func(p string) { os.Remove(p) },
	} {
		t.Run(name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "t")
			os.Mkdir(root, 0o755)
			p := filepath.Join(root, "f")
			os.WriteFile(p, []byte("0123456789"), 0o644)
			ds := &recordingDS{DirectoryService: memory.NewDirectoryService()}
			// The first progress call comes after the walk, before any read.
			var once sync.Once
			_, _, _, err := fsimport.Import(ctx, root, memory.NewBlobService(), ds, &fsimport.Options{
				Progress: func(fsimport.Progress) { once.Do(func() { change(p) }) },
			})
			if err == nil || !strings.Contains(err.Error(), p) {
				t.Fatalf("got %v, want an error naming %s", err, p)
			}
			if len(ds.put) != 0 {
				t.Fatal("directories put after a failed read")
			}
		})
	}
	t.Run("shrinks while read", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "t")
		os.Mkdir(root, 0o755)
		p := filepath.Join(root, "f")
		os.WriteFile(p, bytes.Repeat([]byte("x"), 3<<20), 0o644)
		bs := &swapBS{BlobService: memory.NewBlobService(), swap: func() { os.Truncate(p, 1000) }}
		err := importFails(t, root, ctx, bs)
		if !strings.Contains(err.Error(), "shrank") {
			t.Fatalf("got %v", err)
		}
	})
}

// TestImportFilter checks Options.Filter against importing a copy of the
// tree from which the rejected entries were deleted: same root node, NAR
// size and hash. The filter must see every surviving entry's path and
// type once, in NAR order, never the root, nothing below a rejected
// directory.
func TestImportFilter(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "tree")
	nartest.GenTree(t, root, 7, nartest.TreeOptions{Entries: 120, MaxDepth: 5})
	os.Symlink("dangling", filepath.Join(root, "zz-link"))
	reject := func(p string) bool { return strings.Contains(filepath.Base(p), "1") }

	var seen []string
	filter := func(p string, mode os.FileMode) bool {
		if p == root {
			t.Errorf("filter called for the root")
		}
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode().Type() != mode {
			t.Errorf("filter got mode %v for %s, lstat says %v (%v)", mode, p, fi.Mode().Type(), err)
		}
		for _, s := range seen {
			if reject(s) && strings.HasPrefix(p, s+"/") {
				t.Errorf("filter called for %s below rejected %s", p, s)
			}
		}
		seen = append(seen, p)
		return !reject(p)
	}
	bs, ds := memory.NewBlobService(), memory.NewDirectoryService()
	node, size, sum, err := fsimport.Import(ctx, root, bs, ds, &fsimport.Options{Filter: filter})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) == 0 {
		t.Fatal("filter never called")
	}
	// NAR order: every directory's entries sorted, depth first.
	for i := 1; i < len(seen); i++ {
		a, b := strings.Split(seen[i-1], "/"), strings.Split(seen[i], "/")
		for j := 0; j < len(a) && j < len(b); j++ {
			if a[j] != b[j] {
				if a[j] > b[j] {
					t.Fatalf("filter calls out of order: %s before %s", seen[i-1], seen[i])
				}
				break
			}
		}
	}

	cp := filepath.Join(t.TempDir(), "tree")
	if out, err := exec.Command("cp", "-a", root, cp).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	removed := 0
	filepath.Walk(cp, func(p string, fi os.FileInfo, err error) error {
		if err == nil && p != cp && reject(p) {
			removed++
			os.RemoveAll(p)
			if fi.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	if removed == 0 {
		t.Fatal("the filter rejected nothing; the test proves nothing")
	}
	wnode, wsize, wsum, err := fsimport.Import(ctx, cp, memory.NewBlobService(), memory.NewDirectoryService(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if node != wnode || size != wsize || sum != wsum {
		t.Fatalf("filtered import %v %d %x; import of the pruned copy %v %d %x", node, size, sum, wnode, wsize, wsum)
	}
}
