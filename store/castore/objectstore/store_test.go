package objectstore

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"testing"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/castoretest"
)

// openTest opens a store in a fresh temporary directory, closed at the
// end of the test.
func openTest(t testing.TB, opts ...Option) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), append([]Option{WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// damageChunk flips one byte in the middle of chunk d (see rewriteChunk).
func damageChunk(t testing.TB, s *Store, d castore.Digest) {
	t.Helper()
	rewriteChunk(t, s, d, func(b []byte) []byte {
		b[len(b)/2] ^= 0x40
		return b
	})
}

// rewriteChunk replaces the stored bytes of chunk d (a chunk file or a
// pack record) by what edit makes of them. Files may change length (nil
// removes the file); records are edited in place, so edit must keep the
// length.
func rewriteChunk(t testing.TB, s *Store, d castore.Digest, edit func([]byte) []byte) {
	t.Helper()
	if loc, ok := s.packs.lookup(d); ok && loc.pack != nil {
		s.packs.fdMu.Lock()
		if loc.pack.inMem {
			// A pack still in memory: damage its bytes there.
			start := loc.off - int64(len(packMagic))
			rec := loc.pack.mem[start : start+int64(loc.frameLen)]
			b := edit(bytes.Clone(rec))
			if len(b) != len(rec) {
				t.Fatalf("edit of a pack record changed its length")
			}
			copy(rec, b)
			s.packs.fdMu.Unlock()
			return
		}
		s.packs.fdMu.Unlock()
		f := openPackRW(t, s, loc.pack)
		defer f.Close()
		b := make([]byte, loc.frameLen)
		if _, err := f.ReadAt(b, loc.off); err != nil {
			t.Fatal(err)
		}
		b = edit(b)
		if len(b) != int(loc.frameLen) {
			t.Fatalf("edit of a pack record changed its length")
		}
		if _, err := f.WriteAt(b, loc.off); err != nil {
			t.Fatal(err)
		}
		return
	}
	path := s.chunkPath(d)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = edit(b)
	os.Remove(path)
	if b != nil {
		if err := os.WriteFile(path, b, 0o444); err != nil {
			t.Fatal(err)
		}
	}
}

// openPackRW opens pack p for writing, open (in tmp/) or sealed.
func openPackRW(t testing.TB, s *Store, p *packFile) *os.File {
	t.Helper()
	s.packs.fdMu.Lock()
	path := p.path
	s.packs.fdMu.Unlock()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// middleChunk returns the digest of a chunk in the middle of blob d (d
// itself for a one-chunk blob).
func middleChunk(t testing.TB, s *Store, d castore.Digest) castore.Digest {
	t.Helper()
	st, err := s.StatBlob(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Chunks) == 0 {
		return d
	}
	return st.Chunks[len(st.Chunks)/2].Digest
}

func TestBlobService(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []Option
	}{
		{"auto", nil},
		{"files", []Option{WithLayout(LayoutFiles)}},
		{"fastest", []Option{WithCompression(CompressFastest)}},
		{"none", []Option{WithCompression(CompressNone)}},
		{"nocache", []Option{WithCacheSize(0)}},
		{"synccommit", []Option{WithSync(SyncCommit), WithWorkers(1)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var s *Store
			castoretest.RunBlobService(t, func(t *testing.T) castore.BlobService {
				s = openTest(t, c.opts...)
				return s
			}, castoretest.BlobOptions{
				Corrupt: func(t *testing.T, d castore.Digest) {
					damageChunk(t, s, middleChunk(t, s, d))
				},
			})
		})
	}
}

// testLogger logs to the test's log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
