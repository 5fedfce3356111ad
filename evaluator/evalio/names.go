package evalio

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/castor-nix/castor/store/nixpath"
)

// NameError is a store path name Nix 2.8 refuses, in its words, which
// quote the whole base name (hash included): "store path
// '<hash>-a b' contains illegal character ' '". Stores return it before
// they compute the path with store/nixpath (whose rules are castor's: a
// leading dot, which Nix 2.8 allows, is refused there).
type NameError struct {
	Base   string // <hash>-<name>
	Reason string // "contains illegal character ' '", …
}

func (e *NameError) Error() string { return "store path '" + e.Base + "' " + e.Reason }

// Unwrap makes the error match nixpath.ErrInvalid.
func (e *NameError) Unwrap() error { return nixpath.ErrInvalid }

// NameProblem is Nix 2.8's checkName: what is wrong with a store path
// name, or "".
func NameProblem(name string) string {
	if name == "" {
		return "has an empty name"
	}
	if len(name) > nixpath.MaxNameLen {
		return "has a name longer than 211 characters"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || strings.IndexByte("+-._?=", c) >= 0) {
			return "contains illegal character '" + string(c) + "'"
		}
	}
	return ""
}

// StoreBase is "<hash>-<name>" as Nix's makeStorePath computes it from a
// path type and a SHA-256, whatever the name (for messages about names
// the store refuses).
func StoreBase(typ string, h [sha256.Size]byte, name string) string {
	sum := sha256.Sum256([]byte(typ + ":sha256:" + hex.EncodeToString(h[:]) + ":" + nixpath.StoreDir + ":" + name))
	var d [nixpath.DigestSize]byte
	for i, b := range sum {
		d[i%nixpath.DigestSize] ^= b
	}
	return nixbase32.EncodeToString(d[:]) + "-" + name
}

func withRefs(typ string, refs []string) string {
	refs = slices.Clone(refs)
	slices.Sort(refs)
	for _, r := range slices.Compact(refs) {
		typ += ":" + r
	}
	return typ
}

// CheckTextName returns a *NameError for the name of a text path (toFile,
// .drv) that Nix refuses, nil otherwise.
func CheckTextName(name string, contentSHA256 [sha256.Size]byte, refs []string) error {
	if p := NameProblem(name); p != "" {
		return &NameError{Base: StoreBase(withRefs("text", refs), contentSHA256, name), Reason: p}
	}
	return nil
}

// CheckFixedName returns a *NameError for the name of a path added with
// a SHA-256 (NAR-hashed when recursive, flat otherwise) that Nix refuses,
// nil otherwise.
func CheckFixedName(recursive bool, sum [sha256.Size]byte, name string, refs []string) error {
	p := NameProblem(name)
	if p == "" {
		return nil
	}
	if recursive {
		return &NameError{Base: StoreBase(withRefs("source", refs), sum, name), Reason: p}
	}
	inner := sha256.Sum256([]byte("fixed:out:sha256:" + hex.EncodeToString(sum[:]) + ":"))
	return &NameError{Base: StoreBase("output:out", inner, name), Reason: p}
}
