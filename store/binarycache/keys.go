package binarycache

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/castor-nix/castor/store/pathinfo"
)

// ErrUntrusted: a narinfo carries no valid signature by a trusted key.
var ErrUntrusted = errors.New("not signed by a trusted key")

// PublicKey is a named ed25519 public key, written NAME:BASE64 (what
// `nix-store --generate-binary-cache-key` puts in the public key file and
// what trusted-public-keys lists).
type PublicKey struct {
	Name string
	Key  ed25519.PublicKey
}

// SecretKey is a named ed25519 private key, written NAME:BASE64 of the 64
// bytes seed+public key, as Nix (libsodium) writes it.
type SecretKey struct {
	Name string
	Key  ed25519.PrivateKey
}

func splitKey(s string, size int, what string) (string, []byte, error) {
	name, b64, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || name == "" {
		return "", nil, fmt.Errorf("%s %q: want NAME:BASE64", what, s)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", nil, fmt.Errorf("%s %q: %v", what, name, err)
	}
	if len(raw) != size {
		return "", nil, fmt.Errorf("%s %q: %d bytes, want %d", what, name, len(raw), size)
	}
	return name, raw, nil
}

// ParsePublicKey parses NAME:BASE64.
func ParsePublicKey(s string) (PublicKey, error) {
	name, raw, err := splitKey(s, ed25519.PublicKeySize, "public key")
	return PublicKey{Name: name, Key: raw}, err
}

// ParseSecretKey parses NAME:BASE64.
func ParseSecretKey(s string) (SecretKey, error) {
	name, raw, err := splitKey(s, ed25519.PrivateKeySize, "secret key")
	return SecretKey{Name: name, Key: raw}, err
}

// ParseSignature parses NAME:BASE64 of a 64-byte signature.
func ParseSignature(s string) (pathinfo.Signature, error) {
	name, raw, err := splitKey(s, ed25519.SignatureSize, "signature")
	return pathinfo.Signature{Name: name, Data: raw}, err
}

// Sign signs a fingerprint.
func (k SecretKey) Sign(fingerprint string) pathinfo.Signature {
	return pathinfo.Signature{Name: k.Name, Data: ed25519.Sign(k.Key, []byte(fingerprint))}
}

// Public returns the matching public key.
func (k SecretKey) Public() PublicKey {
	return PublicKey{Name: k.Name, Key: k.Key.Public().(ed25519.PublicKey)}
}

// String renders NAME:BASE64.
func (k PublicKey) String() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// VerifySignatures reports nil if at least one signature over fingerprint
// is valid for a key of the same name in keys; otherwise an error wrapping
// ErrUntrusted that says what was found.
func VerifySignatures(keys []PublicKey, fingerprint string, sigs []pathinfo.Signature) error {
	if len(sigs) == 0 {
		return fmt.Errorf("%w: the narinfo has no signature", ErrUntrusted)
	}
	var names []string
	var bad string
	for _, s := range sigs {
		known := false
		for _, k := range keys {
			if k.Name == s.Name {
				known = true
				if ed25519.Verify(k.Key, []byte(fingerprint), s.Data) {
					return nil
				}
			}
		}
		if known {
			bad = s.Name
		}
		names = append(names, s.Name)
	}
	if bad != "" {
		return fmt.Errorf("%w: the signature by %s does not match (wrong key, or the narinfo was altered)", ErrUntrusted, bad)
	}
	return fmt.Errorf("%w: signed by %s, none of which is in trusted-public-keys", ErrUntrusted, strings.Join(names, ", "))
}

func sortStrings(s []string) { slices.Sort(s) }
