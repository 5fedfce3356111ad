package builder_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/castor-nix/castor/builder"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/nar/nartest"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
	pimemory "github.com/castor-nix/castor/store/pathinfo/memory"
)

type testStore struct {
	blobs *memory.BlobService
	dirs  *memory.DirectoryService
	infos *pimemory.Service
}

func newTestStore() *testStore {
	return &testStore{memory.NewBlobService(), memory.NewDirectoryService(), pimemory.New()}
}

func (s *testStore) builderStore() builder.Store {
	return builder.Store{Blobs: s.blobs, Directories: s.dirs, PathInfos: s.infos}
}

func (s *testStore) count(t *testing.T) int {
	n := 0
	for _, err := range s.infos.List(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

func mustPath(t testing.TB, s string) nixpath.StorePath {
	t.Helper()
	p, err := nixpath.ParseAbsolute(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	inPath  = "/nix/store/0gqvxzj58js4xp7hc6fbi0cw9p6cyn5p-input"
	outPath = "/nix/store/3397qmq3n19sjnh2wjg8avv536284bys-multi"
	devPath = "/nix/store/fbbr2jq7ri5g2ic7fd46dy37vgdyxmyc-multi-dev"
	drvPath = "/nix/store/lgxs4n4f2794h2p4p1bsynv9jf3abhwx-multi.drv"
	// unknown is a well-formed hash part of nothing the build knows.
	unknown = "/nix/store/1lak0mvllw8rv9i9ygkglvhqsq19qi9y-other"
)

// outputsBuild lays out outputs under a temporary root the way a sandbox
// leaves them and describes them as a Build.
func outputsBuild(t *testing.T, write func(root string)) (*builder.Build, *builder.DirOutputs) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "nix/store"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(root)
	in := mustPath(t, inPath)
	b := &builder.Build{
		Inputs:         []castore.NamedNode{{Name: in.String(), Node: castore.Node{Kind: castore.KindSymlink, Target: "x"}}},
		Outputs:        []string{"nix/store/" + mustPath(t, outPath).String(), "nix/store/" + mustPath(t, devPath).String()},
		RefscanNeedles: []string{in.HashPart(), mustPath(t, outPath).HashPart(), mustPath(t, devPath).HashPart()},
	}
	return b, &builder.DirOutputs{Root: root, Paths: b.Outputs}
}

func specs(t *testing.T) []builder.OutputSpec {
	return []builder.OutputSpec{{Name: "out", Path: mustPath(t, outPath)}, {Name: "dev", Path: mustPath(t, devPath)}}
}

func TestIngestAgainstNix(t *testing.T) {
	nartest.NeedNix(t)
	ctx := context.Background()
	b, outs := outputsBuild(t, func(root string) {
		out := filepath.Join(root, outPath)
		os.MkdirAll(filepath.Join(out, "bin"), 0o755)
		os.WriteFile(filepath.Join(out, "bin/run"), []byte("#!"+inPath+"/bin/sh\nexec "+devPath+"/x\n"), 0o755)
		os.WriteFile(filepath.Join(out, "self"), []byte("I am "+outPath), 0o644)
		os.WriteFile(filepath.Join(out, "unknown"), []byte(unknown), 0o644)
		os.Symlink("bin/run", filepath.Join(out, "link"))
		// A hash split across the NAR's padding and framing is still
		// found: here in a file name.
		os.WriteFile(filepath.Join(out, mustPath(t, inPath).HashPart()), nil, 0o644)
		os.WriteFile(filepath.Join(root, devPath), []byte("plain dev output, no references\n"), 0o644)
	})
	st := newTestStore()
	deriver := mustPath(t, drvPath)
	infos, err := builder.Ingest(ctx, st.builderStore(), b, outs, specs(t), builder.IngestOptions{Deriver: &deriver, What: drvPath})
	if err != nil {
		t.Fatal(err)
	}
	wantRefs := [][]string{{inPath, outPath, devPath}, nil}
	for i, info := range infos {
		p := filepath.Join(outs.Root, info.StorePath.Absolute())
		if want := nartest.NixHashPath(t, p); info.NarSHA256 != want {
			t.Errorf("%s: NAR hash %x, nix hash path %x", info.StorePath, info.NarSHA256, want)
		}
		var rendered bytes.Buffer
		if err := nar.Render(ctx, &rendered, info.Node, st.blobs, st.dirs); err != nil {
			t.Fatal(err)
		}
		if nixNAR := nartest.NixDump(t, p); !bytes.Equal(rendered.Bytes(), nixNAR) || uint64(len(nixNAR)) != info.NarSize {
			t.Errorf("%s: castore renders a NAR of %d bytes, Nix dumps %d (size recorded %d)", info.StorePath, rendered.Len(), len(nixNAR), info.NarSize)
		}
		var refs []string
		for _, r := range info.References {
			refs = append(refs, r.Absolute())
		}
		want := slices.Clone(wantRefs[i])
		slices.SortFunc(want, func(a, b string) int { return mustPath(t, a).Compare(mustPath(t, b)) })
		if !slices.Equal(refs, want) {
			t.Errorf("%s: references %v, want %v", info.StorePath, refs, want)
		}
		if info.Deriver == nil || *info.Deriver != deriver || info.CA != nil {
			t.Errorf("%s: deriver %v, CA %v", info.StorePath, info.Deriver, info.CA)
		}
		if got, err := st.infos.Get(ctx, info.StorePath.Digest); err != nil || got.NarSHA256 != info.NarSHA256 {
			t.Errorf("%s not registered: %v", info.StorePath, err)
		}
	}
}

func TestIngestFailuresRegisterNothing(t *testing.T) {
	ctx := context.Background()
	cases := map[string]struct {
		write func(root string)
		is    error
	}{
		"missing output": {func(root string) {
			os.WriteFile(filepath.Join(root, outPath), []byte("only out"), 0o644)
		}, builder.ErrNoOutput},
		"cycle": {func(root string) {
			os.WriteFile(filepath.Join(root, outPath), []byte(devPath), 0o644)
			os.WriteFile(filepath.Join(root, devPath), []byte(outPath), 0o644)
		}, builder.ErrInvalid},
		"fifo": {func(root string) {
			os.WriteFile(filepath.Join(root, outPath), nil, 0o644)
			os.MkdirAll(filepath.Join(root, devPath), 0o755)
			if err := mkfifo(filepath.Join(root, devPath, "fifo")); err != nil {
				t.Skip(err)
			}
		}, builder.ErrInvalid},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			b, outs := outputsBuild(t, c.write)
			st := newTestStore()
			_, err := builder.Ingest(ctx, st.builderStore(), b, outs, specs(t), builder.IngestOptions{What: drvPath})
			if !errors.Is(err, c.is) {
				t.Fatalf("error %v, want one wrapping %v", err, c.is)
			}
			if n := st.count(t); n != 0 {
				t.Errorf("%d path infos registered after a failure", n)
			}
		})
	}
}

