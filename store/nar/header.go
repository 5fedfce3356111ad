package nar

import (
	"errors"
	"fmt"
	"strings"

	"github.com/castor-nix/castor/store/castore"
)

// ErrInvalid is wrapped by every error about malformed NAR data, and by
// Writer errors about headers or contents that would make one.
var ErrInvalid = errors.New("invalid NAR")

// magic opens every NAR.
const magic = "nix-archive-1"

// Limits enforced on input before anything is allocated.
const (
	// MaxNameLen is the longest entry name, as in the castore.
	MaxNameLen = castore.MaxNameLen
	// MaxTargetLen is the longest symlink target, as in the castore.
	MaxTargetLen = castore.MaxTargetLen
)

// Type is the kind of a NAR node.
type Type uint8

const (
	// TypeRegular is a regular file, executable or not.
	TypeRegular Type = iota + 1
	// TypeDirectory is a directory.
	TypeDirectory
	// TypeSymlink is a symbolic link.
	TypeSymlink
)

func (t Type) String() string {
	switch t {
	case TypeRegular:
		return "regular"
	case TypeDirectory:
		return "directory"
	case TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Header describes one node of a NAR.
type Header struct {
	// Path is the node's place in the tree: "/" for the root, "/a/b" for
	// entry b of directory a. Each component is a valid entry name.
	Path string
	Type Type
	// Size is a regular file's content length; zero for other types.
	Size int64
	// Executable marks a regular file executable.
	Executable bool
	// LinkTarget is a symlink's target.
	LinkTarget string
}

// parentPath returns the path of p's directory ("/" for a root entry) and
// p's last component. For the root itself it returns "", "".
func parentPath(p string) (dir, name string) {
	if p == "/" {
		return "", ""
	}
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/", p[i+1:]
	}
	return p[:i], p[i+1:]
}

// childPath joins a directory path and an entry name.
func childPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// checkName applies the castore's name rules, which are Nix's plus a
// length limit: non-empty, not "." or "..", no '/' or NUL, at most
// MaxNameLen bytes.
func checkName(name string) string {
	switch {
	case name == "":
		return "empty entry name"
	case name == "." || name == "..":
		return fmt.Sprintf("entry name %q", name)
	case len(name) > MaxNameLen:
		return fmt.Sprintf("entry name of %d bytes is longer than %d", len(name), MaxNameLen)
	case strings.IndexByte(name, '/') >= 0:
		return fmt.Sprintf("entry name %q contains '/'", name)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Sprintf("entry name %q contains NUL", name)
	}
	return ""
}

// checkTarget applies the castore's symlink target rules: non-empty, no
// NUL, at most MaxTargetLen bytes.
func checkTarget(t string) string {
	switch {
	case t == "":
		return "empty symlink target"
	case len(t) > MaxTargetLen:
		return fmt.Sprintf("symlink target of %d bytes is longer than %d", len(t), MaxTargetLen)
	case strings.IndexByte(t, 0) >= 0:
		return fmt.Sprintf("symlink target %q contains NUL", t)
	}
	return ""
}

// pad returns the number of zero bytes that follow n bytes of a string.
func pad(n uint64) int {
	return int(-n & 7)
}
