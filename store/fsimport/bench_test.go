package fsimport_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
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

// BenchmarkImportSmallFiles imports 100 directories of 100 files of 0-2
// KiB: per-file costs (open, stat, blob writer, hand-over) dominate.
func BenchmarkImportSmallFiles(b *testing.B) {
	root := filepath.Join(b.TempDir(), "tree")
	var total int64
	data := bytes.Repeat([]byte("0123456789abcdef"), 128)
	if err := os.Mkdir(root, 0o755); err != nil {
		b.Fatal(err)
	}
	for d := range 100 {
		dir := filepath.Join(root, fmt.Sprintf("dir%03d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range 100 {
			n := (d*100 + f) * 7 % len(data)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file%03d", f)), data[:n], 0o644); err != nil {
				b.Fatal(err)
			}
			total += int64(n)
		}
	}
	ctx := context.Background()
	for _, workers := range []int{1, 0, 8} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.SetBytes(total)
			b.ReportAllocs()
			for range b.N {
				if _, _, _, err := fsimport.Import(ctx, root, nartest.DiscardBlobs{}, memory.NewDirectoryService(), &fsimport.Options{Workers: workers}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
