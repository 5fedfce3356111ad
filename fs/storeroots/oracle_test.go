package storeroots_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/castor-nix/castor/e2e/testenv"
	castorfs "github.com/castor-nix/castor/fs"
	"github.com/castor-nix/castor/fs/fstest"
	"github.com/castor-nix/castor/fs/storeroots"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/nar/nartest"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
	pimemory "github.com/castor-nix/castor/store/pathinfo/memory"
)

func TestMain(m *testing.M) { fstest.Main(m) }

// added is one store path added by Nix and imported into castor.
type added struct {
	path     string   // /nix/store/…
	restored string   // nix-store --restore of Nix's NAR, canonical modes
	nixCopy  string   // where Nix's throw-away store keeps it
	narHash  [32]byte // nix hash path of Nix's copy
}

// TestAgainstNix mounts castor's import of trees Nix added (from the NARs
// Nix dumped) over /nix/store, in a private mount namespace, and compares
// each path with nix-store --restore of the same NAR and with Nix's own
// store copy: diff -r, modes (stat -c %a), symlink targets, sizes, a hash
// of every file, and nix hash path of the mounted tree.
func TestAgainstNix(t *testing.T) {
	nix := testenv.NewNix(t)
	testenv.RequireBinary(t, "diff")
	mp := fstest.StoreMountpoint(t)
	ctx := context.Background()
	blobs, dirs, infos := memory.NewBlobService(), memory.NewDirectoryService(), pimemory.New()

	work := t.TempDir()
	var paths []added
	add := func(src string) {
		t.Helper()
		sp := nix.Run("nix-store", "--add", src)
		narBytes, err := nix.Output(nil, "nix-store", "--dump", nix.RealPath(sp))
		if err != nil {
			t.Fatal(err)
		}
		root, size, sum, err := nar.Ingest(ctx, bytes.NewReader(narBytes), blobs, dirs)
		if err != nil {
			t.Fatalf("ingest %s: %v", sp, err)
		}
		parsed, err := nixpath.ParseAbsolute(sp)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := infos.Put(ctx, &pathinfo.PathInfo{StorePath: parsed, Node: root, NarSize: size, NarSHA256: sum}); err != nil {
			t.Fatal(err)
		}
		restored := filepath.Join(work, "restored", parsed.String())
		os.MkdirAll(filepath.Dir(restored), 0o755)
		restore(t, narBytes, restored)
		paths = append(paths, added{path: sp, restored: restored, nixCopy: nix.RealPath(sp), narHash: nartest.NixHashPath(t, nix.RealPath(sp))})
	}
	for seed := range uint64(3) {
		tree := filepath.Join(work, fmt.Sprintf("tree-%d", seed))
		nartest.GenTree(t, tree, seed, nartest.TreeOptions{Entries: 120, LargeFiles: seed == 0})
		add(tree)
	}
	for _, f := range []struct {
		name string
		data string
		mode os.FileMode
	}{{"plain-file", "plain contents\n", 0o644}, {"exec-file", "#!/bin/sh\necho hi\n", 0o755}, {"empty-file", "", 0o644}} {
		p := filepath.Join(work, f.name)
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
		add(p)
	}
	// A tree pointing into another store path by absolute symlink, as
	// real store paths do: resolved only because the mount is at
	// /nix/store.
	linker := filepath.Join(work, "linker")
	os.Mkdir(linker, 0o755)
	os.Symlink(paths[3].path, filepath.Join(linker, "to-plain"))
	add(linker)

	logs := &strings.Builder{}
	fsys, err := castorfs.New(&storeroots.Resolver{Infos: infos}, dirs, blobs, castorfs.Options{
		ListRoot: true,
		Logger:   slog.New(slog.NewTextHandler(syncWriter{w: logs}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer fsys.Close()
	fstest.Mount(t, mp, fsys, castorfs.MountOptions{})

	for _, a := range paths {
		out, err := exec.Command("diff", "-r", "--no-dereference", a.restored, a.path).CombinedOutput()
		if err != nil {
			t.Errorf("diff -r %s (restored) %s (mounted): %v\n%s", a.restored, a.path, err, out)
		}
		mounted := manifest(t, a.path)
		if d := fstest.DiffManifests(manifest(t, a.restored), mounted); len(d) > 0 {
			t.Errorf("%s differs from nix-store --restore in %d paths:\n%s", a.path, len(d), strings.Join(d[:min(len(d), 10)], "\n"))
		}
		if d := fstest.DiffManifests(manifest(t, a.nixCopy), mounted); len(d) > 0 {
			t.Errorf("%s differs from Nix's store copy in %d paths:\n%s", a.path, len(d), strings.Join(d[:min(len(d), 10)], "\n"))
		}
		if got := nartest.NixHashPath(t, a.path); got != a.narHash {
			t.Errorf("nix hash path of mounted %s = %x, Nix's copy has %x", a.path, got, a.narHash)
		}
	}
	if b, err := os.ReadFile(filepath.Join(paths[len(paths)-1].path, "to-plain")); err != nil || string(b) != "plain contents\n" {
		t.Errorf("through an absolute symlink to another store path: %q, %v", b, err)
	}
	// Stat -c %a, by the real stat(1), on a few corners.
	for _, p := range []string{paths[0].path, paths[0].path + "/exec", paths[0].path + "/group-x", paths[4].path, paths[3].path} {
		got, _ := exec.Command("stat", "-c", "%a", p).Output()
		want, _ := exec.Command("stat", "-c", "%a", nix.RealPath(p)).Output()
		if string(got) != string(want) || len(got) == 0 {
			t.Errorf("stat -c %%a %s: %q, Nix's copy %q", p, got, want)
		}
	}

	// The root lists exactly the paths added.
	ents, err := os.ReadDir(mp)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(paths) {
		t.Errorf("root lists %d entries, want %d", len(ents), len(paths))
	}

	// Unknown and malformed names are ENOENT.
	known, _ := nixpath.ParseAbsolute(paths[0].path)
	for _, name := range []string{
		"00000000000000000000000000000000-missing",
		known.HashPart() + "-other-name",
		"not-a-store-path",
		known.HashPart(),
		strings.Repeat("e", 32) + "-bad-hash-alphabet",
		".hidden",
	} {
		if _, err := os.Lstat(filepath.Join(mp, name)); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("%s: %v, want ENOENT", name, err)
		}
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", logs)
	}
}

// restore runs nix-store --restore, then canonicalises modes as Nix does
// when it registers a path (canonicalisePathMetaData): anything but a
// symlink becomes 0444, or 0555 if its owner could execute it. (Nix sets
// its own umask, so restore alone leaves 0644/0755.)
func restore(t *testing.T, narBytes []byte, dst string) {
	t.Helper()
	nartest.NixRestore(t, narBytes, dst)
	err := filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.Mode()&os.ModeSymlink != 0 {
			return err
		}
		mode := os.FileMode(0o444)
		if fi.Mode()&0o100 != 0 {
			mode = 0o555
		}
		return os.Chmod(p, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func manifest(t *testing.T, root string) map[string]fstest.Entry {
	t.Helper()
	m, err := fstest.Manifest(root)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type syncWriter struct{ w *strings.Builder }

func (s syncWriter) Write(p []byte) (int, error) {
	syncMu.Lock()
	defer syncMu.Unlock()
	return s.w.Write(p)
}

var syncMu sync.Mutex
