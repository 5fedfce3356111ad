package evalstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/castor-nix/castor/builder/realise"
	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/evaluator/evalio"
	"github.com/castor-nix/castor/evaluator/evalstore"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/nar/nartest"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
	pimemory "github.com/castor-nix/castor/store/pathinfo/memory"
)

func newStore() *evalstore.Store {
	return &evalstore.Store{Blobs: memory.NewBlobService(), Directories: memory.NewDirectoryService(), PathInfos: pimemory.New()}
}

// makeTree makes a tree with regular, executable and empty files, nested
// directories and symlinks (relative, into a sibling directory, dangling,
// absolute out of the tree).
func makeTree(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "tree")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "sub", "deeper"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "a.txt"), []byte("hello\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "sub", "deeper", "x"), nil, 0o644))
	must(os.WriteFile(filepath.Join(dir, "sub", "b.txt"), []byte("bee\n"), 0o644))
	must(os.Symlink("../a.txt", filepath.Join(dir, "sub", "link")))
	must(os.Symlink("sub", filepath.Join(dir, "dirlink")))
	must(os.Symlink("nowhere", filepath.Join(dir, "dangling")))
	must(os.Symlink("loop", filepath.Join(dir, "loop")))
	return dir
}

func pathInfo(t *testing.T, s *evalstore.Store, p string) *pathinfo.PathInfo {
	t.Helper()
	sp, err := nixpath.ParseAbsolute(p)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.PathInfos.Get(context.Background(), sp.Digest)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return info
}

type nixInfo struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"`
	NarSize    uint64   `json:"narSize"`
	References []string `json:"references"`
	CA         string   `json:"ca"`
}

// sameAsNix compares what the store recorded for p with `nix path-info`
// of the same path in Nix's store, and the NAR with `nix-store --dump`.
func sameAsNix(t *testing.T, nix *testenv.Nix, s *evalstore.Store, p string) {
	t.Helper()
	var infos []nixInfo
	if err := json.Unmarshal([]byte(nix.Run("nix", "path-info", "--json", p)), &infos); err != nil || len(infos) != 1 {
		t.Fatalf("nix path-info %s: %v", p, err)
	}
	n := infos[0]
	info := pathInfo(t, s, p)
	h, err := nixpath.ParseHash(n.NarHash, "")
	if err != nil || !bytes.Equal(h.Digest(), info.NarSHA256[:]) || info.NarSize != n.NarSize {
		t.Errorf("%s: NAR %d %s, Nix %d %s", p, info.NarSize, nixpath.FormatSHA256(info.NarSHA256), n.NarSize, n.NarHash)
	}
	var refs []string
	for _, r := range info.References {
		refs = append(refs, r.Absolute())
	}
	slices.Sort(n.References)
	if !slices.Equal(refs, n.References) {
		t.Errorf("%s: references %v, Nix %v", p, refs, n.References)
	}
	if info.CA == nil || info.CA.String() != n.CA {
		t.Errorf("%s: content address %v, Nix %q", p, info.CA, n.CA)
	}
	want := nartest.NixDump(t, nix.RealPath(p))
	var got bytes.Buffer
	if err := nar.Render(context.Background(), &got, info.Node, s.Blobs, s.Directories); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("%s: NAR differs from nix-store --dump", p)
	}
}

