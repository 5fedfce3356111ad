package castore

import (
	"context"
	"errors"
	"fmt"
)

// DigestedDirectory is a directory with its digest computed once.
type DigestedDirectory struct {
	Digest Digest
	*Directory
}

// ClosurePutter implements DirectoryPutter for any backend: it validates a
// closure sent leaves first and hands the whole, validated closure to a
// commit function at Close. Backends supply only lookup (to accept
// children already stored) and commit (to store a batch atomically).
type ClosurePutter struct {
	lookup DirectoryGetter
	commit func(ctx context.Context, dirs []DigestedDirectory) error

	dirs  map[Digest]*Directory
	order []DigestedDirectory // leaves first, as first received
	last  Digest              // the latest put: the root once closed
	err   error
	done  bool
}

// NewClosurePutter returns a putter that checks children against the batch
// and then lookup, and commits through commit. commit receives the
// directories leaves first and must make all or none of them visible.
func NewClosurePutter(lookup DirectoryGetter, commit func(ctx context.Context, dirs []DigestedDirectory) error) *ClosurePutter {
	return &ClosurePutter{lookup: lookup, commit: commit, dirs: make(map[Digest]*Directory)}
}

var _ DirectoryPutter = (*ClosurePutter)(nil)

// Put implements DirectoryPutter.
func (p *ClosurePutter) Put(ctx context.Context, d *Directory) (Digest, error) {
	if p.err != nil {
		return Digest{}, p.err
	}
	if p.done {
		return Digest{}, fmt.Errorf("%w: put after close", ErrInvalid)
	}
	dg, err := p.put(ctx, d)
	if err != nil {
		p.err = err
		return Digest{}, err
	}
	return dg, nil
}

func (p *ClosurePutter) put(ctx context.Context, d *Directory) (Digest, error) {
	if err := d.Validate(); err != nil {
		return Digest{}, err
	}
	dg := d.Digest()
	for _, e := range d.Directories {
		child, ok := p.dirs[e.Digest]
		if !ok {
			var err error
			child, err = p.lookup.GetDirectory(ctx, e.Digest)
			if errors.Is(err, ErrNotFound) {
				return Digest{}, fmt.Errorf("%w: directory %s references %s (%q), which was not sent before it", ErrInvalid, dg, e.Digest, e.Name)
			}
			if err != nil {
				return Digest{}, err
			}
		}
		if err := CheckChildSize(child, e.Size); err != nil {
			return Digest{}, fmt.Errorf("directory %s, entry %q: %w", dg, e.Name, err)
		}
	}
	// A directory sent again keeps its first place, which is leaves
	// first; it may still be the root if it is the last one put.
	if _, dup := p.dirs[dg]; !dup {
		p.dirs[dg] = d
		p.order = append(p.order, DigestedDirectory{Digest: dg, Directory: d})
	}
	p.last = dg
	return dg, nil
}

// Close implements DirectoryPutter.
func (p *ClosurePutter) Close(ctx context.Context) (Digest, error) {
	if p.err != nil {
		return Digest{}, p.err
	}
	if p.done {
		return Digest{}, fmt.Errorf("%w: putter closed twice", ErrInvalid)
	}
	p.done = true
	if len(p.order) == 0 {
		p.err = fmt.Errorf("%w: empty closure", ErrInvalid)
		return Digest{}, p.err
	}
	root := p.last
	// Every directory sent must hang off the root.
	reached := map[Digest]bool{root: true}
	queue := []Digest{root}
	for len(queue) > 0 {
		d := p.dirs[queue[0]]
		queue = queue[1:]
		for _, e := range d.Directories {
			if _, inBatch := p.dirs[e.Digest]; inBatch && !reached[e.Digest] {
				reached[e.Digest] = true
				queue = append(queue, e.Digest)
			}
		}
	}
	if len(reached) != len(p.dirs) {
		p.err = fmt.Errorf("%w: %d of %d directories sent are not reachable from the root %s", ErrInvalid, len(p.dirs)-len(reached), len(p.dirs), root)
		return Digest{}, p.err
	}
	if err := p.commit(ctx, p.order); err != nil {
		p.err = err
		return Digest{}, err
	}
	p.dirs, p.order = nil, nil
	return root, nil
}

// Abort implements DirectoryPutter.
func (p *ClosurePutter) Abort() {
	p.done = true
	p.dirs, p.order = nil, nil
	if p.err == nil {
		p.err = fmt.Errorf("%w: putter aborted", ErrInvalid)
	}
}

// WalkClosure implements DirectoryGetter.GetClosure over a GetDirectory
// function, breadth-first: backends without a faster way use it.
func WalkClosure(ctx context.Context, get func(context.Context, Digest) (*Directory, error), root Digest) func(yield func(*Directory, error) bool) {
	return func(yield func(*Directory, error) bool) {
		seen := map[Digest]bool{root: true}
		queue := []Digest{root}
		for len(queue) > 0 {
			dg := queue[0]
			queue = queue[1:]
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			d, err := get(ctx, dg)
			if err != nil {
				if dg != root && errors.Is(err, ErrNotFound) {
					err = fmt.Errorf("%w: closure of %s is incomplete: %w", ErrCorrupt, root, err)
				}
				yield(nil, err)
				return
			}
			if !yield(d, nil) {
				return
			}
			for _, e := range d.Directories {
				if !seen[e.Digest] {
					seen[e.Digest] = true
					queue = append(queue, e.Digest)
				}
			}
		}
	}
}
