package castore_test

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/castoretest"
)

// vectors.json was computed from WIRE.md's rules by a program independent
// of this package (see testdata/README.md).
type vectors struct {
	Blobs       map[string]string `json:"blobs"`
	Directories []struct {
		Name        string `json:"name"`
		EncodingHex string `json:"encoding_hex"`
		DigestHex   string `json:"digest_hex"`
		Digest      string `json:"digest"`
		SizeAsChild uint64 `json:"size_as_child_snix"`
	} `json:"directories"`
}

func loadVectors(t *testing.T) vectors {
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// exec is the EXEC fixture: executable file run (Hello World!), file data (00 01).
var exec = &castore.Directory{Files: []castore.FileEntry{
	{Name: "data", Digest: castore.Sum([]byte{0, 1}), Size: 2},
	{Name: "run", Digest: castore.Sum([]byte("Hello World!")), Size: 12, Executable: true},
}}

func TestDirectoryVectors(t *testing.T) {
	v := loadVectors(t)
	fixtures := map[string]*castore.Directory{
		"DIRECTORY_WITH_KEEP":   castoretest.DirWithKeep,
		"DIRECTORY_COMPLICATED": castoretest.DirComplicated,
		"DIRECTORY_A":           castoretest.DirA,
		"DIRECTORY_B":           castoretest.DirB,
		"DIRECTORY_C":           castoretest.DirC,
		"DIRECTORY_D":           castoretest.DirD,
		"EXEC":                  exec,
	}
	if len(v.Directories) != len(fixtures) {
		t.Fatalf("vectors has %d directories, test knows %d", len(v.Directories), len(fixtures))
	}
	for _, want := range v.Directories {
		key, _, _ := strings.Cut(want.Name, ":")
		d, ok := fixtures[key]
		if !ok {
			t.Fatalf("no fixture for %q", key)
		}
		if err := d.Validate(); err != nil {
			t.Errorf("%s: %v", key, err)
		}
		if got := hex.EncodeToString(d.Marshal()); got != want.EncodingHex {
			t.Errorf("%s: encoding %s, want %s", key, got, want.EncodingHex)
		}
		if got := d.Digest().Hex(); got != want.DigestHex {
			t.Errorf("%s: digest %s, want %s", key, got, want.DigestHex)
		}
		if got := d.Digest().String(); got != want.Digest {
			t.Errorf("%s: text digest %s, want %s", key, got, want.Digest)
		}
		if size, _ := d.Size(); size != want.SizeAsChild {
			t.Errorf("%s: size %d, want %d", key, size, want.SizeAsChild)
		}
		enc, _ := hex.DecodeString(want.EncodingHex)
		back, err := castore.UnmarshalDirectory(enc)
		if err != nil {
			t.Fatalf("%s: decode: %v", key, err)
		}
		if back.Digest() != d.Digest() {
			t.Errorf("%s: decode/encode changed the digest", key)
		}
		parsed, err := castore.ParseDigest(want.Digest)
		if err != nil || parsed != d.Digest() {
			t.Errorf("%s: ParseDigest(%s) = %s, %v", key, want.Digest, parsed, err)
		}
	}
	for _, hexd := range v.Blobs {
		if _, err := castore.ParseDigest(hexd); err != nil {
			t.Error(err)
		}
	}
}

func TestEmptyDigest(t *testing.T) {
	if castore.EmptyDigest != castoretest.DirA.Digest() {
		t.Fatal("empty directory and empty blob digests differ")
	}
	if got := castore.EmptyDigest.Hex(); got != "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262" {
		t.Fatalf("empty digest %s", got)
	}
}

func TestParseDigestRejects(t *testing.T) {
	for _, s := range []string{
		"", "blake3-", "blake3-AAAA", "sha256-rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI=",
		"blake3-rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI", // no padding
		"zz1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
	} {
		if _, err := castore.ParseDigest(s); err == nil {
			t.Errorf("ParseDigest(%q) succeeded", s)
		}
	}
}

func TestValidate(t *testing.T) {
	long := strings.Repeat("x", 256)
	cases := map[string]*castore.Directory{
		"unsorted":        {Files: []castore.FileEntry{{Name: "b"}, {Name: "a"}}},
		"duplicate":       {Files: []castore.FileEntry{{Name: "a"}, {Name: "a"}}},
		"cross-duplicate": {Directories: []castore.DirectoryEntry{{Name: "a"}}, Symlinks: []castore.SymlinkEntry{{Name: "a", Target: "t"}}},
		"empty name":      {Files: []castore.FileEntry{{Name: ""}}},
		"dot":             {Files: []castore.FileEntry{{Name: "."}}},
		"dotdot":          {Directories: []castore.DirectoryEntry{{Name: ".."}}},
		"slash":           {Files: []castore.FileEntry{{Name: "a/b"}}},
		"nul":             {Files: []castore.FileEntry{{Name: "a\x00b"}}},
		"long name":       {Files: []castore.FileEntry{{Name: long}}},
		"empty target":    {Symlinks: []castore.SymlinkEntry{{Name: "l"}}},
		"nul target":      {Symlinks: []castore.SymlinkEntry{{Name: "l", Target: "a\x00"}}},
		"long target":     {Symlinks: []castore.SymlinkEntry{{Name: "l", Target: strings.Repeat("t", 4096)}}},
		"size overflow": {Directories: []castore.DirectoryEntry{
			{Name: "a", Size: 1 << 63}, {Name: "b", Size: 1 << 63},
		}},
	}
	for name, d := range cases {
		if err := d.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := castore.UnmarshalDirectory(d.Marshal()); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	ok := &castore.Directory{
		Files:    []castore.FileEntry{{Name: strings.Repeat("x", 255)}, {Name: "\xff odd bytes ü"}},
		Symlinks: []castore.SymlinkEntry{{Name: "dangling", Target: strings.Repeat("t", 4095)}},
	}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid directory rejected: %v", err)
	}
}

func TestDecodeRejectsShortDigest(t *testing.T) {
	// A FileEntry whose digest has 31 bytes.
	enc, _ := hex.DecodeString("12240a0161121f" + strings.Repeat("00", 31))
	if _, err := castore.UnmarshalDirectory(enc); err == nil {
		t.Fatal("31-byte digest accepted")
	}
	if _, err := castore.UnmarshalDirectory([]byte{0xff, 0xff}); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestEntriesMerged(t *testing.T) {
	got := castoretest.DirComplicated.Entries()
	names := []string{}
	for _, e := range got {
		names = append(names, e.Name)
	}
	if strings.Join(names, ",") != ".keep,aa,keep" {
		t.Fatalf("entries %v", names)
	}
	if n, ok := castoretest.DirComplicated.Lookup("aa"); !ok || n.Kind != castore.KindSymlink || n.Target != "/nix/store/somewhereelse" {
		t.Fatalf("lookup aa = %+v, %v", n, ok)
	}
	if _, ok := castoretest.DirComplicated.Lookup("zz"); ok {
		t.Fatal("lookup of a missing name succeeded")
	}
}