// TestAddPathMatchesNix adds a tree, a file (flat) and text files with
// references, and compares paths, PathInfos and NARs with what Nix 2.8
// records for the same additions.
func TestAddPathMatchesNix(t *testing.T) {
	nix := testenv.NewNix(t)
	ctx := context.Background()
	s := newStore()
	dir := makeTree(t)

	tree, err := s.AddPath(ctx, evalio.AddPathRequest{Path: dir, Name: "tree", Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := nix.Run("nix-store", "--add", dir); tree != want {
		t.Fatalf("tree at %s, nix-store --add: %s", tree, want)
	}
	sameAsNix(t, nix, s, tree)

	flat, err := s.AddPath(ctx, evalio.AddPathRequest{Path: filepath.Join(dir, "run.sh"), Name: "run.sh"})
	if err != nil {
		t.Fatal(err)
	}
	// nix-store --add-fixed keeps the executable bit; builtins.path with
	// recursive = false (what the evaluator does) does not.
	if want := nix.Run("nix-instantiate", "--eval", "--read-write-mode", "--json", "-E",
		`builtins.path { path = `+filepath.Join(dir, "run.sh")+`; recursive = false; }`); `"`+flat+`"` != want {
		t.Fatalf("flat file at %s, Nix %s", flat, want)
	}
	sameAsNix(t, nix, s, flat)

	y, err := s.AddText(ctx, "y", "why\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	x, err := s.AddText(ctx, "x", "refers to "+y+" and "+tree+"\n", []string{y, tree})
	if err != nil {
		t.Fatal(err)
	}
	got := nix.Run("nix-instantiate", "--eval", "--read-write-mode", "--json", "-E",
		`let y = builtins.toFile "y" "why\n"; in builtins.toFile "x" "refers to ${y} and ${builtins.path { path = `+dir+`; name = "tree"; }}\n"`)
	if got != `"`+x+`"` {
		t.Fatalf("toFile at %s, Nix %s", x, got)
	}
	sameAsNix(t, nix, s, y)
	sameAsNix(t, nix, s, x)
	refs, err := s.References(ctx, x)
	if err != nil || !slices.Equal(refs, []string{tree, y}) && !slices.Equal(refs, []string{y, tree}) {
		t.Fatalf("References(x) = %v, %v", refs, err)
	}

	// builtins.path of a file below a store path keeps the store path's
	// references, as Nix's read-write mode does.
	kept, err := s.AddPath(ctx, evalio.AddPathRequest{Path: x, Name: "kept", Recursive: true, KeepReferences: true})
	if err != nil {
		t.Fatal(err)
	}
	got = nix.Run("nix-instantiate", "--eval", "--read-write-mode", "--json", "-E",
		`builtins.path { path = "`+x+`"; name = "kept"; }`)
	if got != `"`+kept+`"` {
		t.Fatalf("builtins.path of a text path at %s, Nix %s", kept, got)
	}
	sameAsNix(t, nix, s, kept)

	// Adding again writes nothing new and gives the same path.
	again, err := s.AddPath(ctx, evalio.AddPathRequest{Path: dir, Name: "tree", Recursive: true})
	if err != nil || again != tree {
		t.Fatalf("second add: %s, %v", again, err)
	}
}

// TestReadThroughStore reads a tree added to the store back through the
// castore (the source is removed first), following symlinks as the
// kernel would.
func TestReadThroughStore(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	dir := makeTree(t)
	outside := filepath.Join(t.TempDir(), "outside.txt")
	os.WriteFile(outside, []byte("outside\n"), 0o644)
	os.Symlink(outside, filepath.Join(dir, "out"))
	tree, err := s.AddPath(ctx, evalio.AddPathRequest{Path: dir, Name: "tree", Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(dir)

	for p, want := range map[string]string{
		"/a.txt":            "hello\n",
		"/sub/link":         "hello\n",
		"/dirlink/b.txt":    "bee\n",
		"/dirlink/link":     "hello\n",
		"/out":              "outside\n",
		"/sub/deeper/x":     "",
		"/dirlink/deeper/x": "",
	} {
		b, err := s.ReadFile(ctx, tree+p)
		if err != nil || string(b) != want {
			t.Errorf("ReadFile %s = %q, %v; want %q", p, b, err, want)
		}
	}
	ents, err := s.ReadDir(ctx, tree+"/dirlink")
	var names []string
	for _, e := range ents {
		names = append(names, e.Name+":"+e.Type.String())
	}
	if err != nil || strings.Join(names, " ") != "b.txt:regular deeper:directory link:symlink" {
		t.Errorf("ReadDir dirlink = %v, %v", names, err)
	}
	if fi, err := s.Lstat(ctx, tree+"/run.sh"); err != nil || fi.Type != evalio.TypeRegular || !fi.Executable || fi.Size != 18 {
		t.Errorf("Lstat run.sh = %+v, %v", fi, err)
	}
	if fi, err := s.Lstat(ctx, tree+"/dirlink"); err != nil || fi.Type != evalio.TypeSymlink {
		t.Errorf("Lstat dirlink = %+v, %v", fi, err)
	}
	if target, err := s.ReadLink(ctx, tree+"/sub/link"); err != nil || target != "../a.txt" {
		t.Errorf("ReadLink sub/link = %q, %v", target, err)
	}
	for p, errno := range map[string]syscall.Errno{
		"/missing":     syscall.ENOENT,
		"/dangling":    syscall.ENOENT,
		"/a.txt/x":     syscall.ENOTDIR,
		"/loop":        syscall.ELOOP,
		"/sub":         syscall.EISDIR,
		"-other/a.txt": syscall.ENOENT,
	} {
		_, err := s.ReadFile(ctx, tree+p)
		if !errors.Is(err, errno) {
			t.Errorf("ReadFile %s: %v, want %v", p, err, errno)
		}
		if errno == syscall.ENOENT && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadFile %s: %v does not match fs.ErrNotExist", p, err)
		}
	}
}

// TestFilter adds subtrees of a tree already in the store with a filter,
// and the same subtrees from the host with the same filter: the results
// must be identical (store paths and NARs), and the filter must see the
// same paths modulo the prefix.
func TestFilter(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	dir := makeTree(t)
	tree, err := s.AddPath(ctx, evalio.AddPathRequest{Path: dir, Name: "tree", Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"", "/sub", "/a.txt", "/dirlink"} {
		for _, drop := range []string{"", "link", "deeper", "a.txt"} {
			var seen [2][]string
			add := func(i int, root string) string {
				p, err := s.AddPath(ctx, evalio.AddPathRequest{Path: root + sub, Name: "filtered", Recursive: true,
					Filter: func(p string, ft evalio.FileType) bool {
						seen[i] = append(seen[i], strings.TrimPrefix(p, root)+":"+ft.String())
						return filepath.Base(p) != drop
					}})
				if err != nil {
					t.Fatalf("%s%s without %q: %v", root, sub, drop, err)
				}
				return p
			}
			fromHost, fromStore := add(0, dir), add(1, tree)
			if fromHost != fromStore || !slices.Equal(seen[0], seen[1]) {
				t.Errorf("%s without %q: from the host %s (filter saw %v), from the store %s (%v)", sub, drop, fromHost, seen[0], fromStore, seen[1])
			}
			a, b := pathInfo(t, s, fromHost), pathInfo(t, s, fromStore)
			if a.Node != b.Node || a.NarSHA256 != b.NarSHA256 {
				t.Errorf("%s without %q: PathInfos differ", sub, drop)
			}
		}
	}
}

// TestExpectedHash: a mismatch adds nothing; a match of a path already
// valid does not read the source.
func TestExpectedHash(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	dir := makeTree(t)
	_, err := s.AddPath(ctx, evalio.AddPathRequest{Path: dir + "/a.txt", Name: "a", ExpectedSHA256: make([]byte, 32)})
	if !errors.Is(err, evalio.ErrHashMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
	n := 0
	s.PathInfos.(*pimemory.Service).List(ctx)(func(*pathinfo.PathInfo, error) bool { n++; return true })
	if n != 0 {
		t.Fatalf("%d paths recorded after a mismatch", n)
	}
	p, err := s.AddPath(ctx, evalio.AddPathRequest{Path: dir + "/a.txt", Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	sum := pathInfo(t, s, p).CA.Hash.Digest()
	os.Remove(dir + "/a.txt")
	again, err := s.AddPath(ctx, evalio.AddPathRequest{Path: dir + "/a.txt", Name: "a", ExpectedSHA256: sum})
	if err != nil || again != p {
		t.Fatalf("valid expected path: %s, %v", again, err)
	}
}

type recordingRealiser struct {
	calls [][]string
	res   []realise.Result
	err   error
}

func (r *recordingRealiser) Realise(ctx context.Context, drvs []string) ([]realise.Result, error) {
	r.calls = append(r.calls, drvs)
	return r.res, r.err
}

// TestRealise checks which paths Realise accepts, which it asks the
// Realiser to build, and what it reports.
func TestRealise(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	src, _ := s.AddText(ctx, "src", "x", nil)
	drv, _ := s.AddText(ctx, "a.drv", "Derive(...)", []string{src})
	missing := "/nix/store/00000000000000000000000000000000-none"

	if err := s.Realise(ctx, []evalio.DerivedPath{{Path: src}, {Path: drv}}); err != nil {
		t.Fatalf("valid paths: %v", err)
	}
	var nv *evalio.NotValidError
	if err := s.Realise(ctx, []evalio.DerivedPath{{Path: src}, {Path: missing}}); !errors.As(err, &nv) || nv.Path != missing || err.Error() != "path '"+missing+"' is not valid" {
		t.Fatalf("missing path: %v", err)
	}
	if err := s.Realise(ctx, []evalio.DerivedPath{{Path: drv, Output: "out"}}); !errors.Is(err, evalstore.ErrNoBuilder) {
		t.Fatalf("no builder: %v", err)
	}
	r := &recordingRealiser{res: []realise.Result{{DrvPath: drv, Outputs: map[string]nixpath.StorePath{"out": {}}}}}
	s.Realiser = r
	if err := s.Realise(ctx, []evalio.DerivedPath{{Path: drv, Output: "out"}, {Path: src}, {Path: drv, Output: "out"}}); err != nil {
		t.Fatal(err)
	}
	if len(r.calls) != 1 || !slices.Equal(r.calls[0], []string{drv}) {
		t.Fatalf("Realiser calls %v", r.calls)
	}
	if err := s.Realise(ctx, []evalio.DerivedPath{{Path: drv, Output: "dev"}}); err == nil || !strings.Contains(err.Error(), "does not have an output named 'dev'") {
		t.Fatalf("missing output: %v", err)
	}
	r.err = errors.New("build failed")
	if err := s.Realise(ctx, []evalio.DerivedPath{{Path: drv, Output: "out"}}); !errors.Is(err, r.err) {
		t.Fatalf("failed build: %v", err)
	}
	if _, err := s.References(ctx, missing); !errors.As(err, &nv) {
		t.Fatalf("References of a missing path: %v", err)
	}
}
