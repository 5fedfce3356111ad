package castore

import (
	"fmt"

	"github.com/castor-nix/castor/store/castore/castorepb"
)

// NodeKind says what a Node is.
type NodeKind uint8

const (
	// KindDirectory: a Directory, by digest.
	KindDirectory NodeKind = iota + 1
	// KindFile: a blob, by digest.
	KindFile
	// KindSymlink: a symlink target.
	KindSymlink
)

func (k NodeKind) String() string {
	switch k {
	case KindDirectory:
		return "directory"
	case KindFile:
		return "file"
	case KindSymlink:
		return "symlink"
	}
	return fmt.Sprintf("NodeKind(%d)", uint8(k))
}

// Node is an unnamed entry of a tree: what a name in a Directory, or the
// root of a store path, points to.
type Node struct {
	Kind NodeKind
	// Digest of the Directory (KindDirectory) or of the contents (KindFile).
	Digest Digest
	// Size: for a file, the content length; for a directory, the size its
	// parent records for it (see Directory.Size).
	Size uint64
	// Executable marks a file executable.
	Executable bool
	// Target is a symlink's target.
	Target string
}

// NamedNode is a Node with its name in a Directory.
type NamedNode struct {
	Name string
	Node
}

// Validate checks the node's own fields (not any name): a symlink target is
// non-empty, NUL-free and at most MaxTargetLen bytes.
func (n Node) Validate() error {
	switch n.Kind {
	case KindDirectory, KindFile:
		return nil
	case KindSymlink:
		return validateTarget(n.Target)
	}
	return fmt.Errorf("%w: unknown node kind %d", ErrInvalid, n.Kind)
}

// ToProto converts the node to an Entry named name. An empty name is
// allowed for root ("anonymous") entries only.
func (n Node) ToProto(name string) *castorepb.Entry {
	switch n.Kind {
	case KindDirectory:
		return &castorepb.Entry{Entry: &castorepb.Entry_Directory{Directory: &castorepb.DirectoryEntry{
			Name: []byte(name), Digest: n.Digest[:], Size: n.Size,
		}}}
	case KindFile:
		return &castorepb.Entry{Entry: &castorepb.Entry_File{File: &castorepb.FileEntry{
			Name: []byte(name), Digest: n.Digest[:], Size: n.Size, Executable: n.Executable,
		}}}
	case KindSymlink:
		return &castorepb.Entry{Entry: &castorepb.Entry_Symlink{Symlink: &castorepb.SymlinkEntry{
			Name: []byte(name), Target: []byte(n.Target),
		}}}
	}
	panic(fmt.Sprintf("castore: ToProto of %v", n.Kind))
}

// NodeFromProto converts and validates a root Entry, returning its name
// (which may be empty: a root entry may be anonymous) and node. A non-empty
// name is checked like any directory entry name.
func NodeFromProto(e *castorepb.Entry) (string, Node, error) {
	var name []byte
	var n Node
	var err error
	switch x := e.GetEntry().(type) {
	case *castorepb.Entry_Directory:
		name = x.Directory.GetName()
		n.Kind, n.Size = KindDirectory, x.Directory.GetSize()
		n.Digest, err = DigestFromBytes(x.Directory.GetDigest())
	case *castorepb.Entry_File:
		name = x.File.GetName()
		n.Kind, n.Size, n.Executable = KindFile, x.File.GetSize(), x.File.GetExecutable()
		n.Digest, err = DigestFromBytes(x.File.GetDigest())
	case *castorepb.Entry_Symlink:
		name = x.Symlink.GetName()
		n.Kind, n.Target = KindSymlink, string(x.Symlink.GetTarget())
	default:
		return "", Node{}, fmt.Errorf("%w: entry has no node", ErrInvalid)
	}
	if err != nil {
		return "", Node{}, err
	}
	if len(name) > 0 {
		if err := ValidateName(string(name)); err != nil {
			return "", Node{}, err
		}
	}
	if err := n.Validate(); err != nil {
		return "", Node{}, err
	}
	return string(name), n, nil
}
