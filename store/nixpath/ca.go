package nixpath

import (
	"crypto/sha256"
	"fmt"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixhash"
)

// Method says what a content address hashes.
type Method uint8

const (
	// Flat hashes a single file's contents ("fixed:<algo>:…").
	Flat Method = iota + 1
	// Recursive hashes the NAR serialisation ("fixed:r:<algo>:…").
	Recursive
	// Text hashes a text file whose references are listed ("text:sha256:…").
	Text
)

// ContentAddress is what a content-addressed path's name is computed from.
type ContentAddress struct {
	Method Method
	Hash   *nixhash.Hash
}

// String renders the content address as Nix 2.8 writes it in narinfo
// files and the database: "text:sha256:<nixbase32>",
// "fixed:r:sha256:<nixbase32>", "fixed:sha1:<nixbase32>"...
func (c ContentAddress) String() string {
	h := c.Hash.Format(nixhash.NixBase32, true)
	switch c.Method {
	case Text:
		return "text:" + h
	case Recursive:
		return "fixed:r:" + h
	default:
		return "fixed:" + h
	}
}

// ParseContentAddress parses the form String writes.
func ParseContentAddress(s string) (ContentAddress, error) {
	var ca ContentAddress
	rest, ok := strings.CutPrefix(s, "text:")
	switch {
	case ok:
		ca.Method = Text
	default:
		rest, ok = strings.CutPrefix(s, "fixed:")
		if !ok {
			return ca, fmt.Errorf("%w: content address %q does not start with text: or fixed:", ErrInvalid, s)
		}
		ca.Method = Flat
		if r, isRec := strings.CutPrefix(rest, "r:"); isRec {
			ca.Method, rest = Recursive, r
		}
	}
	h, err := nixhash.ParseAny(rest, nil)
	if err != nil {
		return ca, fmt.Errorf("%w: content address %q: %v", ErrInvalid, s, err)
	}
	if ca.Method == Text && h.Algo() != nixhash.SHA256 {
		return ca, fmt.Errorf("%w: text content address %q must use sha256", ErrInvalid, s)
	}
	ca.Hash = &h.Hash
	return ca, nil
}

// StorePath computes the path this content address gives name, with refs.
func (c ContentAddress) StorePath(name string, refs []StorePath, selfRef bool) (StorePath, error) {
	if c.Method == Text {
		if selfRef {
			return StorePath{}, fmt.Errorf("%w: a text path cannot refer to itself", ErrInvalid)
		}
		var d [sha256.Size]byte
		copy(d[:], c.Hash.Digest())
		return MakeTextPath(name, d, refs)
	}
	return MakeFixedOutputPath(c.Method, c.Hash, name, refs, selfRef)
}

// ParseHash parses a hash in any form Nix accepts ("sha256:<nixbase32>",
// hex or base64 with an algo prefix, or SRI "sha256-<base64>"). If algo is
// non-empty the hash may omit its prefix and must use that algorithm.
func ParseHash(s, algo string) (*nixhash.Hash, error) {
	var opt *nixhash.Algorithm
	if algo != "" {
		a, err := nixhash.ParseAlgorithm(algo)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		opt = &a
	}
	h, err := nixhash.ParseAny(s, opt)
	if err != nil {
		return nil, fmt.Errorf("%w: hash %q: %v", ErrInvalid, s, err)
	}
	return &h.Hash, nil
}

// SHA256Hash wraps a SHA-256 digest as a nixhash.Hash.
func SHA256Hash(d [sha256.Size]byte) *nixhash.Hash {
	return nixhash.MustNewHash(nixhash.SHA256, d[:])
}

// FormatSHA256 renders a SHA-256 as Nix prints NAR hashes: "sha256:<nixbase32>".
func FormatSHA256(d [sha256.Size]byte) string {
	return SHA256Hash(d).Format(nixhash.NixBase32, true)
}
