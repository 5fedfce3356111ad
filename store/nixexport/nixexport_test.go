package nixexport_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/nixexport"
	"github.com/castor-nix/castor/store/nixpath"
	pimemory "github.com/castor-nix/castor/store/pathinfo/memory"
)

func newStore() (nixexport.Store, *pimemory.Service) {
	infos := pimemory.New()
	return nixexport.Store{Blobs: memory.NewBlobService(), Directories: memory.NewDirectoryService(), PathInfos: infos}, infos
}

// nixPaths has Nix create paths of every kind: a source tree with an
// executable, a symlink and odd names, a file, a text file referring to
// another, and a derivation (which has references and is the deriver of
// nothing here).
func nixPaths(t *testing.T, nix *testenv.Nix) []string {
	dir := t.TempDir()
	src := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(src, "sub", "(paren)"), 0o755)
	os.WriteFile(filepath.Join(src, "sub", "exe"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(src, "type"), []byte("name"), 0o644)
	os.WriteFile(filepath.Join(src, "big"), bytes.Repeat([]byte("0123456789"), 100_000), 0o644)
	os.WriteFile(filepath.Join(src, "sub", "(paren)", ")"), []byte("contents"), 0o644)
	os.Symlink("sub/exe", filepath.Join(src, "link"))
	expr := filepath.Join(dir, "e.nix")
	os.WriteFile(expr, []byte(`let a = builtins.toFile "a" "hello"; b = builtins.toFile "b" "see ${a}"; in
derivation { name = "d"; system = "x86_64-linux"; builder = "/bin/sh"; inherit b; src = `+src+`; }`), 0o644)
	drv := nix.Run("nix-instantiate", expr)
	return strings.Fields(nix.Run("nix-store", "-qR", drv))
}

func TestRoundTripWithNix(t *testing.T) {
	ctx := context.Background()
	nix := testenv.NewNix(t)
	paths := nixPaths(t, nix)
	stream, err := nix.Output(nil, "nix-store", append([]string{"--export"}, paths...)...)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := newStore()
	infos, err := nixexport.Import(ctx, bytes.NewReader(stream), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != len(paths) {
		t.Fatalf("imported %d paths of %d", len(infos), len(paths))
	}
	for _, info := range infos {
		p := info.StorePath.Absolute()
		if want := nix.Run("nix-store", "-q", "--hash", p); nixpath.FormatSHA256(info.NarSHA256) != want {
			t.Errorf("%s: NAR hash %s, Nix %s", p, nixpath.FormatSHA256(info.NarSHA256), want)
		}
		want := strings.Fields(nix.Run("nix-store", "-q", "--references", p))
		var got []string
		for _, r := range info.References {
			got = append(got, r.Absolute())
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: references %v, Nix %v", p, got, want)
		}
	}

	// Back out, into a fresh Nix store.
	var out bytes.Buffer
	var sps []nixpath.StorePath
	for _, info := range infos {
		sps = append(sps, info.StorePath)
	}
	slices.Reverse(sps) // Export orders them itself.
	if err := nixexport.Export(ctx, &out, st, sps); err != nil {
		t.Fatal(err)
	}
	nix2 := testenv.NewNix(t)
	if _, err := nix2.Output(out.Bytes(), "nix-store", "--import"); err != nil {
		t.Fatalf("nix-store --import of castor's export: %v", err)
	}
	for _, p := range paths {
		if a, b := nix.Run("nix-store", "-q", "--hash", p), nix2.Run("nix-store", "-q", "--hash", p); a != b {
			t.Errorf("%s: hash %s after the round trip, %s before", p, b, a)
		}
		if a, b := nix.Run("nix-store", "-q", "--deriver", p), nix2.Run("nix-store", "-q", "--deriver", p); a != b {
			t.Errorf("%s: deriver %s after the round trip, %s before", p, b, a)
		}
	}
}

func TestRejects(t *testing.T) {
	ctx := context.Background()
	for name, in := range map[string][]byte{
		"empty":     nil,
		"bad count": {2, 0, 0, 0, 0, 0, 0, 0},
		"not a nar": append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0}, "abc\x00\x00\x00\x00\x00"...),
		"truncated": {1, 0, 0, 0, 0, 0, 0, 0, 13, 0, 0},
	} {
		st, infos := newStore()
		_, err := nixexport.Import(ctx, bytes.NewReader(in), st, nil)
		if !errors.Is(err, nixexport.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
		for range infos.List(ctx) {
			t.Errorf("%s: registered a path", name)
		}
	}
}

func FuzzImport(f *testing.F) {
	seed, err := os.ReadFile("testdata/seed.export")
	if err == nil {
		f.Add(seed)
	}
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		st, _ := newStore()
		infos, err := nixexport.Import(context.Background(), bytes.NewReader(data), st, nil)
		for _, info := range infos {
			if err := info.Validate(); err != nil {
				t.Fatalf("registered an invalid path info: %v", err)
			}
		}
		_ = err
	})
}
