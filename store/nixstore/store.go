package nixstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// Store bundles the services the operations need.
type Store struct {
	Blobs       castore.BlobService
	Directories castore.DirectoryService
	PathInfos   pathinfo.Service
}

// ErrNotFound: the store path, or the file below it, does not exist.
var ErrNotFound = errors.New("not found")

// PathInfo returns the PathInfo of an absolute store path.
func (s *Store) PathInfo(ctx context.Context, abs string) (*pathinfo.PathInfo, error) {
	sp, err := nixpath.ParseAbsolute(abs)
	if err != nil {
		return nil, err
	}
	return s.pathInfo(ctx, sp)
}

func (s *Store) pathInfo(ctx context.Context, sp nixpath.StorePath) (*pathinfo.PathInfo, error) {
	info, err := s.PathInfos.Get(ctx, sp.Digest)
	if errors.Is(err, pathinfo.ErrNotFound) {
		return nil, fmt.Errorf("%s is not in the store: %w", sp.Absolute(), ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if info.StorePath != sp {
		// Same digest, other name: not the path asked for.
		return nil, fmt.Errorf("%s is not in the store (%s is): %w", sp.Absolute(), info.StorePath.Absolute(), ErrNotFound)
	}
	return info, nil
}

// Resolve finds the node at an absolute path in the store, such as
// /nix/store/<hash>-hello/bin/hello. Symlinks are not followed (a symlink
// on the way is an error, one at the end is returned as is).
func (s *Store) Resolve(ctx context.Context, abs string) (*pathinfo.PathInfo, castore.Node, error) {
	sp, sub, err := nixpath.ParseAbsoluteWithSub(abs)
	if err != nil {
		return nil, castore.Node{}, err
	}
	info, err := s.pathInfo(ctx, sp)
	if err != nil {
		return nil, castore.Node{}, err
	}
	node := info.Node
	if sub == "" {
		return info, node, nil
	}
	walked := sp.Absolute()
	for _, name := range strings.Split(sub, "/") {
		if node.Kind != castore.KindDirectory {
			return nil, castore.Node{}, fmt.Errorf("%s is a %s, not a directory: %w", walked, node.Kind, ErrNotFound)
		}
		dir, err := s.Directories.GetDirectory(ctx, node.Digest)
		if err != nil {
			return nil, castore.Node{}, fmt.Errorf("%s: %w", walked, err)
		}
		walked += "/" + name
		child, ok := dir.Lookup(name)
		if !ok {
			return nil, castore.Node{}, fmt.Errorf("%s: %w", walked, ErrNotFound)
		}
		node = child
	}
	return info, node, nil
}
