package nixstore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/fsimport"
	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// ImportNAR ingests a NAR and records it as the store path name gets when
// Nix adds the same tree (`nix-store --add-fixed --recursive sha256`): a
// "source" path over the NAR's SHA-256, with that content address and no
// references. Nothing is recorded unless the whole NAR is valid.
func (s *Store) ImportNAR(ctx context.Context, r io.Reader, name string) (*pathinfo.PathInfo, error) {
	if err := nixpath.ValidateName(name); err != nil {
		return nil, err
	}
	root, size, sum, err := nar.Ingest(ctx, r, s.Blobs, s.Directories)
	if err != nil {
		return nil, fmt.Errorf("import NAR as %q: %w", name, err)
	}
	return s.registerSource(ctx, name, root, size, sum)
}

// registerSource records a tree as a content-addressed source path. The
// tree is already in the castore: this is the last write.
func (s *Store) registerSource(ctx context.Context, name string, root castore.Node, narSize uint64, narSHA256 [32]byte) (*pathinfo.PathInfo, error) {
	sp, err := nixpath.MakeSourcePath(narSHA256, name, nil, false)
	if err != nil {
		return nil, err
	}
	info := &pathinfo.PathInfo{
		StorePath: sp,
		Node:      root,
		NarSize:   narSize,
		NarSHA256: narSHA256,
		CA:        &nixpath.ContentAddress{Method: nixpath.Recursive, Hash: nixpath.SHA256Hash(narSHA256)},
	}
	return s.PathInfos.Put(ctx, info)
}

// Dump writes the NAR of a store path (or of a file or directory below
// one), byte-identical to `nix-store --dump`.
func (s *Store) Dump(ctx context.Context, w io.Writer, abs string) error {
	_, node, err := s.Resolve(ctx, abs)
	if err != nil {
		return err
	}
	return nar.Render(ctx, w, node, s.Blobs, s.Directories)
}

// AddPath adds a local file or tree as `nix-store --add` does: a "source"
// path named after its basename, over the NAR's SHA-256. progress may be
// nil.
func (s *Store) AddPath(ctx context.Context, path string, progress func(fsimport.Progress)) (*pathinfo.PathInfo, error) {
	name := filepath.Base(filepath.Clean(path))
	if err := nixpath.ValidateName(name); err != nil {
		return nil, fmt.Errorf("cannot add %s: %w", path, err)
	}
	start := time.Now()
	root, size, sum, err := fsimport.Import(ctx, path, s.Blobs, s.Directories, &fsimport.Options{Progress: progress})
	if err != nil {
		return nil, fmt.Errorf("add %s: %w", path, err)
	}
	imported := time.Now()
	info, err := s.registerSource(ctx, name, root, size, sum)
	slog.Debug("nixstore: added", "path", path, "nar_bytes", size, "import", imported.Sub(start), "register", time.Since(imported))
	return info, err
}
