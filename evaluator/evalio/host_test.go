package evalio

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/castor-nix/castor/e2e/testenv"
)

func makeTree(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "tree")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "sub", "deeper"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "a.txt"), []byte("hello\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "sub", "deeper", "x"), nil, 0o644))
	must(os.Symlink("../a.txt", filepath.Join(dir, "sub", "link")))
	return dir
}

// TestAddPathMatchesNix checks the computed store path of a tree (regular,
// executable and empty files, a symlink, nested directories) against
// nix-store --add.
func TestAddPathMatchesNix(t *testing.T) {
	nix := testenv.NewNix(t)
	dir := makeTree(t)
	want := nix.Run("nix-store", "--add", dir)
	h := NewHost()
	got, err := h.AddPath(context.Background(), AddPathRequest{Path: dir, Name: "tree", Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("got %s, nix-store --add gives %s", got, want)
	}
	// Reads below the computed path are served from the source.
	b, err := h.ReadFile(context.Background(), got+"/sub/deeper/x")
	if err != nil || len(b) != 0 {
		t.Fatalf("read below store path: %q %v", b, err)
	}
	ents, err := h.ReadDir(context.Background(), got+"/sub")
	if err != nil || len(ents) != 2 || ents[1].Name != "link" || ents[1].Type != TypeSymlink {
		t.Fatalf("readdir below store path: %v %v", ents, err)
	}
	if err := h.Realise(context.Background(), []DerivedPath{{Path: got}}); err != nil {
		t.Fatalf("realise a computed path: %v", err)
	}
	if err := h.Realise(context.Background(), []DerivedPath{{Path: "/nix/store/00000000000000000000000000000000-none"}}); err == nil {
		t.Fatal("realising an unknown path succeeded")
	}
}

func TestAddPathFilter(t *testing.T) {
	nix := testenv.NewNix(t)
	dir := makeTree(t)
	// The same tree without run.sh and sub/deeper, added by Nix itself.
	ref := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(ref, "sub"), 0o755)
	os.WriteFile(filepath.Join(ref, "a.txt"), []byte("hello\n"), 0o644)
	os.Symlink("../a.txt", filepath.Join(ref, "sub", "link"))
	want := nix.Run("nix-store", "--add", ref)
	var seen []string
	got, err := NewHost().AddPath(context.Background(), AddPathRequest{Path: dir, Name: "tree", Recursive: true,
		Filter: func(p string, ft FileType) bool {
			seen = append(seen, p)
			return filepath.Base(p) != "run.sh" && filepath.Base(p) != "deeper"
		}})
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if len(seen) == 0 || !filepath.IsAbs(seen[0]) {
		t.Fatalf("filter saw %v", seen)
	}
}

func TestFlatAndText(t *testing.T) {
	nix := testenv.NewNix(t)
	f := filepath.Join(t.TempDir(), "file.txt")
	os.WriteFile(f, []byte("flat contents"), 0o644)
	got, err := NewHost().AddPath(context.Background(), AddPathRequest{Path: f, Name: "file.txt"})
	if err != nil {
		t.Fatal(err)
	}
	want := nix.Run("nix-store", "--add-fixed", "sha256", f)
	if got != want {
		t.Fatalf("flat: got %s, want %s", got, want)
	}
	if _, err := NewHost().ReadFile(context.Background(), "/nonexistent/x"); !os.IsNotExist(err) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestCopyOfText adds a copy of a text path the Host computed (as
// builtins.path of a toFile result does), NAR-hashed and flat, and checks
// the paths against Nix's read-write mode and the copies' contents and
// references.
func TestCopyOfText(t *testing.T) {
	nix := testenv.NewNix(t)
	ctx := context.Background()
	h := NewHost()
	text, err := h.AddText(ctx, "t", "hello", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rec := range []bool{true, false} {
		p, err := h.AddPath(ctx, AddPathRequest{Path: text, Name: "copy", Recursive: rec})
		if err != nil {
			t.Fatal(err)
		}
		if b, err := h.ReadFile(ctx, p); err != nil || string(b) != "hello" {
			t.Fatalf("copy %s reads %q, %v", p, b, err)
		}
		if refs, err := h.References(ctx, p); err != nil || len(refs) != 0 {
			t.Fatalf("copy %s refers to %v, %v", p, refs, err)
		}
		got = append(got, `"`+p+`"`)
	}
	want := nix.Run("nix-instantiate", "--eval", "--read-write-mode", "-E",
		`let t = builtins.toFile "t" "hello"; in builtins.concatStringsSep " " (map (r: "\"${builtins.path { path = t; name = "copy"; recursive = r; }}\"") [ true false ])`)
	if `"`+strings.Join(got, " ")+`"` != strings.ReplaceAll(want, `\"`, `"`) {
		t.Fatalf("copies at %v, Nix %s", got, want)
	}
}
