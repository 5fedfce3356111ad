package nixpath

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/nix-community/go-nix/pkg/nixhash"
)

// MakeStorePath computes a store path the way Nix's makeStorePath does: the
// SHA-256 of "<typ>:sha256:<hex of h>:/nix/store:<name>", folded by XOR to
// 20 bytes.
func MakeStorePath(typ string, h [sha256.Size]byte, name string) (StorePath, error) {
	if err := ValidateName(name); err != nil {
		return StorePath{}, err
	}
	s := typ + ":sha256:" + hex.EncodeToString(h[:]) + ":" + StoreDir + ":" + name
	sum := sha256.Sum256([]byte(s))
	p := StorePath{Name: name}
	for i, b := range sum {
		p.Digest[i%DigestSize] ^= b
	}
	return p, nil
}

// makeType appends the sorted references (and "self") to a path type, as
// Nix's makeType does.
func makeType(typ string, refs []StorePath, selfRef bool) string {
	abs := make([]string, len(refs))
	for i, r := range refs {
		abs[i] = r.Absolute()
	}
	slices.Sort(abs)
	abs = slices.Compact(abs)
	for _, a := range abs {
		typ += ":" + a
	}
	if selfRef {
		typ += ":self"
	}
	return typ
}

// MakeSourcePath is the path of a tree added with `nix-store --add` (or a
// recursive SHA-256 fixed output): type "source" over the NAR's SHA-256.
func MakeSourcePath(narSHA256 [sha256.Size]byte, name string, refs []StorePath, selfRef bool) (StorePath, error) {
	return MakeStorePath(makeType("source", refs, selfRef), narSHA256, name)
}

// MakeTextPath is the path of a text file with references, such as a .drv
// or builtins.toFile output: type "text:<refs>" over the contents' SHA-256.
func MakeTextPath(name string, contentSHA256 [sha256.Size]byte, refs []StorePath) (StorePath, error) {
	return MakeStorePath(makeType("text", refs, false), contentSHA256, name)
}

// MakeOutputPath is the path of an input-addressed derivation output: type
// "output:<id>" over the derivation's hash modulo, named <drv name> or
// <drv name>-<id> for outputs other than "out".
func MakeOutputPath(id string, drvHash [sha256.Size]byte, drvName string) (StorePath, error) {
	name := drvName
	if id != "out" {
		name += "-" + id
	}
	return MakeStorePath("output:"+id, drvHash, name)
}

// MakeFixedOutputPath is the path of content with a known hash, as Nix's
// makeFixedOutputPath computes it: a recursive SHA-256 is a "source" path
// (which may have references); anything else hashes
// "fixed:out:[r:]<algo>:<hex>:" and may not have references.
func MakeFixedOutputPath(method Method, h *nixhash.Hash, name string, refs []StorePath, selfRef bool) (StorePath, error) {
	if method == Recursive && h.Algo() == nixhash.SHA256 {
		var d [sha256.Size]byte
		copy(d[:], h.Digest())
		return MakeSourcePath(d, name, refs, selfRef)
	}
	if len(refs) > 0 || selfRef {
		return StorePath{}, fmt.Errorf("%w: a fixed-output path other than recursive sha256 cannot have references", ErrInvalid)
	}
	r := ""
	if method == Recursive {
		r = "r:"
	}
	inner := sha256.Sum256([]byte("fixed:out:" + r + h.Algo().String() + ":" + hex.EncodeToString(h.Digest()) + ":"))
	return MakeStorePath("output:out", inner, name)
}
