package nar_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/nar"
)

// raw is a byte string inserted as-is by build.
type raw []byte

// build assembles a NAR from tokens: a string is a NAR string (length,
// bytes, zero padding); a uint64 is a bare length; raw is inserted as is.
func build(toks ...any) []byte {
	var b bytes.Buffer
	for _, t := range toks {
		switch t := t.(type) {
		case string:
			binary.Write(&b, binary.LittleEndian, uint64(len(t)))
			b.WriteString(t)
			b.Write(make([]byte, (8-len(t)%8)%8))
		case uint64:
			binary.Write(&b, binary.LittleEndian, t)
		case raw:
			b.Write(t)
		case []any:
			b.Write(build(t...))
		default:
			panic("bad token")
		}
	}
	return b.Bytes()
}

func file(contents string) []any {
	return []any{"(", "type", "regular", "contents", contents, ")"}
}

func entryOf(name string, node []any) []any {
	return []any{"entry", "(", "name", name, "node", node, ")"}
}

func dir(entries ...[]any) []any {
	toks := []any{"(", "type", "directory"}
	for _, e := range entries {
		toks = append(toks, e)
	}
	return append(toks, ")")
}

func symlink(target string) []any {
	return []any{"(", "type", "symlink", "target", target, ")"}
}

func narOf(node []any) []byte { return build("nix-archive-1", node) }

// goodNAR exercises every node type, nesting and an executable file.
func goodNAR() []byte {
	return narOf(dir(
		entryOf("a", file("hello")),
		entryOf("b", dir(entryOf("c", symlink("../a")), entryOf("d", dir()))),
		entryOf("x", []any{"(", "type", "regular", "executable", "", "contents", "#!/bin/sh\n", ")"}),
	))
}

func TestGoodNAR(t *testing.T) {
	b := goodNAR()
	es := readAll(t, b)
	want := []string{"/", "/a", "/b", "/b/c", "/b/d", "/x"}
	if len(es) != len(want) {
		t.Fatalf("got %v", es)
	}
	for i, e := range es {
		if e.Path != want[i] {
			t.Fatalf("entry %d is %s, want %s", i, e.Path, want[i])
		}
	}
	if !es[5].Executable || es[1].Executable || string(es[1].data) != "hello" || es[3].LinkTarget != "../a" {
		t.Fatalf("wrong entries: %v", es)
	}
	if got := writeAll(t, es); !bytes.Equal(got, b) {
		t.Fatal("Writer does not reproduce the NAR")
	}
}

