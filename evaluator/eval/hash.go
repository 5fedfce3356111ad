package eval

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// nixHash is a hash as Nix's Hash holds it: an algorithm and a digest.
type nixHash struct {
	algo   string // md5, sha1, sha256, sha512
	digest []byte
}

// hashSizes are the digest sizes of the algorithms Nix knows.
var hashSizes = map[string]int{"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}

// hashError is a malformed hash, worded as Nix's BadHash errors.
type hashError struct{ msg string }

func (e *hashError) Error() string { return e.msg }

func hashErrorf(format string, args ...any) *hashError {
	return &hashError{msg: fmt.Sprintf(format, args...)}
}

// sri renders the hash as Nix's SRI form, "<algo>-<base64>".
func (h nixHash) sri() string {
	return h.algo + "-" + base64.StdEncoding.EncodeToString(h.digest)
}

// parseHashAny is Nix 2.8's Hash::parseAny: "<algo>:<hash>" or the SRI
// "<algo>-<base64>", or a bare hash when algo (from outputHashAlgo and
// the like) names the algorithm; the bare part may be hex, nixbase32 or
// base64, told apart by length. An algorithm name Nix does not know in the
// prefix is an error; algo itself may be empty or unknown (Nix's
// parseHashTypeOpt ignores it).
func parseHashAny(s, algo string) (nixHash, error) {
	rest := s
	isSRI := false
	var prefix string
	hasPrefix := false
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		prefix, rest, hasPrefix = rest[:i], rest[i+1:], true
	} else if i := strings.IndexByte(rest, '-'); i >= 0 {
		prefix, rest, hasPrefix, isSRI = rest[:i], rest[i+1:], true, true
	}
	if _, ok := hashSizes[algo]; !ok {
		algo = ""
	}
	parsed := ""
	if hasPrefix {
		if _, ok := hashSizes[prefix]; !ok {
			return nixHash{}, hashErrorf("unknown hash algorithm '%s'", prefix)
		}
		parsed = prefix
	}
	switch {
	case parsed == "" && algo == "":
		return nixHash{}, hashErrorf("hash '%s' does not include a type, nor is the type otherwise known from context", rest)
	case parsed != "" && algo != "" && parsed != algo:
		return nixHash{}, hashErrorf("hash '%s' should have type '%s'", s, algo)
	}
	if parsed != "" {
		algo = parsed
	}
	d, err := decodeHash(rest, algo, isSRI)
	if err != nil {
		return nixHash{}, err
	}
	return nixHash{algo: algo, digest: d}, nil
}

// decodeHash decodes the digest part of a hash as Nix's Hash constructor
// does.
func decodeHash(rest, algo string, isSRI bool) ([]byte, error) {
	size := hashSizes[algo]
	base16Len := size * 2
	base32Len := (size*8-1)/5 + 1
	base64Len := ((4 * size / 3) + 3) &^ 3
	switch {
	case !isSRI && len(rest) == base16Len:
		d, err := hex.DecodeString(rest)
		if err != nil {
			return nil, hashErrorf("invalid base-16 hash '%s'", rest)
		}
		return d, nil
	case !isSRI && len(rest) == base32Len:
		d, err := nixbase32.DecodeString(rest)
		if err != nil || len(d) != size {
			return nil, hashErrorf("invalid base-32 hash '%s'", rest)
		}
		return d, nil
	case isSRI || len(rest) == base64Len:
		d, bad := decodeBase64Nix(rest)
		if bad != 0 {
			return nil, hashErrorf("invalid character in Base64 string: '%c'", bad)
		}
		if len(d) != size {
			what := "base-64"
			if isSRI {
				what = "SRI"
			}
			return nil, hashErrorf("invalid %s hash '%s'", what, rest)
		}
		return d, nil
	}
	return nil, hashErrorf("hash '%s' has wrong length for hash type '%s'", rest, algo)
}

// decodeBase64Nix is Nix's lenient base64 decoder: it stops at the first
// '=', skips newlines and needs no padding. It returns the first byte
// outside the alphabet, if any.
func decodeBase64Nix(s string) ([]byte, byte) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var out []byte
	var d, bits uint
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '=' {
			break
		}
		if c == '\n' {
			continue
		}
		digit := strings.IndexByte(alphabet, c)
		if digit < 0 {
			return nil, c
		}
		bits += 6
		d = d<<6 | uint(digit)
		if bits >= 8 {
			out = append(out, byte(d>>(bits-8)))
			bits -= 8
		}
	}
	return out, 0
}

// newHashAllowEmpty is Nix's newHashAllowEmpty: an empty hash stands for
// all zeroes (with a warning) when the algorithm is known.
func (ev *Evaluator) newHashAllowEmpty(s, algo string) (nixHash, error) {
	if s == "" {
		if _, ok := hashSizes[algo]; !ok {
			return nixHash{}, hashErrorf("empty hash requires explicit hash type")
		}
		h := nixHash{algo: algo, digest: make([]byte, hashSizes[algo])}
		ev.traceOut.Write([]byte("warning: found empty hash, assuming '" + h.sri() + "'\n"))
		return h, nil
	}
	return parseHashAny(s, algo)
}
