package nar_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"testing"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/nar"
)

func addSeeds(f *testing.F) {
	f.Add(goodNAR())
	f.Add(narOf(file("")))
	f.Add(narOf(symlink("/nix/store/x")))
	f.Add(narOf(dir()))
	for _, c := range badNARs() {
		f.Add(c.nar)
	}
}

// FuzzReader: whatever the Reader accepts, the Writer writes back byte for
// byte (the format has one canonical form, and the Reader takes only it);
// whatever it rejects is an ErrInvalid.
func FuzzReader(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r := nar.NewReader(bytes.NewReader(b))
		var out bytes.Buffer
		w := nar.NewWriter(&out)
		for {
			h, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				if !errors.Is(err, nar.ErrInvalid) {
					t.Fatalf("error not wrapping ErrInvalid: %v", err)
				}
				return
			}
			if err := w.WriteHeader(h); err != nil {
				t.Fatalf("Writer refuses a header the Reader gave: %v", err)
			}
			n, err := io.Copy(w, r)
			if err != nil {
				if !errors.Is(err, nar.ErrInvalid) {
					t.Fatalf("error not wrapping ErrInvalid: %v", err)
				}
				return
			}
			if n != h.Size {
				t.Fatalf("%s: read %d of %d bytes without error", h.Path, n, h.Size)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatalf("Writer: %v", err)
		}
		if !bytes.Equal(out.Bytes(), b) {
			t.Fatalf("accepted NAR does not round-trip")
		}
	})
}

// FuzzIngest: an accepted NAR renders back to itself with the reported
// size and hash; a rejected one leaves no directory visible.
func FuzzIngest(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		ctx := context.Background()
		bs := memory.NewBlobService()
		ds := &recordingDS{DirectoryService: memory.NewDirectoryService()}
		root, size, sum, err := nar.Ingest(ctx, bytes.NewReader(b), bs, ds)
		if err != nil {
			if !errors.Is(err, nar.ErrInvalid) {
				t.Fatalf("error not wrapping ErrInvalid: %v", err)
			}
			for _, d := range ds.put {
				if _, err := ds.GetDirectory(ctx, d); !errors.Is(err, castore.ErrNotFound) {
					t.Fatalf("directory %s visible after a failed ingest", d)
				}
			}
			return
		}
		if size != uint64(len(b)) || sum != sha256.Sum256(b) {
			t.Fatalf("Ingest reports size %d sha256 %x for %d bytes", size, sum, len(b))
		}
		var out bytes.Buffer
		if err := nar.Render(ctx, &out, root, bs, ds); err != nil {
			t.Fatalf("Render: %v", err)
		}
		if !bytes.Equal(out.Bytes(), b) {
			t.Fatalf("ingested NAR renders differently")
		}
	})
}