// badNARs are malformed NARs, each with a word its error must contain.
func badNARs() map[string]struct {
	nar  []byte
	want string
} {
	long := strings.Repeat("n", 256)
	type c = struct {
		nar  []byte
		want string
	}
	good := goodNAR()
	return map[string]c{
		"empty":             {nil, "truncated"},
		"bad magic":         {build("nix-archive-2", file("")), "magic"},
		"huge magic":        {build(uint64(1<<60), raw("x")), "magic"},
		"unknown type":      {narOf([]any{"(", "type", "fifo", ")"}), "unknown node type"},
		"unknown token":     {narOf([]any{"(", "type", "regular", "content", "", ")"}), `expected "contents"`},
		"no open paren":     {narOf([]any{"type", "regular"}), `expected "("`},
		"bad executable":    {narOf([]any{"(", "type", "regular", "executable", "x", "contents", "", ")"}), "executable marker"},
		"exec after":        {narOf([]any{"(", "type", "regular", "contents", "", "executable", "", ")"}), `expected ")"`},
		"two contents":      {narOf([]any{"(", "type", "regular", "contents", "", "contents", "", ")"}), `expected ")"`},
		"no contents":       {narOf([]any{"(", "type", "regular", ")"}), `expected "contents"`},
		"huge contents":     {narOf([]any{"(", "type", "regular", "contents", uint64(1 << 63)}), "too large"},
		"bad pad contents":  {build("nix-archive-1", "(", "type", "regular", "contents", uint64(3), raw("abc\x00\x00\x01\x00\x00"), ")"), "padding"},
		"no pad contents":   {build("nix-archive-1", "(", "type", "regular", "contents", uint64(3), raw("abc"), ")"), ""},
		"bad pad token":     {build("nix-archive-1", uint64(1), raw("(\x00\x00\x00\x00\x00\x00\x07")), "padding"},
		"bad pad name":      {build("nix-archive-1", "(", "type", "directory", "entry", "(", "name", uint64(1), raw("a\x00\x00\x00\x00\x00\x00\x01")), "padding"},
		"unsorted":          {narOf(dir(entryOf("b", file("")), entryOf("a", file("")))), "not sorted"},
		"unsorted bytes":    {narOf(dir(entryOf("a", file("")), entryOf("B", file("")))), "not sorted"},
		"duplicate":         {narOf(dir(entryOf("a", file("")), entryOf("a", dir()))), "duplicate"},
		"name empty":        {narOf(dir(entryOf("", file("")))), "empty entry name"},
		"name dot":          {narOf(dir(entryOf(".", file("")))), `"."`},
		"name dotdot":       {narOf(dir(entryOf("..", file("")))), `".."`},
		"name slash":        {narOf(dir(entryOf("a/b", file("")))), "contains '/'"},
		"name traversal":    {narOf(dir(entryOf("../../etc", file("")))), "contains '/'"},
		"name NUL":          {narOf(dir(entryOf("a\x00b", file("")))), "NUL"},
		"name too long":     {narOf(dir(entryOf(long, file("")))), "longer than 255"},
		"name huge":         {build("nix-archive-1", "(", "type", "directory", "entry", "(", "name", uint64(1<<62)), "longer than 255"},
		"target empty":      {narOf(symlink("")), "empty symlink target"},
		"target NUL":        {narOf(symlink("a\x00")), "NUL"},
		"target too long":   {narOf(symlink(strings.Repeat("t", 4096))), "longer than 4095"},
		"symlink no target": {narOf([]any{"(", "type", "symlink", ")"}), `expected "target"`},
		"dir bad token":     {narOf([]any{"(", "type", "directory", "entries"}), `expected "entry" or ")"`},
		"entry no name":     {narOf([]any{"(", "type", "directory", "entry", "(", "node", file(""), ")", ")"}), `expected "name"`},
		"entry unclosed":    {narOf([]any{"(", "type", "directory", "entry", "(", "name", "a", "node", file(""), "entry"}), `expected ")"`},
		"trailing byte":     {append(good, 0), "data after"},
		"trailing node":     {append(good, build(file(""))...), "data after"},
		"trailing padding":  {append(good, make([]byte, 8)...), "data after"},
		"two roots":         {build("nix-archive-1", file(""), file("")), "data after"},
	}
}

func readErr(b []byte) error {
	r := nar.NewReader(bytes.NewReader(b))
	for {
		_, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
	}
}

