package objectstore

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/castor-nix/castor/store/castore"
)

// Problem is one piece of damage found by Check.
type Problem struct {
	Blob castore.Digest // the blob affected
	Err  error          // wraps castore.ErrCorrupt
}

func (p Problem) String() string { return fmt.Sprintf("blob %s: %v", p.Blob, p.Err) }

// Check walks every committed blob and reports those whose chunk list is
// malformed or names a chunk file that is missing or implausibly short.
// With deep, it also reads every blob, verifying each chunk and the whole
// (damaged chunks are then moved aside, as reads do). Check returns an error only
// when it cannot walk the store; damage is in the returned problems.
func (s *Store) Check(ctx context.Context, deep bool) ([]Problem, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var problems []Problem
	present := make(map[castore.Digest]bool)  // chunks found plausible
	verified := make(map[castore.Digest]bool) // chunks a chunk list led to
	chunkOK := func(d castore.Digest) error {
		if present[d] || s.packs.has(d) {
			return nil
		}
		n, ok, err := statSize(s.chunkPath(d))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("chunk %s: %w: missing", d, castore.ErrCorrupt)
		}
		if n < minFrameSize {
			return fmt.Errorf("chunk %s: %w: file of %d bytes", d, castore.ErrCorrupt, n)
		}
		present[d] = true
		return nil
	}
	addProblem := func(d castore.Digest, err error) { problems = append(problems, Problem{Blob: d, Err: err}) }
	err := s.walkShards(ctx, blobsDir, addProblem, func(d castore.Digest) {
		if err := s.checkBlob(ctx, d, deep, chunkOK, verified); err != nil {
			addProblem(d, err)
		}
	})
	if err != nil || !deep {
		return problems, err
	}
	// One-chunk blobs have no chunk list: they are their chunks. Read
	// every chunk no list led to (they verify as they load).
	loadUnverified := func(d castore.Digest) {
		if verified[d] {
			return
		}
		verified[d] = true
		if _, err := s.loadChunk(d, -1); err != nil {
			addProblem(d, err)
		}
	}
	for _, d := range s.packs.packedChunks() {
		if err := ctx.Err(); err != nil {
			return problems, err
		}
		loadUnverified(d)
	}
	err = s.walkShards(ctx, chunksDir, addProblem, loadUnverified)
	return problems, err
}

// walkShards calls visit with the digest of every file in the shard
// directories under dir (blobsDir or chunksDir), and reports a file whose
// name is not a digest of its shard as a stray. It returns an error only
// when it cannot list a directory or ctx ends.
func (s *Store) walkShards(ctx context.Context, dir string, stray func(castore.Digest, error), visit func(castore.Digest)) error {
	shards, err := os.ReadDir(filepath.Join(s.root, dir))
	if err != nil {
		return fmt.Errorf("objectstore: check: %w", err)
	}
	for _, shard := range shards {
		names, err := os.ReadDir(filepath.Join(s.root, dir, shard.Name()))
		if err != nil {
			return fmt.Errorf("objectstore: check: %w", err)
		}
		for _, n := range names {
			if err := ctx.Err(); err != nil {
				return err
			}
			d, err := castore.ParseDigest(n.Name())
			if err != nil || shard.Name() != n.Name()[:shardHex] {
				stray(castore.Digest{}, fmt.Errorf("%w: stray file %s in %s", castore.ErrCorrupt, n.Name(), dir))
				continue
			}
			visit(d)
		}
	}
	return nil
}

// checkBlob checks one blob: its chunk list and chunk files, and with deep
// its contents, read as a reader would (each chunk and the whole verified).
func (s *Store) checkBlob(ctx context.Context, d castore.Digest, deep bool, chunkOK func(castore.Digest) error, verified map[castore.Digest]bool) error {
	refs, err := s.readChunkList(d)
	if err != nil {
		return err
	}
	if refs == nil {
		refs = []chunkRef{{digest: d}}
	}
	// Whatever this finds about these chunks is reported here, once.
	for _, c := range refs {
		verified[c.digest] = true
	}
	for _, r := range refs {
		if err := chunkOK(r.digest); err != nil {
			return err
		}
	}
	if !deep {
		return nil
	}
	r, err := s.OpenBlob(ctx, d)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(io.Discard, struct{ io.Reader }{r})
	return err
}
