package binarycache

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// ErrInvalid marks a malformed narinfo or nix-cache-info.
var ErrInvalid = errors.New("invalid narinfo")

// NarInfo is a parsed .narinfo file.
type NarInfo struct {
	StorePath   nixpath.StorePath
	URL         string
	Compression string
	// FileHash and FileSize describe the compressed file; optional.
	FileHash *nixhash.Hash
	FileSize uint64
	NarHash  *nixhash.Hash
	NarSize  uint64
	// References, sorted.
	References []nixpath.StorePath
	Deriver    *nixpath.StorePath
	System     string
	Signatures []pathinfo.Signature
	CA         *nixpath.ContentAddress
}

// maxNarInfoSize bounds what ParseNarInfo reads (real ones are a few KiB;
// a path with thousands of references stays far below this).
const maxNarInfoSize = 4 << 20

// ParseNarInfo parses a narinfo. Unknown keys are ignored, as Nix does;
// StorePath, URL, NarHash and NarSize are required; every value is checked.
func ParseNarInfo(data []byte) (*NarInfo, error) {
	if len(data) > maxNarInfoSize {
		return nil, fmt.Errorf("%w: %d bytes is too large", ErrInvalid, len(data))
	}
	n := &NarInfo{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), maxNarInfoSize)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if text == "" {
			continue
		}
		key, value, ok := strings.Cut(text, ":")
		if !ok {
			return nil, fmt.Errorf("%w: line %d %q has no ':'", ErrInvalid, line, text)
		}
		value = strings.TrimPrefix(value, " ")
		if key != "Sig" && seen[key] {
			return nil, fmt.Errorf("%w: line %d: %s given twice", ErrInvalid, line, key)
		}
		seen[key] = true
		if err := n.set(key, value); err != nil {
			return nil, fmt.Errorf("%w: line %d (%s): %v", ErrInvalid, line, key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for _, k := range []string{"StorePath", "URL", "NarHash", "NarSize"} {
		if !seen[k] {
			return nil, fmt.Errorf("%w: required field %s is missing", ErrInvalid, k)
		}
	}
	if n.Compression == "" {
		// Nix's default when the field is absent.
		n.Compression = "bzip2"
	}
	if n.NarHash.Algo() != nixhash.SHA256 {
		return nil, fmt.Errorf("%w: NarHash must be sha256, is %s", ErrInvalid, n.NarHash.Algo())
	}
	if n.NarSize == 0 {
		return nil, fmt.Errorf("%w: NarSize is 0", ErrInvalid)
	}
	return n, nil
}

func (n *NarInfo) set(key, value string) error {
	var err error
	switch key {
	case "StorePath":
		n.StorePath, err = nixpath.ParseAbsolute(value)
	case "URL":
		if value == "" || strings.Contains(value, "..") {
			return fmt.Errorf("bad URL %q", value)
		}
		n.URL = value
	case "Compression":
		n.Compression = value
	case "FileHash":
		n.FileHash, err = nixpath.ParseHash(value, "")
	case "FileSize":
		n.FileSize, err = strconv.ParseUint(value, 10, 64)
	case "NarHash":
		n.NarHash, err = nixpath.ParseHash(value, "")
	case "NarSize":
		n.NarSize, err = strconv.ParseUint(value, 10, 64)
	case "References":
		for _, r := range strings.Fields(value) {
			p, err := nixpath.Parse(r)
			if err != nil {
				return err
			}
			n.References = append(n.References, p)
		}
	case "Deriver":
		if value != "" && value != "unknown-deriver" {
			p, err := nixpath.Parse(value)
			if err != nil {
				return err
			}
			n.Deriver = &p
		}
	case "System":
		n.System = value
	case "Sig":
		s, err := ParseSignature(value)
		if err != nil {
			return err
		}
		n.Signatures = append(n.Signatures, s)
	case "CA":
		if value != "" {
			ca, err := nixpath.ParseContentAddress(value)
			if err != nil {
				return err
			}
			n.CA = &ca
		}
	}
	return err
}

// Fingerprint is what narinfo signatures sign:
// 1;<store path>;<NarHash as sha256:nixbase32>;<NarSize>;<references, comma-joined full paths>.
func Fingerprint(p nixpath.StorePath, narSHA256 [32]byte, narSize uint64, refs []nixpath.StorePath) string {
	abs := make([]string, len(refs))
	for i, r := range refs {
		abs[i] = r.Absolute()
	}
	// Nix signs the references in its set order, i.e. sorted.
	sortStrings(abs)
	return "1;" + p.Absolute() + ";" + nixpath.FormatSHA256(narSHA256) + ";" + strconv.FormatUint(narSize, 10) + ";" + strings.Join(abs, ",")
}

// narSHA256 returns NarHash's digest (ParseNarInfo checked it is sha256).
func (n *NarInfo) narSHA256() [32]byte {
	return [32]byte(n.NarHash.Digest())
}

// Fingerprint of this narinfo.
func (n *NarInfo) Fingerprint() string {
	return Fingerprint(n.StorePath, n.narSHA256(), n.NarSize, n.References)
}

// String renders the narinfo as Nix writes it.
func (n *NarInfo) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "StorePath: %s\n", n.StorePath.Absolute())
	fmt.Fprintf(&b, "URL: %s\n", n.URL)
	fmt.Fprintf(&b, "Compression: %s\n", n.Compression)
	if n.FileHash != nil {
		fmt.Fprintf(&b, "FileHash: %s\n", n.FileHash.Format(nixhash.NixBase32, true))
		fmt.Fprintf(&b, "FileSize: %d\n", n.FileSize)
	}
	fmt.Fprintf(&b, "NarHash: %s\n", n.NarHash.Format(nixhash.NixBase32, true))
	fmt.Fprintf(&b, "NarSize: %d\n", n.NarSize)
	refs := make([]string, len(n.References))
	for i, r := range n.References {
		refs[i] = r.String()
	}
	fmt.Fprintf(&b, "References: %s\n", strings.Join(refs, " "))
	if n.Deriver != nil {
		fmt.Fprintf(&b, "Deriver: %s\n", n.Deriver)
	}
	if n.System != "" {
		fmt.Fprintf(&b, "System: %s\n", n.System)
	}
	for _, s := range n.Signatures {
		fmt.Fprintf(&b, "Sig: %s\n", s)
	}
	if n.CA != nil {
		fmt.Fprintf(&b, "CA: %s\n", n.CA)
	}
	return b.String()
}

// CacheInfo is a parsed nix-cache-info.
type CacheInfo struct {
	StoreDir      string
	WantMassQuery bool
	Priority      int
}

// ParseCacheInfo parses nix-cache-info; unknown keys are ignored.
func ParseCacheInfo(data []byte) (*CacheInfo, error) {
	ci := &CacheInfo{StoreDir: nixpath.StoreDir, Priority: 50}
	for i, line := range strings.Split(string(data), "\n") {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%w: nix-cache-info line %d %q has no ':'", ErrInvalid, i+1, line)
		}
		v = strings.TrimSpace(v)
		switch k {
		case "StoreDir":
			ci.StoreDir = v
		case "WantMassQuery":
			ci.WantMassQuery = v == "1"
		case "Priority":
			p, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("%w: nix-cache-info Priority %q", ErrInvalid, v)
			}
			ci.Priority = p
		}
	}
	return ci, nil
}
