package castore

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"

	"github.com/zeebo/blake3"
)

// DigestSize is the length of a BLAKE3-256 digest in bytes.
const DigestSize = 32

// Digest is a BLAKE3-256 digest: of a blob's whole contents, or of a
// Directory's canonical encoding.
type Digest [DigestSize]byte

// digestPrefix starts the text form of a Digest.
const digestPrefix = "blake3-"

// EmptyDigest is the digest of the empty blob, and so of the empty Directory
// (whose canonical encoding is empty).
var EmptyDigest = Sum(nil)

// Sum returns the BLAKE3-256 digest of b.
func Sum(b []byte) Digest {
	return Digest(blake3.Sum256(b))
}

// NewHasher returns a BLAKE3-256 hash.Hash whose Sum is a Digest's bytes.
func NewHasher() hash.Hash {
	return blake3.New()
}

// DigestOf returns the digest a hasher made by NewHasher has computed.
func DigestOf(h hash.Hash) Digest {
	var d Digest
	h.Sum(d[:0])
	return d
}

// String returns the text form, "blake3-" and standard base64 with padding,
// as Snix prints digests.
func (d Digest) String() string {
	return digestPrefix + base64.StdEncoding.EncodeToString(d[:])
}

// Hex returns the lower-case hex form (used in storage paths).
func (d Digest) Hex() string {
	return hex.EncodeToString(d[:])
}

// IsZero reports whether d is all zero bytes (never a real digest in
// practice; used for "unset").
func (d Digest) IsZero() bool {
	return d == Digest{}
}

// DigestFromBytes converts a 32-byte slice, as found in protobuf messages.
func DigestFromBytes(b []byte) (Digest, error) {
	var d Digest
	if len(b) != DigestSize {
		return d, fmt.Errorf("%w: digest has %d bytes, want %d", ErrInvalid, len(b), DigestSize)
	}
	copy(d[:], b)
	return d, nil
}

// ParseDigest parses the text form ("blake3-<base64>"). It also accepts 64
// hex digits, the form used in storage paths and logs.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if rest, ok := strings.CutPrefix(s, digestPrefix); ok {
		b, err := base64.StdEncoding.Strict().DecodeString(rest)
		if err != nil {
			return d, fmt.Errorf("%w: digest %q: %v", ErrInvalid, s, err)
		}
		return DigestFromBytes(b)
	}
	if len(s) == 2*DigestSize {
		b, err := hex.DecodeString(s)
		if err == nil {
			return DigestFromBytes(b)
		}
	}
	return d, fmt.Errorf("%w: digest %q: want blake3-<base64> or 64 hex digits", ErrInvalid, s)
}

// MarshalText implements encoding.TextMarshaler (JSON output uses the text form).
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Digest) UnmarshalText(b []byte) error {
	p, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}
