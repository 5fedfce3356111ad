package builder

import (
	"slices"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/castor-nix/castor/store/nixpath"
)

// isBase32 marks the bytes of the nixbase32 alphabet.
var isBase32 = func() (t [256]bool) {
	for _, c := range []byte(nixbase32.Alphabet) {
		t[c] = true
	}
	return t
}()

// Scanner finds which of a set of store path hash parts occur in a stream,
// as Nix's reference scanner does: it is an io.Writer, fed the NAR of an
// output, so file contents, symlink targets and names are all searched,
// and a hash split across two writes is still found.
type Scanner struct {
	needles map[[nixpath.DigestChars]byte]bool
	found   map[[nixpath.DigestChars]byte]bool
	// tail holds the last DigestChars-1 bytes written, for matches that
	// straddle writes.
	tail []byte
}

// NewScanner returns a scanner for the given hash parts (each
// nixpath.DigestChars long; others are ignored).
func NewScanner(needles []string) *Scanner {
	s := &Scanner{needles: map[[nixpath.DigestChars]byte]bool{}, found: map[[nixpath.DigestChars]byte]bool{}}
	for _, n := range needles {
		if len(n) == nixpath.DigestChars {
			s.needles[[nixpath.DigestChars]byte([]byte(n))] = true
		}
	}
	return s
}

// Write implements io.Writer; it never fails.
func (s *Scanner) Write(p []byte) (int, error) {
	if len(s.needles) == 0 {
		return len(p), nil
	}
	const n = nixpath.DigestChars
	if len(s.tail) > 0 {
		// Windows starting in the tail and ending in p.
		joined := append(slices.Clone(s.tail), p[:min(len(p), n-1)]...)
		s.search(joined)
	}
	s.search(p)
	if len(p) >= n-1 {
		s.tail = append(s.tail[:0], p[len(p)-(n-1):]...)
	} else {
		s.tail = append(s.tail, p...)
		if len(s.tail) > n-1 {
			s.tail = s.tail[len(s.tail)-(n-1):]
		}
	}
	return len(p), nil
}

// search checks every window of DigestChars base32 bytes in b, skipping
// past a non-base32 byte at once (Nix's algorithm).
func (s *Scanner) search(b []byte) {
	const n = nixpath.DigestChars
	for i := 0; i+n <= len(b); {
		j := n - 1
		for ; j >= 0; j-- {
			if !isBase32[b[i+j]] {
				break
			}
		}
		if j >= 0 {
			i += j + 1
			continue
		}
		key := [n]byte(b[i : i+n])
		if s.needles[key] {
			s.found[key] = true
		}
		i++
	}
}

// Found returns the hash parts seen so far, sorted.
func (s *Scanner) Found() []string {
	out := make([]string, 0, len(s.found))
	for k := range s.found {
		out = append(out, string(k[:]))
	}
	slices.Sort(out)
	return out
}
