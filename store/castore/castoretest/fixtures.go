package castoretest

import "github.com/castor-nix/castor/store/castore"

// Fixture directories, the trees Snix's castore tests use. Their digests
// are checked against ../../../shared/testdata/castore/vectors.json (copied
// into the castore package's testdata) by the castore package's tests.
var (
	// DirA is the empty directory.
	DirA = &castore.Directory{}
	// DirWithKeep holds an empty file .keep.
	DirWithKeep = &castore.Directory{Files: []castore.FileEntry{{Name: ".keep", Digest: castore.EmptyDigest}}}
	// DirB holds dir a = DirA.
	DirB = &castore.Directory{Directories: []castore.DirectoryEntry{{Name: "a", Digest: DirA.Digest(), Size: 0}}}
	// DirC holds dirs a and a' = DirA.
	DirC = &castore.Directory{Directories: []castore.DirectoryEntry{
		{Name: "a", Digest: DirA.Digest()}, {Name: "a'", Digest: DirA.Digest()},
	}}
	// DirD holds dir a = DirA and dir b = DirB.
	DirD = &castore.Directory{Directories: []castore.DirectoryEntry{
		{Name: "a", Digest: DirA.Digest()}, {Name: "b", Digest: DirB.Digest(), Size: 2},
	}}
	// DirComplicated holds dir keep = DirWithKeep, file .keep (empty) and
	// symlink aa -> /nix/store/somewhereelse.
	DirComplicated = &castore.Directory{
		Directories: []castore.DirectoryEntry{{Name: "keep", Digest: DirWithKeep.Digest(), Size: 2}},
		Files:       []castore.FileEntry{{Name: ".keep", Digest: castore.EmptyDigest}},
		Symlinks:    []castore.SymlinkEntry{{Name: "aa", Target: "/nix/store/somewhereelse"}},
	}
)
