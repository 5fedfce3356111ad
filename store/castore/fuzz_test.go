package castore_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/castoretest"
)

// FuzzUnmarshalDirectory: whatever UnmarshalDirectory accepts validates,
// and decode -> encode -> decode is stable: the canonical encoding decodes
// to the same directory and encodes to the same bytes. Whatever it rejects
// is an ErrInvalid.
func FuzzUnmarshalDirectory(f *testing.F) {
	for _, d := range []*castore.Directory{
		castoretest.DirA, castoretest.DirWithKeep, castoretest.DirB, castoretest.DirC,
		castoretest.DirD, castoretest.DirComplicated, exec,
	} {
		f.Add(d.Marshal())
	}
	// Invalid ones: unsorted, a short digest, a bad name.
	f.Add((&castore.Directory{Symlinks: []castore.SymlinkEntry{{Name: "b", Target: "x"}, {Name: "a", Target: "y"}}}).Marshal())
	f.Add([]byte{0x0a, 0x05, 0x0a, 0x01, 'a', 0x12, 0x00})
	f.Add((&castore.Directory{Files: []castore.FileEntry{{Name: "..", Digest: castore.EmptyDigest}}}).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := castore.UnmarshalDirectory(b)
		if err != nil {
			if !errors.Is(err, castore.ErrInvalid) {
				t.Fatalf("error not wrapping ErrInvalid: %v", err)
			}
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("accepted directory does not validate: %v", err)
		}
		enc := d.Marshal()
		d2, err := castore.UnmarshalDirectory(enc)
		if err != nil {
			t.Fatalf("canonical encoding rejected: %v", err)
		}
		if !reflect.DeepEqual(d, d2) {
			t.Fatalf("decode(encode(d)) = %+v, want %+v", d2, d)
		}
		if enc2 := d2.Marshal(); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable")
		}
		if d.Digest() != castore.Sum(enc) {
			t.Fatalf("digest is not the BLAKE3 of the canonical encoding")
		}
	})
}
