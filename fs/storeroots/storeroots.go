package storeroots

import (
	"context"
	"errors"
	"fmt"
	"iter"

	castorfs "github.com/castor-nix/castor/fs"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// Resolver answers root lookups from a path-info service. It lists the
// root when the service is also a pathinfo.Lister.
type Resolver struct {
	Infos pathinfo.Getter
}

var (
	_ castorfs.RootResolver = (*Resolver)(nil)
	_ castorfs.RootLister   = (*Resolver)(nil)
)

// LookupRoot implements fs.RootResolver.
func (r *Resolver) LookupRoot(ctx context.Context, name string) (castore.Node, error) {
	sp, err := nixpath.Parse(name)
	if err != nil {
		return castore.Node{}, fmt.Errorf("%w: %v", castore.ErrInvalid, err)
	}
	info, err := r.Infos.Get(ctx, sp.Digest)
	if errors.Is(err, pathinfo.ErrNotFound) {
		return castore.Node{}, fmt.Errorf("%s: %w", name, castore.ErrNotFound)
	}
	if err != nil {
		return castore.Node{}, fmt.Errorf("%s: %w", name, err)
	}
	if info.StorePath != sp {
		// The hash is known, under another name: not this path.
		return castore.Node{}, fmt.Errorf("%s (the store has %s): %w", name, info.StorePath, castore.ErrNotFound)
	}
	return info.Node, nil
}

// ListRoots implements fs.RootLister, streaming the service's path infos.
func (r *Resolver) ListRoots(ctx context.Context) iter.Seq2[castore.NamedNode, error] {
	return func(yield func(castore.NamedNode, error) bool) {
		l, ok := r.Infos.(pathinfo.Lister)
		if !ok {
			yield(castore.NamedNode{}, fmt.Errorf("path-info service %T cannot list", r.Infos))
			return
		}
		for info, err := range l.List(ctx) {
			if err != nil {
				yield(castore.NamedNode{}, err)
				return
			}
			if !yield(castore.NamedNode{Name: info.StorePath.String(), Node: info.Node}, nil) {
				return
			}
		}
	}
}
