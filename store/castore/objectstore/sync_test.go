package objectstore

import (
	"testing"

	"github.com/castor-nix/castor/store/castore/castoretest"
)

// Sync flushes only when something was written since the last Sync.
func TestSyncSkipsWhenClean(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	castoretest.PutBlob(t, s, []byte("first"))
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if s.synced.Load() != s.published.Load() || s.published.Load() == 0 {
		t.Fatalf("after Sync: synced %d, published %d", s.synced.Load(), s.published.Load())
	}
	before := s.synced.Load()
	castoretest.PutBlob(t, s, []byte("first")) // already stored: nothing written
	if s.published.Load() != before {
		t.Fatalf("rewriting stored content published %d files", s.published.Load()-before)
	}
	castoretest.PutBlob(t, s, []byte("second"))
	if s.published.Load() == s.synced.Load() {
		t.Fatal("a new blob did not make the store dirty")
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if s.synced.Load() != s.published.Load() {
		t.Fatal("Sync did not cover what was written")
	}
}
