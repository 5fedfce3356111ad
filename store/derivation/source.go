package derivation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// MaxSize bounds the size of a .drv file read by a Source, so that a
// corrupt or hostile store cannot make a reader allocate without limit.
// The largest .drv files in Nixpkgs are a few MiB.
const MaxSize = 64 << 20

// Load parses the .drv file data found at drvPath, naming the derivation
// after the path.
func Load(drvPath string, data []byte) (*Derivation, error) {
	sp, err := nixpath.ParseAbsolute(drvPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if !sp.IsDerivation() {
		return nil, fmt.Errorf("%w: %s does not end in .drv", ErrInvalid, drvPath)
	}
	d, err := ParseNamed(data, strings.TrimSuffix(sp.Name, ".drv"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", drvPath, err)
	}
	return d, nil
}

// Dir reads .drv files from a directory tree holding /nix/store: the
// directory "/" for the host's store, or the root of a Nix chroot store
// (nix --store /tmp/x keeps /nix/store/… under /tmp/x/nix/store/…).
type Dir string

var _ Source = Dir("")

// Derivation implements Source.
func (r Dir) Derivation(ctx context.Context, drvPath string) (*Derivation, error) {
	if _, err := nixpath.ParseAbsolute(drvPath); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	f, err := os.Open(filepath.Join(string(r), drvPath))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", drvPath, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := readLimited(f, drvPath)
	if err != nil {
		return nil, err
	}
	return Load(drvPath, data)
}

func readLimited(r io.Reader, drvPath string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", drvPath, err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalid, drvPath, MaxSize)
	}
	return data, nil
}

// Store reads .drv files from the castor store: the PathInfo of the .drv
// path, whose root must be a regular file, then that blob.
type Store struct {
	PathInfos pathinfo.Getter
	Blobs     castore.BlobOpener
}

var _ Source = (*Store)(nil)

// Derivation implements Source.
func (s *Store) Derivation(ctx context.Context, drvPath string) (*Derivation, error) {
	data, err := s.Read(ctx, drvPath)
	if err != nil {
		return nil, err
	}
	return Load(drvPath, data)
}

// Read returns the bytes of the .drv file at drvPath.
func (s *Store) Read(ctx context.Context, drvPath string) ([]byte, error) {
	sp, err := nixpath.ParseAbsolute(drvPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	info, err := s.PathInfos.Get(ctx, sp.Digest)
	if errors.Is(err, pathinfo.ErrNotFound) || err == nil && info.StorePath != sp {
		return nil, fmt.Errorf("%s is not in the store: %w", drvPath, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if info.Node.Kind != castore.KindFile {
		return nil, fmt.Errorf("%w: %s is a %s, not a file", ErrInvalid, drvPath, info.Node.Kind)
	}
	if info.Node.Size > MaxSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalid, drvPath, MaxSize)
	}
	r, err := s.Blobs.OpenBlob(ctx, info.Node.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", drvPath, err)
	}
	defer r.Close()
	return readLimited(r, drvPath)
}

// Cache remembers the derivations another Source returns, so that a graph
// is parsed once however many times its nodes are asked for.
type Cache struct {
	src Source

	mu sync.Mutex
	m  map[string]*Derivation
}

// NewCache wraps src.
func NewCache(src Source) *Cache { return &Cache{src: src, m: map[string]*Derivation{}} }

var _ Source = (*Cache)(nil)

// Derivation implements Source. Errors are not remembered.
func (c *Cache) Derivation(ctx context.Context, drvPath string) (*Derivation, error) {
	c.mu.Lock()
	d, ok := c.m[drvPath]
	c.mu.Unlock()
	if ok {
		return d, nil
	}
	d, err := c.src.Derivation(ctx, drvPath)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.m[drvPath] = d
	c.mu.Unlock()
	return d, nil
}
