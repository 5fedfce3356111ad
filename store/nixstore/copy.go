package nixstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// Fetcher fetches a store path from elsewhere into this store's castore
// (a binary cache does), telling progress the bytes it transfers.
type Fetcher interface {
	Fetch(ctx context.Context, digest [nixpath.DigestSize]byte, progress func(n int64)) (*pathinfo.PathInfo, error)
}

// CopyStats counts what CopyClosure did; fields are updated atomically and
// may be read while it runs.
type CopyStats struct {
	// Paths is how many paths of the closure are known so far; Done how
	// many are settled (fetched or already here); Fetched how many were
	// fetched.
	Paths, Done, Fetched atomic.Int64
	// Bytes transferred.
	Bytes atomic.Int64
}

// CopyClosure makes the closures of roots present in this store, fetching
// missing paths from src with up to jobs fetches at once. Paths already
// here are not fetched, but their references are followed too. It stops at
// the first error.
func (s *Store) CopyClosure(ctx context.Context, src Fetcher, roots []nixpath.StorePath, jobs int, stats *CopyStats) error {
	if jobs < 1 {
		jobs = 1
	}
	if stats == nil {
		stats = &CopyStats{}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, jobs)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[[nixpath.DigestSize]byte]bool{}
	)
	var visit func(p nixpath.StorePath)
	visit = func(p nixpath.StorePath) {
		mu.Lock()
		dup := seen[p.Digest]
		seen[p.Digest] = true
		mu.Unlock()
		if dup {
			return
		}
		stats.Paths.Add(1)
		// A path's goroutine visits its references before it is Done, so
		// Wait cannot return while any path is still unsettled.
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			info, err := s.copyOne(ctx, src, p, stats)
			<-sem
			if err != nil {
				cancel(err)
				return
			}
			stats.Done.Add(1)
			for _, r := range info.References {
				visit(r)
			}
		}()
	}
	for _, r := range roots {
		visit(r)
	}
	wg.Wait()
	// Set only by a failed path or by the caller's cancellation.
	return context.Cause(ctx)
}

// copyOne makes p present here, fetching it if needed.
func (s *Store) copyOne(ctx context.Context, src Fetcher, p nixpath.StorePath, stats *CopyStats) (*pathinfo.PathInfo, error) {
	info, err := s.PathInfos.Get(ctx, p.Digest)
	if err == nil && info.StorePath == p {
		return info, nil
	}
	if err != nil && !errors.Is(err, pathinfo.ErrNotFound) {
		return nil, err
	}
	info, err = src.Fetch(ctx, p.Digest, func(n int64) { stats.Bytes.Add(n) })
	if err != nil {
		return nil, err
	}
	if info.StorePath != p {
		return nil, fmt.Errorf("asked for %s, the source has %s", p.Absolute(), info.StorePath.Absolute())
	}
	if _, err := s.PathInfos.Put(ctx, info); err != nil {
		return nil, err
	}
	stats.Fetched.Add(1)
	return info, nil
}
