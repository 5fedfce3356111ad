package nar_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/nar"
)

// manyFilesNAR has n files of distinct contents in nested directories.
func manyFilesNAR(n int) []byte {
	var files [][]any
	for i := range n {
		files = append(files, entryOf(fmt.Sprintf("f%03d", i), file(fmt.Sprintf("contents of file %d", i))))
	}
	return narOf(dir(entryOf("a", dir(files...)), entryOf("b", file("tail"))))
}

func ingested(t *testing.T, b []byte) (castore.Node, *memory.BlobService, *memory.DirectoryService) {
	t.Helper()
	bs, ds := memory.NewBlobService(), memory.NewDirectoryService()
	root, _, _, err := nar.Ingest(context.Background(), bytes.NewReader(b), bs, ds)
	if err != nil {
		t.Fatal(err)
	}
	return root, bs, ds
}

// slowBlobs delays every open and records how many were in progress at
// once.
type slowBlobs struct {
	castore.BlobOpener
	mu        sync.Mutex
	open, max int
}

func (s *slowBlobs) OpenBlob(ctx context.Context, d castore.Digest) (castore.BlobReader, error) {
	s.mu.Lock()
	s.open++
	s.max = max(s.max, s.open)
	s.mu.Unlock()
	// A remote store's latency; only the overlap it allows is asserted.
	time.Sleep(2 * time.Millisecond)
	s.mu.Lock()
	s.open--
	s.mu.Unlock()
	return s.BlobOpener.OpenBlob(ctx, d)
}

// TestRenderFetchesAhead: with a slow blob store, Render has several blobs
// in flight at once, and never more than its bound.
func TestRenderFetchesAhead(t *testing.T) {
	want := manyFilesNAR(64)
	root, bs, ds := ingested(t, want)
	slow := &slowBlobs{BlobOpener: bs}
	var got bytes.Buffer
	if err := nar.Render(context.Background(), &got, root, slow, ds); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatal("wrong NAR")
	}
	t.Logf("at most %d blobs fetched at once", slow.max)
	if slow.max < 2 || slow.max > 20 {
		t.Fatalf("%d blobs fetched at once, want between 2 and the bound", slow.max)
	}
}

// missingBlobs hides one blob.
type missingBlobs struct {
	castore.BlobOpener
	gone castore.Digest
}

func (m missingBlobs) OpenBlob(ctx context.Context, d castore.Digest) (castore.BlobReader, error) {
	if d == m.gone {
		return nil, fmt.Errorf("blob %s: %w", d, castore.ErrNotFound)
	}
	return m.BlobOpener.OpenBlob(ctx, d)
}

func TestRenderErrors(t *testing.T) {
	ctx := context.Background()
	b := narOf(dir(entryOf("a", dir(entryOf("x", file("xx")), entryOf("y", file("yyyy")))), entryOf("z", file("zzz"))))
	root, bs, ds := ingested(t, b)
	top, err := ds.GetDirectory(ctx, root.Digest)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := ds.GetDirectory(ctx, top.Directories[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	render := func(root castore.Node, bs castore.BlobOpener, ds castore.DirectoryGetter) error {
		var out bytes.Buffer
		err := nar.Render(ctx, &out, root, bs, ds)
		if err != nil && bytes.Equal(out.Bytes(), b) {
			t.Fatal("error reported after a whole NAR was written")
		}
		return err
	}

	t.Run("missing blob", func(t *testing.T) {
		err := render(root, missingBlobs{bs, sub.Files[1].Digest}, ds)
		if !errors.Is(err, castore.ErrNotFound) || !bytes.Contains([]byte(err.Error()), []byte("/a/y")) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("corrupt blob", func(t *testing.T) {
		bs2, ds2 := memory.NewBlobService(), memory.NewDirectoryService()
		root2, _, _, err := nar.Ingest(ctx, bytes.NewReader(b), bs2, ds2)
		if err != nil {
			t.Fatal(err)
		}
		bs2.Corrupt(sub.Files[0].Digest, []byte("xY"))
		if err := render(root2, bs2, ds2); !errors.Is(err, castore.ErrCorrupt) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing root directory", func(t *testing.T) {
		err := render(root, bs, memory.NewDirectoryService())
		if !errors.Is(err, castore.ErrNotFound) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing child directory", func(t *testing.T) {
		ds2 := memory.NewDirectoryService()
		p := ds2.NewDirectoryPutter(ctx)
		p.Put(ctx, sub)
		p.Put(ctx, top)
		if _, err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
		ds2.Delete(top.Directories[0].Digest)
		if err := render(root, bs, ds2); !errors.Is(err, castore.ErrNotFound) {
			t.Fatalf("got %v", err)
		}
	})
	for _, c := range []struct {
		name string
		size uint64
	}{{"size too small", 3}, {"size too large", 5}, {"size huge", 1 << 40}} {
		t.Run(c.name, func(t *testing.T) {
			// A directory whose entry for y records the wrong size.
			bad := *sub
			bad.Files = append([]castore.FileEntry(nil), sub.Files...)
			bad.Files[1].Size = c.size
			ds2 := memory.NewDirectoryService()
			p := ds2.NewDirectoryPutter(ctx)
			dg, err := p.Put(ctx, &bad)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Close(ctx); err != nil {
				t.Fatal(err)
			}
			node := castore.Node{Kind: castore.KindDirectory, Digest: dg, Size: 4}
			if err := render(node, bs, ds2); !errors.Is(err, castore.ErrCorrupt) {
				t.Fatalf("got %v", err)
			}
		})
	}
	t.Run("file root with wrong size", func(t *testing.T) {
		n := castore.Node{Kind: castore.KindFile, Digest: sub.Files[1].Digest, Size: 3}
		if err := render(n, bs, nil); !errors.Is(err, castore.ErrCorrupt) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		c, cancel := context.WithCancel(ctx)
		cancel()
		var out bytes.Buffer
		if err := nar.Render(c, &out, root, bs, ds); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("empty file needs no blob", func(t *testing.T) {
		b := narOf(dir(entryOf("e", file(""))))
		root, _, ds := ingested(t, b)
		var out bytes.Buffer
		if err := nar.Render(ctx, &out, root, memory.NewBlobService(), ds); err != nil || !bytes.Equal(out.Bytes(), b) {
			t.Fatalf("got %v", err)
		}
	})
}

// TestRenderLargeBlobs covers blobs larger than the read-ahead head, whose
// tails stream from the reader.
func TestRenderLargeBlobs(t *testing.T) {
	big1 := bytes.Repeat([]byte("abcdefg"), 500000) // 3.5 MB
	big2 := bytes.Repeat([]byte("xyz"), 1<<20)
	b := narOf(dir(entryOf("1", file(string(big1))), entryOf("2", file("small")), entryOf("3", file(string(big2)))))
	root, bs, ds := ingested(t, b)
	var out bytes.Buffer
	if err := nar.Render(context.Background(), &out, root, bs, ds); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), b) {
		t.Fatal("wrong NAR")
	}
}
