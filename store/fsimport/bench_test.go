package fsimport_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/fsimport"
	"github.com/castor-nix/castor/store/nar/nartest"
)

// BenchmarkImport imports a generated 128 MiB mixed tree (from the page
// cache after the first run).
func BenchmarkImport(b *testing.B) {
	root := filepath.Join(b.TempDir(), "tree")
	st := nartest.GenMixed(b, root, 128<<20, 2)
	b.Logf("tree: %d files, %d dirs, %d symlinks, %d bytes", st.Files, st.Dirs, st.Symlinks, st.Bytes)
	ctx := context.Background()
	for _, c := range []struct {
		name string
		bs   func() castore.BlobIngester
	}{
		{"hash-only", func() castore.BlobIngester { return nartest.DiscardBlobs{} }},
		{"memory", func() castore.BlobIngester { return memory.NewBlobService() }},
	} {
		for _, workers := range []int{1, 0} {
			b.Run(fmt.Sprintf("%s/workers=%d", c.name, workers), func(b *testing.B) {
				b.SetBytes(st.Bytes)
				for range b.N {
					if _, _, _, err := fsimport.Import(ctx, root, c.bs(), memory.NewDirectoryService(), &fsimport.Options{Workers: workers}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
