package evalio

import (
	"context"
	"errors"
)

// FileType is the type of a directory entry, named as builtins.readDir
// names them.
type FileType uint8

const (
	TypeUnknown FileType = iota
	TypeRegular
	TypeDirectory
	TypeSymlink
)

func (t FileType) String() string {
	switch t {
	case TypeRegular:
		return "regular"
	case TypeDirectory:
		return "directory"
	case TypeSymlink:
		return "symlink"
	}
	return "unknown"
}

// DirEntry is one entry of a directory listing.
type DirEntry struct {
	Name string
	Type FileType
}

// FileInfo is what Lstat reports.
type FileInfo struct {
	Type       FileType
	Executable bool
	Size       int64
}

// Filter decides whether an entry below the root of an added path is
// included. path is absolute (the source path of the entry). It may panic
// with an evaluation error, which the Store must let through.
type Filter func(path string, t FileType) bool

// AddPathRequest asks to add a file system tree to the store.
type AddPathRequest struct {
	// Path is the absolute source path.
	Path string
	// Name is the store path name (usually the source's base name).
	Name string
	// Recursive selects NAR (recursive) hashing; otherwise the path must
	// be a regular file and is hashed flat.
	Recursive bool
	// Filter, if non-nil, selects the entries to include.
	Filter Filter
	// ExpectedSHA256, if non-nil, is the SHA-256 the contents must have
	// (of the NAR when Recursive, of the file otherwise); a mismatch is
	// an error wrapping ErrHashMismatch and adds nothing.
	ExpectedSHA256 []byte
	// KeepReferences: when Path is inside a valid store path, the copy
	// keeps that path's references (and its store path accounts for
	// them), as Nix's builtins.path and filterSource do when they write
	// to the store. Stores that only compute paths ignore it, as Nix's
	// read-only mode does.
	KeepReferences bool
}

// Errors a Store returns, wrapped with details.
var (
	// ErrNotExist: the path does not exist (also matches fs.ErrNotExist
	// when the Store wraps an *fs.PathError).
	ErrNotExist = errors.New("path does not exist")
	// ErrUnsupported: the Store cannot do this (for Host: building).
	ErrUnsupported = errors.New("not supported by this store")
	// ErrHashMismatch: the contents do not have the expected hash.
	ErrHashMismatch = errors.New("hash mismatch")
	// ErrNotValid: a store path the evaluator needs is not in the store
	// (or, for Host, was not computed in this evaluation).
	ErrNotValid = errors.New("not a valid store path")
)

// NotValidError reports a store path that is not valid, in Nix's words. It
// matches ErrNotValid.
type NotValidError struct{ Path string }

func (e *NotValidError) Error() string { return "path '" + e.Path + "' is not valid" }

// Is makes errors.Is(err, ErrNotValid) true.
func (e *NotValidError) Is(target error) bool { return target == ErrNotValid }

// DerivedPath is what Realise makes valid: a store path, or one output of
// a derivation.
type DerivedPath struct {
	// Path is an absolute store path; a .drv path when Output is set.
	Path string
	// Output, if set, names the output of the derivation at Path to
	// build (the context element "!Output!Path").
	Output string
}

func (p DerivedPath) String() string {
	if p.Output == "" {
		return p.Path
	}
	return p.Path + "!" + p.Output
}

// Store is everything the evaluator needs from files and the Nix store.
//
// All paths are absolute. Methods that can block take a context and give
// up with its error when it is canceled. Errors for missing paths wrap
// fs.ErrNotExist. Implementations must be safe for use by one evaluator at
// a time (the evaluator is single-threaded).
type Store interface {
	// StoreDir is the store directory, "/nix/store".
	StoreDir() string

	// ReadFile returns the contents of the file at path, following
	// symlinks.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// ReadDir lists the directory at path (following symlinks to it),
	// sorted by name; entry types are those of the entries themselves.
	ReadDir(ctx context.Context, path string) ([]DirEntry, error)
	// Lstat describes path without following a final symlink.
	Lstat(ctx context.Context, path string) (FileInfo, error)
	// ReadLink returns the target of the symlink at path.
	ReadLink(ctx context.Context, path string) (string, error)

	// AddPath adds a tree to the store (or computes where it would go)
	// and returns the absolute store path.
	AddPath(ctx context.Context, req AddPathRequest) (string, error)
	// AddText adds a text file with the given references (absolute store
	// paths) and returns its absolute store path, as builtins.toFile.
	AddText(ctx context.Context, name, text string, refs []string) (string, error)
	// References returns the references of a valid store path (absolute
	// store paths, sorted): what a derivation's "=" context pulls in. A
	// path that is not valid is an error wrapping ErrNotValid.
	References(ctx context.Context, storePath string) ([]string, error)
	// Realise makes the given paths valid for import-from-derivation:
	// store paths must already be valid; derivation outputs are built
	// when they are not. Paths already valid are left alone. An error
	// says which path could not be made valid (wrapping ErrNotValid for a
	// store path that is missing, ErrUnsupported when the store cannot
	// build).
	Realise(ctx context.Context, paths []DerivedPath) error
}
