package nar_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/nar/nartest"
)

// entry is what a NAR says about one node, with the contents.
type entry struct {
	nar.Header
	data []byte
}

func (e entry) String() string {
	return fmt.Sprintf("%s %v size=%d x=%v target=%q", e.Path, e.Type, e.Size, e.Executable, e.LinkTarget)
}

// readAll reads a NAR whole with the Reader.
func readAll(t testing.TB, b []byte) []entry {
	t.Helper()
	r := nar.NewReader(bytes.NewReader(b))
	var out []entry
	for {
		h, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("Read %s: %v", h.Path, err)
		}
		if int64(len(data)) != h.Size {
			t.Fatalf("%s: read %d bytes, header says %d", h.Path, len(data), h.Size)
		}
		out = append(out, entry{*h, data})
	}
}

// writeAll writes entries with the Writer.
func writeAll(t testing.TB, es []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := nar.NewWriter(&buf)
	for _, e := range es {
		h := e.Header
		if err := w.WriteHeader(&h); err != nil {
			t.Fatalf("WriteHeader %s: %v", h.Path, err)
		}
		if _, err := w.Write(e.data); err != nil {
			if h.Type == nar.TypeRegular || len(e.data) > 0 {
				t.Fatalf("Write %s: %v", h.Path, err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return buf.Bytes()
}

// walkFS lists a tree the way a NAR does, from the filesystem itself, as
// an oracle for the Reader independent of any NAR code.
func walkFS(t testing.TB, root string) []entry {
	t.Helper()
	var out []entry
	var walk func(p, narPath string)
	walk = func(p, narPath string) {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, entry{nar.Header{Path: narPath, Type: nar.TypeRegular, Size: fi.Size(), Executable: fi.Mode()&0o100 != 0}, data})
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, entry{Header: nar.Header{Path: narPath, Type: nar.TypeSymlink, LinkTarget: target}})
		case fi.IsDir():
			out = append(out, entry{Header: nar.Header{Path: narPath, Type: nar.TypeDirectory}})
			des, err := os.ReadDir(p)
			if err != nil {
				t.Fatal(err)
			}
			names := make([]string, len(des))
			for i, de := range des {
				names[i] = de.Name()
			}
			sort.Strings(names)
			for _, n := range names {
				child := narPath + "/" + n
				if narPath == "/" {
					child = "/" + n
				}
				walk(filepath.Join(p, n), child)
			}
		default:
			t.Fatalf("%s: unexpected file type %v", p, fi.Mode())
		}
	}
	walk(root, "/")
	return out
}

func sameEntries(t testing.TB, got, want []entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Header != want[i].Header || !bytes.Equal(got[i].data, want[i].data) {
			t.Fatalf("entry %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

// genTrees makes a few trees, including roots that are a file or symlink.
func genTrees(t testing.TB, n int, large bool) []string {
	t.Helper()
	dir := t.TempDir()
	var roots []string
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("tree%d", i))
		nartest.GenTree(t, p, uint64(i+1), nartest.TreeOptions{LargeFiles: large && i == 0, Entries: 40 + 30*i})
		roots = append(roots, p)
	}
	f := filepath.Join(dir, "file-root")
	if err := os.WriteFile(f, []byte("a lone file\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	l := filepath.Join(dir, "link-root")
	if err := os.Symlink("/some/where", l); err != nil {
		t.Fatal(err)
	}
	e := filepath.Join(dir, "empty-root")
	if err := os.Mkdir(e, 0o755); err != nil {
		t.Fatal(err)
	}
	ef := filepath.Join(dir, "emptyfile-root")
	if err := os.WriteFile(ef, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return append(roots, f, l, e, ef)
}

// TestReaderWriterNix reads NARs written by Nix 2.8, checks the Reader
// against the filesystem they were dumped from, and checks the Writer
// reproduces Nix's bytes.
func TestReaderWriterNix(t *testing.T) {
	nartest.NeedNix(t)
	for _, root := range genTrees(t, 4, true) {
		t.Run(filepath.Base(root), func(t *testing.T) {
			want := nartest.NixDump(t, root)
			es := readAll(t, want)
			sameEntries(t, es, walkFS(t, root))
			if got := writeAll(t, es); !bytes.Equal(got, want) {
				t.Fatalf("Writer output (%d bytes) differs from nix-store --dump (%d bytes)", len(got), len(want))
			}
		})
	}
}