func TestReaderRejects(t *testing.T) {
	for name, c := range badNARs() {
		t.Run(name, func(t *testing.T) {
			err := readErr(c.nar)
			if !errors.Is(err, nar.ErrInvalid) {
				t.Fatalf("got %v, want an error wrapping ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
		})
	}
}

// TestReaderTruncated cuts a NAR at every offset: each prefix is an error
// wrapping io.ErrUnexpectedEOF and ErrInvalid that says where.
func TestReaderTruncated(t *testing.T) {
	b := goodNAR()
	for i := range len(b) {
		err := readErr(b[:i])
		if !errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, nar.ErrInvalid) {
			t.Fatalf("cut at %d: got %v", i, err)
		}
		if !strings.Contains(err.Error(), "truncated") || !strings.Contains(err.Error(), "at /") {
			t.Fatalf("cut at %d: error %q does not say where", i, err)
		}
	}
}

// TestReaderErrorPosition checks errors name the NAR path.
func TestReaderErrorPosition(t *testing.T) {
	b := narOf(dir(entryOf("sub", dir(entryOf("z", file("")), entryOf("y", file(""))))))
	err := readErr(b)
	if err == nil || !strings.Contains(err.Error(), "at /sub,") {
		t.Fatalf("got %v, want the path /sub", err)
	}
}

// recordingDS wraps a directory service and remembers what was put.
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

// trackingBS wraps a blob service and checks every writer gets closed.
type trackingBS struct {
	*memory.BlobService
	mu      sync.Mutex
	open    int
	commits int
}

func (b *trackingBS) NewBlobWriter(ctx context.Context) (castore.BlobWriter, error) {
	w, err := b.BlobService.NewBlobWriter(ctx)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.open++
	b.mu.Unlock()
	return &trackingWriter{BlobWriter: w, b: b}, nil
}

type trackingWriter struct {
	castore.BlobWriter
	b      *trackingBS
	closed bool
}

func (w *trackingWriter) Commit() (castore.Digest, error) {
	w.b.mu.Lock()
	w.b.commits++
	w.b.mu.Unlock()
	return w.BlobWriter.Commit()
}

func (w *trackingWriter) Close() error {
	if !w.closed {
		w.closed = true
		w.b.mu.Lock()
		w.b.open--
		w.b.mu.Unlock()
	}
	return w.BlobWriter.Close()
}

// ingestFails ingests b, which must fail, and checks that no directory put
// became visible and every blob writer was closed.
func ingestFails(t *testing.T, b []byte) error {
	t.Helper()
	ctx := context.Background()
	bs := &trackingBS{BlobService: memory.NewBlobService()}
	ds := &recordingDS{DirectoryService: memory.NewDirectoryService()}
	_, _, _, err := nar.Ingest(ctx, bytes.NewReader(b), bs, ds)
	if err == nil {
		t.Fatal("Ingest accepted a bad NAR")
	}
	for _, d := range ds.put {
		if _, err := ds.GetDirectory(ctx, d); !errors.Is(err, castore.ErrNotFound) {
			t.Fatalf("directory %s is visible after a failed ingest (%v)", d, err)
		}
	}
	if bs.open != 0 {
		t.Fatalf("%d blob writers left open", bs.open)
	}
	return err
}

func TestIngestRejects(t *testing.T) {
	for name, c := range badNARs() {
		t.Run(name, func(t *testing.T) {
			if err := ingestFails(t, c.nar); !errors.Is(err, nar.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestIngestTruncated(t *testing.T) {
	b := goodNAR()
	for i := range len(b) {
		if err := ingestFails(t, b[:i]); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("cut at %d: got %v", i, err)
		}
	}
	// A file cut short is never committed, even after some of its chunks
	// went to the blob writer.
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB
	bigNAR := narOf(dir(entryOf("a", file("small")), entryOf("big", file(string(big)))))
	for _, cut := range []int{len(bigNAR) - 2<<20, len(bigNAR) - 100, len(bigNAR) - 20} {
		bs := &trackingBS{BlobService: memory.NewBlobService()}
		_, _, _, err := nar.Ingest(context.Background(), bytes.NewReader(bigNAR[:cut]), bs, memory.NewDirectoryService())
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("cut at %d: got %v", cut, err)
		}
		if cut < len(bigNAR)-40 && bs.commits > 1 {
			t.Fatalf("cut at %d: %d blobs committed, want only the small file", cut, bs.commits)
		}
		if bs.open != 0 {
			t.Fatalf("%d blob writers left open", bs.open)
		}
	}
	// The whole NAR goes in, puts every directory and is visible.
	ctx := context.Background()
	ds := &recordingDS{DirectoryService: memory.NewDirectoryService()}
	if _, _, _, err := nar.Ingest(ctx, bytes.NewReader(b), memory.NewBlobService(), ds); err != nil {
		t.Fatal(err)
	}
	if len(ds.put) != 3 {
		t.Fatalf("put %d directories, want 3", len(ds.put))
	}
	for _, d := range ds.put {
		if _, err := ds.GetDirectory(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
}

// errReader fails after n bytes.
type errReader struct {
	r io.Reader
	n int
}

var errBoom = errors.New("boom")

func (e *errReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, errBoom
	}
	if len(p) > e.n {
		p = p[:e.n]
	}
	n, err := e.r.Read(p)
	e.n -= n
	return n, err
}

// TestIngestSourceError: a failing source is reported as itself, not as
// a malformed NAR, and leaves nothing visible.
func TestIngestSourceError(t *testing.T) {
	b := goodNAR()
	ctx := context.Background()
	for _, n := range []int{0, 20, len(b) / 2, len(b) - 1} {
		ds := &recordingDS{DirectoryService: memory.NewDirectoryService()}
		_, _, _, err := nar.Ingest(ctx, &errReader{bytes.NewReader(b), n}, memory.NewBlobService(), ds)
		if !errors.Is(err, errBoom) || errors.Is(err, nar.ErrInvalid) {
			t.Fatalf("at %d: got %v", n, err)
		}
		for _, d := range ds.put {
			if _, err := ds.GetDirectory(ctx, d); !errors.Is(err, castore.ErrNotFound) {
				t.Fatalf("directory visible after failure")
			}
		}
	}
}

func TestIngestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, _, err := nar.Ingest(ctx, bytes.NewReader(goodNAR()), memory.NewBlobService(), memory.NewDirectoryService())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}
