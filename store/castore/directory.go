package castore

import (
	"bytes"
	"fmt"
	"math/bits"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/castor-nix/castor/store/castore/castorepb"
)

// Limits of the data model.
const (
	// MaxNameLen is the longest name an entry may have, in bytes.
	MaxNameLen = 255
	// MaxTargetLen is the longest symlink target, in bytes.
	MaxTargetLen = 4095
)

// DirectoryEntry names a child Directory.
type DirectoryEntry struct {
	Name   string
	Digest Digest
	// Size is what this parent records for the child: see Directory.Size.
	Size uint64
}

// FileEntry names a blob.
type FileEntry struct {
	Name       string
	Digest     Digest
	Size       uint64
	Executable bool
}

// SymlinkEntry names a symlink target.
type SymlinkEntry struct {
	Name   string
	Target string
}

// Directory is one level of a tree. Each list is strictly sorted by name
// (bytewise) and a name appears in at most one list; Validate checks that.
// Names and targets are byte strings held in Go strings.
type Directory struct {
	Directories []DirectoryEntry
	Files       []FileEntry
	Symlinks    []SymlinkEntry
}

// NewDirectory builds a Directory from named nodes in any order. It sorts
// them and validates the result.
func NewDirectory(entries []NamedNode) (*Directory, error) {
	sorted := append([]NamedNode(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	d := &Directory{}
	for _, e := range sorted {
		d.add(e)
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

// add appends a named node to its list; the caller keeps the order.
func (d *Directory) add(e NamedNode) {
	switch e.Kind {
	case KindDirectory:
		d.Directories = append(d.Directories, DirectoryEntry{Name: e.Name, Digest: e.Digest, Size: e.Size})
	case KindFile:
		d.Files = append(d.Files, FileEntry{Name: e.Name, Digest: e.Digest, Size: e.Size, Executable: e.Executable})
	case KindSymlink:
		d.Symlinks = append(d.Symlinks, SymlinkEntry{Name: e.Name, Target: e.Target})
	default:
		// Validate reports unknown kinds; keep them visible to it.
		d.Symlinks = append(d.Symlinks, SymlinkEntry{Name: e.Name})
	}
}

// Len returns the number of entries.
func (d *Directory) Len() int {
	return len(d.Directories) + len(d.Files) + len(d.Symlinks)
}

// Entries returns every entry as a NamedNode, merged in name order (the
// order of a NAR listing).
func (d *Directory) Entries() []NamedNode {
	out := make([]NamedNode, 0, d.Len())
	i, j, k := 0, 0, 0
	for i < len(d.Directories) || j < len(d.Files) || k < len(d.Symlinks) {
		var next NamedNode
		best := ""
		have := false
		if i < len(d.Directories) {
			best, have = d.Directories[i].Name, true
		}
		if j < len(d.Files) && (!have || d.Files[j].Name < best) {
			best, have = d.Files[j].Name, true
		}
		if k < len(d.Symlinks) && (!have || d.Symlinks[k].Name < best) {
			best = d.Symlinks[k].Name
		}
		switch {
		case i < len(d.Directories) && d.Directories[i].Name == best:
			e := d.Directories[i]
			next = NamedNode{Name: e.Name, Node: Node{Kind: KindDirectory, Digest: e.Digest, Size: e.Size}}
			i++
		case j < len(d.Files) && d.Files[j].Name == best:
			e := d.Files[j]
			next = NamedNode{Name: e.Name, Node: Node{Kind: KindFile, Digest: e.Digest, Size: e.Size, Executable: e.Executable}}
			j++
		default:
			e := d.Symlinks[k]
			next = NamedNode{Name: e.Name, Node: Node{Kind: KindSymlink, Target: e.Target}}
			k++
		}
		out = append(out, next)
	}
	return out
}

// Lookup finds the entry called name.
func (d *Directory) Lookup(name string) (Node, bool) {
	if i := sort.Search(len(d.Directories), func(i int) bool { return d.Directories[i].Name >= name }); i < len(d.Directories) && d.Directories[i].Name == name {
		e := d.Directories[i]
		return Node{Kind: KindDirectory, Digest: e.Digest, Size: e.Size}, true
	}
	if i := sort.Search(len(d.Files), func(i int) bool { return d.Files[i].Name >= name }); i < len(d.Files) && d.Files[i].Name == name {
		e := d.Files[i]
		return Node{Kind: KindFile, Digest: e.Digest, Size: e.Size, Executable: e.Executable}, true
	}
	if i := sort.Search(len(d.Symlinks), func(i int) bool { return d.Symlinks[i].Name >= name }); i < len(d.Symlinks) && d.Symlinks[i].Name == name {
		return Node{Kind: KindSymlink, Target: d.Symlinks[i].Target}, true
	}
	return Node{}, false
}

// Size is the size a parent records for this directory in its
// DirectoryEntry. Snix's ingestion counts every entry twice (once as an
// entry, then again as 1 for a file or symlink, or 1+size for a directory):
//
//	size = 2·(number of entries) + Σ size of each child directory
//
// Because the size is hashed into the parent, matching Snix's digests
// needs exactly this formula. It reports false on overflow.
func (d *Directory) Size() (uint64, bool) {
	size := 2 * uint64(d.Len())
	for _, e := range d.Directories {
		var carry uint64
		size, carry = bits.Add64(size, e.Size, 0)
		if carry != 0 {
			return 0, false
		}
	}
	return size, true
}

// specSize is the size the proto's comment defines: entries plus the sizes
// of child directories. Any honest producer records at least this much, so
// validation of others' directories rejects only sizes below it.
func (d *Directory) specSize() (uint64, bool) {
	size := uint64(d.Len())
	for _, e := range d.Directories {
		var carry uint64
		size, carry = bits.Add64(size, e.Size, 0)
		if carry != 0 {
			return 0, false
		}
	}
	return size, true
}

// CheckChildSize reports whether a parent may record size for child: at
// least the spec's count of the child's entries.
func CheckChildSize(child *Directory, size uint64) error {
	min, ok := child.specSize()
	if !ok {
		return fmt.Errorf("%w: directory size overflows", ErrInvalid)
	}
	if size < min {
		return fmt.Errorf("%w: recorded size %d is below the %d entries of the directory", ErrInvalid, size, min)
	}
	return nil
}

// ValidateName checks an entry name: non-empty, not "." or "..", no "/" or
// NUL, at most MaxNameLen bytes.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrInvalid)
	case name == "." || name == "..":
		return fmt.Errorf("%w: name %q", ErrInvalid, name)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: name of %d bytes is longer than %d", ErrInvalid, len(name), MaxNameLen)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w: name %q contains '/' or NUL", ErrInvalid, name)
	}
	return nil
}

func validateTarget(t string) error {
	switch {
	case t == "":
		return fmt.Errorf("%w: empty symlink target", ErrInvalid)
	case len(t) > MaxTargetLen:
		return fmt.Errorf("%w: symlink target of %d bytes is longer than %d", ErrInvalid, len(t), MaxTargetLen)
	case strings.IndexByte(t, 0) >= 0:
		return fmt.Errorf("%w: symlink target %q contains NUL", ErrInvalid, t)
	}
	return nil
}

// Validate checks the rules of the data model: names valid, each list
// strictly sorted, names unique across lists, targets valid, and the
// directory's size computable without overflow.
func (d *Directory) Validate() error {
	seen := make(map[string]struct{}, d.Len())
	check := func(kind, name, prev string, i int) error {
		if err := ValidateName(name); err != nil {
			return fmt.Errorf("%s entry %d: %w", kind, i, err)
		}
		if i > 0 && name <= prev {
			return fmt.Errorf("%w: %s %q is not sorted after %q", ErrInvalid, kind, name, prev)
		}
		if _, dup := seen[name]; dup {
			return fmt.Errorf("%w: duplicate name %q", ErrInvalid, name)
		}
		seen[name] = struct{}{}
		return nil
	}
	for i, e := range d.Directories {
		prev := ""
		if i > 0 {
			prev = d.Directories[i-1].Name
		}
		if err := check("directory", e.Name, prev, i); err != nil {
			return err
		}
	}
	for i, e := range d.Files {
		prev := ""
		if i > 0 {
			prev = d.Files[i-1].Name
		}
		if err := check("file", e.Name, prev, i); err != nil {
			return err
		}
	}
	for i, e := range d.Symlinks {
		prev := ""
		if i > 0 {
			prev = d.Symlinks[i-1].Name
		}
		if err := check("symlink", e.Name, prev, i); err != nil {
			return err
		}
		if err := validateTarget(e.Target); err != nil {
			return fmt.Errorf("symlink %q: %w", e.Name, err)
		}
	}
	if _, ok := d.Size(); !ok {
		return fmt.Errorf("%w: directory size overflows", ErrInvalid)
	}
	return nil
}

// ToProto converts to the protobuf message.
func (d *Directory) ToProto() *castorepb.Directory {
	pb := &castorepb.Directory{}
	if len(d.Directories) > 0 {
		pb.Directories = make([]*castorepb.DirectoryEntry, len(d.Directories))
		for i, e := range d.Directories {
			pb.Directories[i] = &castorepb.DirectoryEntry{Name: []byte(e.Name), Digest: bytes.Clone(e.Digest[:]), Size: e.Size}
		}
	}
	if len(d.Files) > 0 {
		pb.Files = make([]*castorepb.FileEntry, len(d.Files))
		for i, e := range d.Files {
			pb.Files[i] = &castorepb.FileEntry{Name: []byte(e.Name), Digest: bytes.Clone(e.Digest[:]), Size: e.Size, Executable: e.Executable}
		}
	}
	if len(d.Symlinks) > 0 {
		pb.Symlinks = make([]*castorepb.SymlinkEntry, len(d.Symlinks))
		for i, e := range d.Symlinks {
			pb.Symlinks[i] = &castorepb.SymlinkEntry{Name: []byte(e.Name), Target: []byte(e.Target)}
		}
	}
	return pb
}

// DirectoryFromProto converts and validates a protobuf Directory.
func DirectoryFromProto(pb *castorepb.Directory) (*Directory, error) {
	d := &Directory{}
	if n := len(pb.GetDirectories()); n > 0 {
		d.Directories = make([]DirectoryEntry, n)
		for i, e := range pb.GetDirectories() {
			dg, err := DigestFromBytes(e.GetDigest())
			if err != nil {
				return nil, fmt.Errorf("directory entry %q: %w", e.GetName(), err)
			}
			d.Directories[i] = DirectoryEntry{Name: string(e.GetName()), Digest: dg, Size: e.GetSize()}
		}
	}
	if n := len(pb.GetFiles()); n > 0 {
		d.Files = make([]FileEntry, n)
		for i, e := range pb.GetFiles() {
			dg, err := DigestFromBytes(e.GetDigest())
			if err != nil {
				return nil, fmt.Errorf("file entry %q: %w", e.GetName(), err)
			}
			d.Files[i] = FileEntry{Name: string(e.GetName()), Digest: dg, Size: e.GetSize(), Executable: e.GetExecutable()}
		}
	}
	if n := len(pb.GetSymlinks()); n > 0 {
		d.Symlinks = make([]SymlinkEntry, n)
		for i, e := range pb.GetSymlinks() {
			d.Symlinks[i] = SymlinkEntry{Name: string(e.GetName()), Target: string(e.GetTarget())}
		}
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

var canonical = proto.MarshalOptions{Deterministic: true}

// Marshal returns the canonical encoding: fields in number order, default
// values omitted. The digest of a Directory is the BLAKE3 of these bytes.
func (d *Directory) Marshal() []byte {
	b, err := canonical.Marshal(d.ToProto())
	if err != nil {
		// Marshalling a well-formed message of bytes and ints cannot fail.
		panic(fmt.Sprintf("castore: marshal directory: %v", err))
	}
	return b
}

// Digest returns the directory's digest.
func (d *Directory) Digest() Digest {
	return Sum(d.Marshal())
}

// UnmarshalDirectory decodes and validates an encoded Directory.
func UnmarshalDirectory(b []byte) (*Directory, error) {
	var pb castorepb.Directory
	if err := proto.Unmarshal(b, &pb); err != nil {
		return nil, fmt.Errorf("%w: decode directory: %v", ErrInvalid, err)
	}
	return DirectoryFromProto(&pb)
}

// Node returns the Node a parent records for this directory.
func (d *Directory) Node() Node {
	size, _ := d.Size()
	return Node{Kind: KindDirectory, Digest: d.Digest(), Size: size}
}
