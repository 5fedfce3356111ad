package e2e

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/store/nar/nartest"
	"github.com/castor-nix/castor/store/nixpath"
)

// TestStoreAgainstNix adds generated trees with castor and with Nix 2.8 and
// compares store paths, NAR bytes and NAR hashes; then imports Nix's NAR
// and exports it again.
func TestStoreAgainstNix(t *testing.T) {
	nix := testenv.NewNix(t)
	s := newStore(t)
	for seed := range uint64(4) {
		tree := filepath.Join(t.TempDir(), "tree-"+string(rune('a'+seed)))
		nartest.GenTree(t, tree, seed, nartest.TreeOptions{Entries: 80, LargeFiles: seed%2 == 0})

		want := nix.Run("nix-store", "--add", tree)
		got := s.ok("store", "add", tree)
		if got != want {
			t.Fatalf("seed %d: castor store add = %s, nix-store --add = %s", seed, got, want)
		}
		wantNAR, err := nix.Output(nil, "nix-store", "--dump", tree)
		if err != nil {
			t.Fatal(err)
		}
		gotNAR := s.run(nil, "store", "dump", got)
		if gotNAR.code != 0 {
			t.Fatalf("dump: %s", gotNAR.stderr)
		}
		if !bytes.Equal(gotNAR.stdout, wantNAR) {
			t.Fatalf("seed %d: castor store dump differs from nix-store --dump (%d vs %d bytes)", seed, len(gotNAR.stdout), len(wantNAR))
		}
		info := s.ok("store", "path-info", got)
		wantHash := nix.Run("nix", "hash", "path", "--base32", tree)
		if !strings.Contains(info, "NarHash: sha256:"+wantHash+"\n") {
			t.Fatalf("seed %d: path-info\n%s\nlacks NarHash sha256:%s", seed, info, wantHash)
		}
		if !strings.Contains(info, "CA: fixed:r:sha256:"+wantHash+"\n") {
			t.Errorf("seed %d: path-info lacks the content address Nix records", seed)
		}

		// The NAR Nix wrote, imported and exported, is the same bytes.
		narFile := filepath.Join(t.TempDir(), "x.nar")
		if err := os.WriteFile(narFile, wantNAR, 0o644); err != nil {
			t.Fatal(err)
		}
		imported := s.ok("store", "import-nar", "--name", "imported", narFile)
		fixed := nix.Run("nix-store", "--add-fixed", "--recursive", "sha256", tree)
		sum := sha256.Sum256(wantNAR)
		wantImported, _ := nixpath.MakeSourcePath(sum, "imported", nil, false)
		if imported != wantImported.Absolute() {
			t.Fatalf("import-nar printed %s, want %s", imported, wantImported.Absolute())
		}
		if fixed != want {
			t.Fatalf("nix-store --add-fixed --recursive sha256 = %s, --add = %s", fixed, want)
		}
		again := s.run(nil, "store", "dump", imported)
		if !bytes.Equal(again.stdout, wantNAR) {
			t.Fatalf("seed %d: NAR changed through import-nar and dump", seed)
		}
	}
	if out := s.ok("store", "verify"); !strings.Contains(out, " 0 damaged") {
		t.Fatalf("verify: %s", out)
	}
}

func TestLsCat(t *testing.T) {
	s := newStore(t)
	tree := filepath.Join(t.TempDir(), "t")
	os.MkdirAll(filepath.Join(tree, "bin"), 0o755)
	os.WriteFile(filepath.Join(tree, "bin", "hello"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	os.WriteFile(filepath.Join(tree, "README"), []byte("read me"), 0o644)
	os.Symlink("bin/hello", filepath.Join(tree, "link"))
	p := s.ok("store", "add", tree)
	if got := s.ok("store", "ls", p); got != "README\nbin\nlink" {
		t.Fatalf("ls: %q", got)
	}
	if got := s.ok("store", "ls", "-l", p+"/bin"); got != "-r-xr-xr-x           18 hello" {
		t.Fatalf("ls -l bin: %q", got)
	}
	if got := s.ok("store", "cat", p+"/README"); got != "read me" {
		t.Fatalf("cat: %q", got)
	}
	for _, bad := range []string{p + "/nope", p + "/bin/../README", p + "/README/x", "/nix/store/00000000000000000000000000000000-x"} {
		if r := s.run(nil, "store", "cat", bad); r.code == 0 {
			t.Errorf("cat %s succeeded", bad)
		}
	}
}

// TestBadNARLeavesNothing feeds broken NARs to import-nar: each fails with
// a message and the store still verifies, with nothing recorded.
func TestBadNARLeavesNothing(t *testing.T) {
	nix := testenv.NewNix(t)
	s := newStore(t)
	tree := filepath.Join(t.TempDir(), "t")
	nartest.GenTree(t, tree, 7, nartest.TreeOptions{Entries: 30, LargeFiles: true})
	good, err := nix.Output(nil, "nix-store", "--dump", tree)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"truncated":   good[:len(good)/2],
		"garbage":     []byte("not a nar at all, not at all"),
		"trailing":    append(append([]byte(nil), good...), make([]byte, 8)...),
		"empty input": {},
	}
	for name, data := range cases {
		r := s.run(data, "store", "import-nar", "--name", "bad")
		if r.code == 0 {
			t.Errorf("%s: import-nar succeeded", name)
		}
		if len(r.stderr) == 0 {
			t.Errorf("%s: no error message", name)
		}
	}
	out := s.run(nil, "store", "verify")
	if out.code != 0 || !bytes.Contains(out.stdout, []byte("0 paths checked, 0 damaged")) {
		t.Fatalf("verify after bad imports: %s %s", out.stdout, out.stderr)
	}
}

// TestVerifyFindsDamage flips bytes in stored chunks (in pack files, in
// their records: the index sits at the end): verify must fail and name the
// damaged path.
func TestVerifyFindsDamage(t *testing.T) {
	s := newStore(t)
	tree := filepath.Join(t.TempDir(), "t")
	nartest.GenTree(t, tree, 3, nartest.TreeOptions{Entries: 20, LargeFiles: true})
	p := s.ok("store", "add", tree)
	if out := s.ok("store", "verify"); !strings.Contains(out, "1 paths checked, 0 damaged") {
		t.Fatalf("verify of a healthy store: %s", out)
	}
	packs := filepath.Join(s.home, "castore", "packs")
	n := 0
	filepath.WalkDir(packs, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil || len(b) < 16 {
			return err
		}
		b[len(b)/4] ^= 0x55
		n++
		return os.WriteFile(path, b, 0o644)
	})
	if n == 0 {
		t.Fatal("found no pack files to damage under " + packs)
	}
	r := s.run(nil, "store", "verify")
	if r.code != 1 {
		t.Fatalf("verify of a damaged store exited %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !bytes.Contains(r.stdout, []byte("damaged: "+p)) {
		t.Fatalf("verify did not name %s:\n%s", p, r.stdout)
	}
}
