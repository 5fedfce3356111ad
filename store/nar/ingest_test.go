package nar_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"path/filepath"
	"testing"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/nar/nartest"
)

// TestIngestRenderNix ingests NARs written by Nix 2.8 and renders them
// back: the bytes must be identical, and the size and SHA-256 Ingest and
// CalculateNAR report must be those of Nix's NAR and `nix hash path`.
func TestIngestRenderNix(t *testing.T) {
	nartest.NeedNix(t)
	ctx := context.Background()
	for _, root := range genTrees(t, 4, true) {
		t.Run(filepath.Base(root), func(t *testing.T) {
			want := nartest.NixDump(t, root)
			wantSum := nartest.NixHashPath(t, root)
			if sha256.Sum256(want) != wantSum {
				t.Fatalf("nix hash path disagrees with the SHA-256 of nix-store --dump")
			}
			bs, ds := memory.NewBlobService(), memory.NewDirectoryService()
			node, size, sum, err := nar.Ingest(ctx, bytes.NewReader(want), bs, ds)
			if err != nil {
				t.Fatalf("Ingest: %v", err)
			}
			if size != uint64(len(want)) || sum != wantSum {
				t.Fatalf("Ingest: size %d sha256 %x, want %d %x", size, sum, len(want), wantSum)
			}
			var got bytes.Buffer
			if err := nar.Render(ctx, &got, node, bs, ds); err != nil {
				t.Fatalf("Render: %v", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("Render gave %d bytes differing from Nix's %d", got.Len(), len(want))
			}
			csize, csum, err := nar.CalculateNAR(ctx, node, bs, ds)
			if err != nil || csize != size || csum != sum {
				t.Fatalf("CalculateNAR: %d %x %v, want %d %x", csize, csum, err, size, sum)
			}
			if node.Kind == castore.KindDirectory {
				checkTree(t, ds, node)
			}
		})
	}
}

// checkTree checks every directory of the tree is stored, and that each
// recorded size is castore's formula applied to the stored child.
func checkTree(t *testing.T, ds castore.DirectoryGetter, n castore.Node) {
	t.Helper()
	d, err := ds.GetDirectory(context.Background(), n.Digest)
	if err != nil {
		t.Fatalf("directory %s: %v", n.Digest, err)
	}
	if d.Node() != n {
		t.Fatalf("directory node %+v, stored directory says %+v", n, d.Node())
	}
	for _, e := range d.Directories {
		checkTree(t, ds, castore.Node{Kind: castore.KindDirectory, Digest: e.Digest, Size: e.Size})
	}
}