func TestIngestFixed(t *testing.T) {
	ctx := context.Background()
	content := []byte("hello")
	flat := sha256.Sum256(content)
	s1 := sha1.Sum(content)
	mk := func(method nixpath.Method, h *nixhash.Hash) (nixpath.StorePath, *nixpath.ContentAddress) {
		ca := &nixpath.ContentAddress{Method: method, Hash: h}
		p, err := ca.StorePath("fixed", nil, false)
		if err != nil {
			t.Fatal(err)
		}
		return p, ca
	}
	run := func(t *testing.T, p nixpath.StorePath, ca *nixpath.ContentAddress, write func(string)) (*pathinfo.PathInfo, *testStore, error) {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "nix/store"), 0o755)
		write(filepath.Join(root, p.Absolute()))
		b := &builder.Build{Outputs: []string{"nix/store/" + p.String()}, RefscanNeedles: []string{p.HashPart()}}
		st := newTestStore()
		infos, err := builder.Ingest(ctx, st.builderStore(), b, &builder.DirOutputs{Root: root, Paths: b.Outputs},
			[]builder.OutputSpec{{Name: "out", Path: p, CA: ca}}, builder.IngestOptions{What: "/nix/store/x-fixed.drv"})
		if err != nil {
			return nil, st, err
		}
		return infos[0], st, nil
	}
	file := func(data []byte, mode os.FileMode) func(string) {
		return func(p string) { os.WriteFile(p, data, mode) }
	}

	p, ca := mk(nixpath.Flat, nixpath.SHA256Hash(flat))
	info, _, err := run(t, p, ca, file(content, 0o644))
	if err != nil || info.CA == nil || info.CA.String() != ca.String() {
		t.Fatalf("flat sha256: %v %v", info, err)
	}
	p, ca = mk(nixpath.Flat, nixhash.MustNewHash(nixhash.SHA1, s1[:]))
	if _, _, err := run(t, p, ca, file(content, 0o644)); err != nil {
		t.Fatalf("flat sha1: %v", err)
	}
	_, st, err := run(t, p, ca, file([]byte("other"), 0o644))
	if !errors.Is(err, builder.ErrHashMismatch) || st.count(t) != 0 {
		t.Fatalf("mismatch: %v", err)
	}
	// Nix's message, with both hashes in SRI form.
	want := "hash mismatch in fixed-output derivation '/nix/store/x-fixed.drv':\n  specified: sha1-qvTGHdzF6KLavt4PO0gs2a6pQ00=\n     got:    sha1-"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("message %q lacks %q", err, want)
	}
	if _, _, err := run(t, p, ca, file(content, 0o755)); !errors.Is(err, builder.ErrInvalid) {
		t.Errorf("executable flat output: %v", err)
	}
	if _, _, err := run(t, p, ca, func(p string) { os.Mkdir(p, 0o755) }); !errors.Is(err, builder.ErrInvalid) {
		t.Errorf("directory as flat output: %v", err)
	}

	// Recursive sha1 hashes the NAR with sha1.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), content, 0o644)
	var narBuf bytes.Buffer
	if err := builder.DumpNAR(ctx, dir, &narBuf); err != nil {
		t.Fatal(err)
	}
	ns1 := sha1.Sum(narBuf.Bytes())
	p, ca = mk(nixpath.Recursive, nixhash.MustNewHash(nixhash.SHA1, ns1[:]))
	info, _, err = run(t, p, ca, func(p string) { os.Mkdir(p, 0o755); os.WriteFile(filepath.Join(p, "f"), content, 0o644) })
	if err != nil || info.NarSHA256 != sha256.Sum256(narBuf.Bytes()) {
		t.Fatalf("recursive sha1: %v", err)
	}
	// A fixed output that refers to itself is refused.
	ns := sha256.Sum256(narBuf.Bytes())
	p, ca = mk(nixpath.Recursive, nixpath.SHA256Hash(ns))
	if _, _, err := run(t, p, ca, func(q string) {
		os.Mkdir(q, 0o755)
		os.WriteFile(filepath.Join(q, "f"), []byte(p.HashPart()), 0o644)
	}); err == nil {
		t.Error("self-referring fixed output accepted")
	}
}

