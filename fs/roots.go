package fs

import (
	"context"
	"fmt"
	"iter"
	"slices"

	"github.com/castor-nix/castor/store/castore"
)

// RootResolver finds what a name in the mount's root stands for.
type RootResolver interface {
	// LookupRoot returns the node called name in the root. It returns an
	// error wrapping castore.ErrNotFound when the store has no such root
	// (the filesystem answers ENOENT, not cached: the root may appear
	// later), and one wrapping castore.ErrInvalid when name can never be a
	// root, e.g. it does not parse as a store path (ENOENT, cached). Any
	// other error is logged and answered with EIO. LookupRoot is called
	// concurrently and must honour ctx.
	LookupRoot(ctx context.Context, name string) (castore.Node, error)
}

// RootLister lists the roots, for mounts made with Options.ListRoot.
type RootLister interface {
	// ListRoots yields every root once, in any order, with a valid
	// castore entry name. An error ends the listing. The caller stops
	// iterating to cancel; the iteration honours ctx.
	ListRoots(ctx context.Context) iter.Seq2[castore.NamedNode, error]
}

// Roots is a fixed set of roots held in memory: for tests, and for
// mounting trees that are not store paths.
type Roots map[string]castore.Node

var (
	_ RootResolver = Roots(nil)
	_ RootLister   = Roots(nil)
)

// LookupRoot implements RootResolver.
func (r Roots) LookupRoot(ctx context.Context, name string) (castore.Node, error) {
	n, ok := r[name]
	if !ok {
		return castore.Node{}, fmt.Errorf("root %q: %w", name, castore.ErrNotFound)
	}
	return n, nil
}

// ListRoots implements RootLister, in name order.
func (r Roots) ListRoots(ctx context.Context) iter.Seq2[castore.NamedNode, error] {
	return func(yield func(castore.NamedNode, error) bool) {
		names := make([]string, 0, len(r))
		for name := range r {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			if err := ctx.Err(); err != nil {
				yield(castore.NamedNode{}, err)
				return
			}
			if !yield(castore.NamedNode{Name: name, Node: r[name]}, nil) {
				return
			}
		}
	}
}
