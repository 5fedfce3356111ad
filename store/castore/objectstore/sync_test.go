package objectstore

import (
	"testing"

	"github.com/castor-nix/castor/store/castore/castoretest"
)

// Sync flushes only when something was written since the last Sync.
func TestSyncSkipsWhenClean(t *testing.T) {
	for _, layout := range []Layout{LayoutPacks, LayoutFiles} {
		t.Run(layout.String(), func(t *testing.T) {
			s := openTest(t, WithLayout(layout))
			ctx := t.Context()
			sync := func() int64 {
				t.Helper()
				before := s.syncs.Load()
				if err := s.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				return s.syncs.Load() - before
			}
			castoretest.PutBlob(t, s, []byte("first"))
			if n := sync(); n != 1 {
				t.Fatalf("Sync after a new blob flushed %d times, want 1", n)
			}
			if n := sync(); n != 0 {
				t.Fatalf("Sync with nothing new flushed %d times", n)
			}
			castoretest.PutBlob(t, s, []byte("first")) // already stored: nothing written
			if n := sync(); n != 0 {
				t.Fatalf("Sync after rewriting stored content flushed %d times", n)
			}
			castoretest.PutBlob(t, s, []byte("second"))
			if n := sync(); n != 1 {
				t.Fatalf("Sync after a new blob flushed %d times, want 1", n)
			}
		})
	}
}
