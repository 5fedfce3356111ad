package eval

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"testing"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// TestParseHashAny checks the forms Nix 2.8 accepts for an outputHash and
// its error messages (the differential corpus in drvtest checks the same
// against Nix itself).
func TestParseHashAny(t *testing.T) {
	hello := "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	for _, c := range []struct{ s, algo, want, err string }{
		{hello, "sha256", hello, ""},
		{"sha256:" + hello, "", hello, ""},
		{"sha256:094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic", "", hello, ""},
		{"094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic", "sha256", hello, ""},
		{"LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", "sha256", hello, ""},
		{"sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", "", hello, ""},
		{"sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ", "", hello, ""},
		{"sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", "whatever", hello, ""},
		{hello, "", "", "hash '" + hello + "' does not include a type, nor is the type otherwise known from context"},
		{"sha1:" + hello, "sha256", "", "hash 'sha1:" + hello + "' should have type 'sha256'"},
		{"foo-abc", "", "", "unknown hash algorithm 'foo'"},
		{"abc", "sha256", "", "hash 'abc' has wrong length for hash type 'sha256'"},
		{"zz" + hello[2:], "sha256", "", "invalid base-16 hash 'zz" + hello[2:] + "'"},
		{"e94qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic", "sha256", "", "invalid base-32 hash 'e94qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic'"},
		{"sha256-LPJN", "", "", "invalid SRI hash 'LPJN'"},
		{"sha256-LP!N", "", "", "invalid character in Base64 string: '!'"},
	} {
		h, err := parseHashAny(c.s, c.algo)
		switch {
		case c.err != "" && (err == nil || err.Error() != c.err):
			t.Errorf("parseHashAny(%q, %q) = %v, want error %q", c.s, c.algo, err, c.err)
		case c.err == "" && (err != nil || hex.EncodeToString(h.digest) != c.want):
			t.Errorf("parseHashAny(%q, %q) = %x, %v; want %s", c.s, c.algo, h.digest, err, c.want)
		}
	}
}

// FuzzParseHash: parseHashAny never panics, and what it accepts is a
// digest of the algorithm's size that every other form of the same hash
// parses back to.
func FuzzParseHash(f *testing.F) {
	for _, s := range []string{
		"sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", "sha1:aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d",
		"md5:5d41402abc4b2a76b9719d911017c592", "094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic", "", ":", "-", "sha512-",
	} {
		f.Add(s, "sha256")
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, s, algo string) {
		h, err := parseHashAny(s, algo)
		if err != nil {
			if _, ok := err.(*hashError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if len(h.digest) != hashSizes[h.algo] {
			t.Fatalf("%q: %s digest of %d bytes", s, h.algo, len(h.digest))
		}
		for _, form := range []string{
			h.algo + ":" + hex.EncodeToString(h.digest),
			h.algo + ":" + nixbase32.EncodeToString(h.digest),
			h.algo + "-" + base64.StdEncoding.EncodeToString(h.digest),
		} {
			g, err := parseHashAny(form, "")
			if err != nil || g.algo != h.algo || !bytes.Equal(g.digest, h.digest) {
				t.Fatalf("%q parsed as %s %x, but %q gives %s %x (%v)", s, h.algo, h.digest, form, g.algo, g.digest, err)
			}
		}
	})
}
