package nixpath

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// StoreDir is the store directory castor serves and names paths in.
const StoreDir = "/nix/store"

// DigestSize is the length of a store path's digest in bytes; its
// nixbase32 form has DigestChars characters.
const (
	DigestSize  = 20
	DigestChars = 32
	// MaxNameLen is the longest name Nix accepts.
	MaxNameLen = 211
)

// ErrInvalid marks a malformed store path, name, hash or content address.
var ErrInvalid = errors.New("invalid")

// StorePath is /nix/store/<nixbase32 of Digest>-<Name>.
type StorePath struct {
	Digest [DigestSize]byte
	Name   string
}

// String returns the basename, <hash>-<name>.
func (p StorePath) String() string {
	return nixbase32.EncodeToString(p.Digest[:]) + "-" + p.Name
}

// Absolute returns the full path under StoreDir.
func (p StorePath) Absolute() string {
	return StoreDir + "/" + p.String()
}

// HashPart returns the nixbase32 digest.
func (p StorePath) HashPart() string {
	return nixbase32.EncodeToString(p.Digest[:])
}

// IsDerivation reports whether the path names a .drv file.
func (p StorePath) IsDerivation() bool {
	return strings.HasSuffix(p.Name, ".drv")
}

// Compare orders store paths as Nix does (by their printed form).
func (p StorePath) Compare(q StorePath) int {
	return strings.Compare(p.String(), q.String())
}

// MarshalText implements encoding.TextMarshaler with the absolute path.
func (p StorePath) MarshalText() ([]byte, error) { return []byte(p.Absolute()), nil }

// ValidateName checks a store path name as Nix does: 1 to 211 characters
// of [A-Za-z0-9+-._?=], not starting with a dot.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty store path name", ErrInvalid)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: store path name %q is longer than %d characters", ErrInvalid, name, MaxNameLen)
	}
	if name[0] == '.' {
		return fmt.Errorf("%w: store path name %q starts with a dot", ErrInvalid, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("+-._?=", c) >= 0) {
			return fmt.Errorf("%w: store path name %q contains the character %q", ErrInvalid, name, c)
		}
	}
	return nil
}

// ParseDigest decodes a 32-character nixbase32 store path hash.
func ParseDigest(s string) ([DigestSize]byte, error) {
	var d [DigestSize]byte
	if len(s) != DigestChars {
		return d, fmt.Errorf("%w: store path hash %q is not %d characters", ErrInvalid, s, DigestChars)
	}
	b, err := nixbase32.DecodeString(s)
	if err != nil {
		return d, fmt.Errorf("%w: store path hash %q: %v", ErrInvalid, s, err)
	}
	copy(d[:], b)
	return d, nil
}

// Parse parses a basename, <hash>-<name>.
func Parse(base string) (StorePath, error) {
	if len(base) < DigestChars+2 || base[DigestChars] != '-' {
		return StorePath{}, fmt.Errorf("%w: %q is not a store path basename (<32-char hash>-<name>)", ErrInvalid, base)
	}
	d, err := ParseDigest(base[:DigestChars])
	if err != nil {
		return StorePath{}, err
	}
	name := base[DigestChars+1:]
	if err := ValidateName(name); err != nil {
		return StorePath{}, err
	}
	return StorePath{Digest: d, Name: name}, nil
}

// ParseAbsolute parses /nix/store/<hash>-<name>, with nothing after it.
func ParseAbsolute(path string) (StorePath, error) {
	p, sub, err := ParseAbsoluteWithSub(path)
	if err != nil {
		return StorePath{}, err
	}
	if sub != "" {
		return StorePath{}, fmt.Errorf("%w: %q is below a store path, not a store path", ErrInvalid, path)
	}
	return p, nil
}

// ParseAbsoluteWithSub parses a path in the store, such as
// /nix/store/<hash>-<name>/bin/sh, into the store path and the rest
// ("bin/sh", without leading slash; empty for the store path itself). The
// rest is cleaned of empty and "." components; ".." is refused.
func ParseAbsoluteWithSub(path string) (StorePath, string, error) {
	rest, ok := strings.CutPrefix(path, StoreDir+"/")
	if !ok {
		return StorePath{}, "", fmt.Errorf("%w: %q is not in %s", ErrInvalid, path, StoreDir)
	}
	base, sub, _ := strings.Cut(rest, "/")
	p, err := Parse(base)
	if err != nil {
		return StorePath{}, "", err
	}
	var parts []string
	for _, c := range strings.Split(sub, "/") {
		switch c {
		case "", ".":
		case "..":
			return StorePath{}, "", fmt.Errorf("%w: %q: '..' is not allowed in a store path", ErrInvalid, path)
		default:
			parts = append(parts, c)
		}
	}
	return p, strings.Join(parts, "/"), nil
}