func TestScannerAcrossWrites(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := nixbase32.Alphabet
	randHash := func() string {
		b := make([]byte, nixpath.DigestChars)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	for round := 0; round < 200; round++ {
		var needles []string
		for range 5 {
			needles = append(needles, randHash())
		}
		// Base32 noise around the needles makes overlapping windows.
		var data []byte
		planted := map[string]bool{}
		for range 20 {
			switch rng.IntN(3) {
			case 0:
				n := needles[rng.IntN(len(needles))]
				data = append(data, n...)
				planted[n] = true
			case 1:
				data = append(data, alphabet[rng.IntN(len(alphabet))])
			default:
				data = append(data, "-/\x00é"[rng.IntN(4)])
			}
		}
		s := builder.NewScanner(needles)
		for rest := data; len(rest) > 0; {
			n := 1 + rng.IntN(40)
			n = min(n, len(rest))
			s.Write(rest[:n])
			rest = rest[n:]
		}
		var want []string
		for _, n := range needles {
			if bytes.Contains(data, []byte(n)) {
				want = append(want, n)
			}
		}
		slices.Sort(want)
		want = slices.Compact(want)
		if got := s.Found(); !slices.Equal(got, want) {
			t.Fatalf("round %d: found %v, want %v in %q", round, got, want, data)
		}
	}
}
