package nar_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/nar/nartest"
)

// benchNAR is the NAR of a generated mixed tree of about 64 MiB.
func benchNAR(b *testing.B) []byte {
	b.Helper()
	root := filepath.Join(b.TempDir(), "tree")
	nartest.GenMixed(b, root, 64<<20, 1)
	return writeAll(b, walkFS(b, root))
}

func BenchmarkReader(b *testing.B) {
	data := benchNAR(b)
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		r := nar.NewReader(bytes.NewReader(data))
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(io.Discard, r, buf); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkIngest(b *testing.B) {
	data := benchNAR(b)
	ctx := context.Background()
	for _, c := range []struct {
		name string
		bs   func() castore.BlobIngester
	}{
		{"hash-only", func() castore.BlobIngester { return nartest.DiscardBlobs{} }},
		{"memory", func() castore.BlobIngester { return memory.NewBlobService() }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for range b.N {
				if _, _, _, err := nar.Ingest(ctx, bytes.NewReader(data), c.bs(), memory.NewDirectoryService()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRender(b *testing.B) {
	data := benchNAR(b)
	ctx := context.Background()
	bs, ds := memory.NewBlobService(), memory.NewDirectoryService()
	root, _, _, err := nar.Ingest(ctx, bytes.NewReader(data), bs, ds)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("discard", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for range b.N {
			if err := nar.Render(ctx, io.Discard, root, bs, ds); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CalculateNAR", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for range b.N {
			if _, _, err := nar.CalculateNAR(ctx, root, bs, ds); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// smallFilesNAR is the NAR of 100 directories of 100 files of 0-2 KiB:
// per-entry costs dominate.
func smallFilesNAR(b *testing.B) []byte {
	var buf bytes.Buffer
	w := nar.NewWriter(&buf)
	w.WriteHeader(&nar.Header{Path: "/", Type: nar.TypeDirectory})
	data := bytes.Repeat([]byte("0123456789abcdef"), 128)
	for d := range 100 {
		dir := fmt.Sprintf("/dir%03d", d)
		w.WriteHeader(&nar.Header{Path: dir, Type: nar.TypeDirectory})
		for f := range 100 {
			n := (d*100 + f) * 7 % len(data)
			w.WriteHeader(&nar.Header{Path: fmt.Sprintf("%s/file%03d", dir, f), Type: nar.TypeRegular, Size: int64(n)})
			w.Write(data[:n])
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

func BenchmarkSmallFiles(b *testing.B) {
	data := smallFilesNAR(b)
	ctx := context.Background()
	b.Run("Reader", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for range b.N {
			r := nar.NewReader(bytes.NewReader(data))
			for {
				_, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("Ingest-hash-only", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for range b.N {
			if _, _, _, err := nar.Ingest(ctx, bytes.NewReader(data), nartest.DiscardBlobs{}, memory.NewDirectoryService()); err != nil {
				b.Fatal(err)
			}
		}
	})
	bs, ds := memory.NewBlobService(), memory.NewDirectoryService()
	root, _, _, err := nar.Ingest(ctx, bytes.NewReader(data), bs, ds)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Render", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for range b.N {
			if err := nar.Render(ctx, io.Discard, root, bs, ds); err != nil {
				b.Fatal(err)
			}
		}
	})
}
