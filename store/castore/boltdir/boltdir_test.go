package boltdir

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/castor-nix/castor/store/boltdb"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/castoretest"
)

func open(t *testing.T, path string) *Service {
	db, err := boltdb.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	castoretest.RunDirectoryService(t, func(t *testing.T) castore.DirectoryService {
		return open(t, filepath.Join(t.TempDir(), "castor.db"))
	})
}

func TestPersistsAndDetectsDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "castor.db")
	db, err := boltdb.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := New(db)
	castoretest.PutClosure(t, s, castoretest.DirWithKeep, castoretest.DirComplicated)
	if _, err := boltdb.Open(path, false); err == nil {
		t.Fatal("second open of a locked database succeeded")
	}
	db.Close()

	s = open(t, path)
	ctx := context.Background()
	if _, err := s.GetDirectory(ctx, castoretest.DirComplicated.Digest()); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
	if err := s.Corrupt(castoretest.DirWithKeep.Digest(), castoretest.DirA.Marshal()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetDirectory(ctx, castoretest.DirWithKeep.Digest()); !errors.Is(err, castore.ErrCorrupt) {
		t.Fatalf("damaged directory: %v, want ErrCorrupt", err)
	}
	for _, err := range s.GetClosure(ctx, castoretest.DirComplicated.Digest()) {
		if err != nil {
			if !errors.Is(err, castore.ErrCorrupt) {
				t.Fatalf("closure over damage: %v, want ErrCorrupt", err)
			}
			return
		}
	}
	t.Fatal("closure over a damaged directory reported no error")
}
