package boltinfo

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/castor-nix/castor/store/boltdb"
	"github.com/castor-nix/castor/store/pathinfo"
	"github.com/castor-nix/castor/store/pathinfo/pathinfotest"
)

func TestConformance(t *testing.T) {
	pathinfotest.Run(t, func(t *testing.T) pathinfo.Service {
		db, err := boltdb.Open(filepath.Join(t.TempDir(), "castor.db"), false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		s, err := New(db)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestListManyAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "castor.db")
	db, err := boltdb.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := New(db)
	ctx := context.Background()
	for i := range 1300 { // more than two List batches
		if _, err := s.Put(ctx, pathinfotest.Sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	db, err = boltdb.Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err = New(db)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for p, err := range s.List(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		seen[p.StorePath.String()] = true
	}
	if len(seen) != 1300 {
		t.Fatalf("listed %d distinct paths, want 1300", len(seen))
	}
	want := pathinfotest.Sample(777)
	got, err := s.Get(ctx, want.StorePath.Digest)
	if err != nil || !pathinfotest.Equal(got, want) {
		t.Fatalf("get after reopen: %v", err)
	}
}
