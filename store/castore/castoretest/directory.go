package castoretest

import (
	"context"
	"errors"
	"testing"

	"github.com/castor-nix/castor/store/castore"
)

// PutClosure puts dirs (leaves first) through one putter and returns the
// root digest.
func PutClosure(t testing.TB, svc castore.DirectoryIngester, dirs ...*castore.Directory) castore.Digest {
	t.Helper()
	ctx := context.Background()
	p := svc.NewDirectoryPutter(ctx)
	for _, d := range dirs {
		if _, err := p.Put(ctx, d); err != nil {
			p.Abort()
			t.Fatal(err)
		}
	}
	root, err := p.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// putErr puts dirs and returns the first error, from Put or Close.
func putErr(svc castore.DirectoryIngester, dirs ...*castore.Directory) error {
	ctx := context.Background()
	p := svc.NewDirectoryPutter(ctx)
	for _, d := range dirs {
		if _, err := p.Put(ctx, d); err != nil {
			p.Abort()
			return err
		}
	}
	_, err := p.Close(ctx)
	return err
}

func assertAbsent(t *testing.T, svc castore.DirectoryGetter, dirs ...*castore.Directory) {
	t.Helper()
	for _, d := range dirs {
		if _, err := svc.GetDirectory(context.Background(), d.Digest()); !errors.Is(err, castore.ErrNotFound) {
			t.Errorf("directory %s visible after a failed put: %v", d.Digest(), err)
		}
	}
}

// RunDirectoryService runs the directory conformance suite. newService
// returns a fresh, empty service for each subtest.
func RunDirectoryService(t *testing.T, newService func(t *testing.T) castore.DirectoryService) {
	ctx := context.Background()

	t.Run("PutGet", func(t *testing.T) {
		svc := newService(t)
		root := PutClosure(t, svc, DirWithKeep, DirComplicated)
		if root != DirComplicated.Digest() {
			t.Fatalf("root %s, want %s", root, DirComplicated.Digest())
		}
		for _, want := range []*castore.Directory{DirWithKeep, DirComplicated} {
			got, err := svc.GetDirectory(ctx, want.Digest())
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest() != want.Digest() {
				t.Errorf("got directory %s, want %s", got.Digest(), want.Digest())
			}
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		svc := newService(t)
		if _, err := svc.GetDirectory(ctx, DirD.Digest()); !errors.Is(err, castore.ErrNotFound) {
			t.Errorf("GetDirectory of unknown digest: %v, want ErrNotFound", err)
		}
		n := 0
		for d, err := range svc.GetClosure(ctx, DirD.Digest()) {
			n++
			if d != nil || !errors.Is(err, castore.ErrNotFound) {
				t.Errorf("GetClosure of unknown root yielded %v, %v; want ErrNotFound", d, err)
			}
		}
		if n != 1 {
			t.Errorf("GetClosure of unknown root yielded %d items, want 1 error", n)
		}
	})

	t.Run("ClosureOrder", func(t *testing.T) {
		svc := newService(t)
		PutClosure(t, svc, DirA, DirB, DirD)
		var got []castore.Digest
		for d, err := range svc.GetClosure(ctx, DirD.Digest()) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, d.Digest())
		}
		// Root first, breadth-first, each once: D, then A and B, and A is
		// not repeated under B.
		want := []castore.Digest{DirD.Digest(), DirA.Digest(), DirB.Digest()}
		if len(got) != len(want) {
			t.Fatalf("closure has %d directories, want %d", len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("closure[%d] = %s, want %s", i, got[i], want[i])
			}
		}
		// Stopping early must be allowed.
		for range svc.GetClosure(ctx, DirD.Digest()) {
			break
		}
	})

	t.Run("ChildAlreadyStored", func(t *testing.T) {
		svc := newService(t)
		PutClosure(t, svc, DirA)
		if root := PutClosure(t, svc, DirB); root != DirB.Digest() {
			t.Fatalf("root %s, want %s", root, DirB.Digest())
		}
	})

	t.Run("MissingChild", func(t *testing.T) {
		svc := newService(t)
		err := putErr(svc, DirB, DirD) // DirA never sent
		if !errors.Is(err, castore.ErrInvalid) {
			t.Fatalf("closure with a missing child: %v, want ErrInvalid", err)
		}
		assertAbsent(t, svc, DirB, DirD)
	})

	t.Run("WrongOrder", func(t *testing.T) {
		svc := newService(t)
		err := putErr(svc, DirD, DirA, DirB) // root first: D references unsent children
		if !errors.Is(err, castore.ErrInvalid) {
			t.Fatalf("root-first closure: %v, want ErrInvalid", err)
		}
		assertAbsent(t, svc, DirD)
	})

	t.Run("Disconnected", func(t *testing.T) {
		svc := newService(t)
		err := putErr(svc, DirWithKeep, DirA, DirB)
		if !errors.Is(err, castore.ErrInvalid) {
			t.Fatalf("disconnected closure: %v, want ErrInvalid", err)
		}
		assertAbsent(t, svc, DirWithKeep, DirA, DirB)
	})

	t.Run("SizeTooSmall", func(t *testing.T) {
		svc := newService(t)
		bad := &castore.Directory{Directories: []castore.DirectoryEntry{{Name: "keep", Digest: DirWithKeep.Digest(), Size: 0}}}
		err := putErr(svc, DirWithKeep, bad)
		if !errors.Is(err, castore.ErrInvalid) {
			t.Fatalf("size below the child's entries: %v, want ErrInvalid", err)
		}
		assertAbsent(t, svc, DirWithKeep, bad)
		// The spec's own count (1) is accepted even though Snix writes 2.
		spec := &castore.Directory{Directories: []castore.DirectoryEntry{{Name: "keep", Digest: DirWithKeep.Digest(), Size: 1}}}
		PutClosure(t, svc, DirWithKeep, spec)
	})

	t.Run("InvalidDirectory", func(t *testing.T) {
		svc := newService(t)
		for _, bad := range []*castore.Directory{
			{Files: []castore.FileEntry{{Name: "b"}, {Name: "a"}}},
			{Files: []castore.FileEntry{{Name: "a"}}, Symlinks: []castore.SymlinkEntry{{Name: "a", Target: "x"}}},
			{Files: []castore.FileEntry{{Name: ".."}}},
			{Files: []castore.FileEntry{{Name: "a/b"}}},
			{Symlinks: []castore.SymlinkEntry{{Name: "a", Target: ""}}},
		} {
			if err := putErr(svc, bad); !errors.Is(err, castore.ErrInvalid) {
				t.Errorf("invalid directory %+v: %v, want ErrInvalid", bad, err)
			}
		}
	})

	t.Run("AbortAndEmpty", func(t *testing.T) {
		svc := newService(t)
		p := svc.NewDirectoryPutter(ctx)
		if _, err := p.Put(ctx, DirA); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Put(ctx, DirB); err != nil {
			t.Fatal(err)
		}
		p.Abort()
		assertAbsent(t, svc, DirA, DirB)
		if _, err := p.Close(ctx); err == nil {
			t.Error("close after abort succeeded")
		}
		if _, err := svc.NewDirectoryPutter(ctx).Close(ctx); !errors.Is(err, castore.ErrInvalid) {
			t.Errorf("empty closure: %v, want ErrInvalid", err)
		}
	})

	t.Run("RepeatedLeafStaysFirst", func(t *testing.T) {
		// Ingesting a tree sends the empty directory once per place it
		// appears; a putter that replays its closure must keep it leaves
		// first. Replay through a second putter of the same service.
		svc := newService(t)
		var replay []castore.DigestedDirectory
		p := castore.NewClosurePutter(svc, func(ctx context.Context, dirs []castore.DigestedDirectory) error {
			replay = dirs
			return nil
		})
		for _, d := range []*castore.Directory{DirA, DirB, DirA, DirD} {
			if _, err := p.Put(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
		dirs := make([]*castore.Directory, len(replay))
		for i, d := range replay {
			dirs[i] = d.Directory
		}
		if root := PutClosure(t, svc, dirs...); root != DirD.Digest() {
			t.Fatalf("replayed root %s, want %s", root, DirD.Digest())
		}
	})

	t.Run("Deduplicates", func(t *testing.T) {
		svc := newService(t)
		// A sent twice, once as a child of C; the closure is still valid.
		root := PutClosure(t, svc, DirA, DirA, DirC)
		if root != DirC.Digest() {
			t.Fatalf("root %s, want %s", root, DirC.Digest())
		}
		n := 0
		for _, err := range svc.GetClosure(ctx, root) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n != 2 {
			t.Errorf("closure of C has %d directories, want 2", n)
		}
	})
}
