package layered

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// DefaultMissTTL is how long a path that no far service has is not asked
// for again.
const DefaultMissTTL = 30 * time.Second

// Service layers far getters behind a near service.
type Service struct {
	near    pathinfo.Service
	far     []pathinfo.Getter
	missTTL time.Duration
	now     func() time.Time

	group singleflight.Group
	mu    sync.Mutex
	miss  map[[nixpath.DigestSize]byte]time.Time // guarded by mu: when the miss expires
}

var _ pathinfo.Service = (*Service)(nil)

// New layers far (in priority order) behind near.
func New(near pathinfo.Service, far ...pathinfo.Getter) *Service {
	return &Service{near: near, far: far, missTTL: DefaultMissTTL, now: time.Now, miss: map[[nixpath.DigestSize]byte]time.Time{}}
}

// SetMissTTL changes how long misses are remembered (0: not at all).
func (s *Service) SetMissTTL(d time.Duration) { s.missTTL = d }

// Get implements pathinfo.Getter.
func (s *Service) Get(ctx context.Context, digest [nixpath.DigestSize]byte) (*pathinfo.PathInfo, error) {
	info, err := s.near.Get(ctx, digest)
	if err == nil || !errors.Is(err, pathinfo.ErrNotFound) {
		return info, err
	}
	if s.missed(digest) {
		return nil, err
	}
	key := string(digest[:])
	v, err, _ := s.group.Do(key, func() (any, error) {
		// Another caller may have just fetched it.
		if info, err := s.near.Get(ctx, digest); err == nil {
			return info, nil
		}
		return s.fetch(ctx, digest)
	})
	if err != nil {
		return nil, err
	}
	return v.(*pathinfo.PathInfo), nil
}

func (s *Service) fetch(ctx context.Context, digest [nixpath.DigestSize]byte) (*pathinfo.PathInfo, error) {
	var errs []error
	for _, far := range s.far {
		info, err := far.Get(ctx, digest)
		if errors.Is(err, pathinfo.ErrNotFound) {
			continue
		}
		if err != nil {
			slog.Warn("substituter failed", "path", nixpath.StorePath{Digest: digest}.HashPart(), "error", err)
			errs = append(errs, err)
			continue
		}
		if info.StorePath.Digest != digest {
			errs = append(errs, fmt.Errorf("substituter answered %s for %s", info.StorePath, nixpath.StorePath{Digest: digest}.HashPart()))
			continue
		}
		return s.near.Put(ctx, info)
	}
	if len(errs) > 0 {
		// Not a plain miss: a substituter that failed might have it.
		return nil, errors.Join(errs...)
	}
	if s.missTTL > 0 {
		s.mu.Lock()
		s.miss[digest] = s.now().Add(s.missTTL)
		s.mu.Unlock()
	}
	return nil, fmt.Errorf("%s: in no substituter: %w", nixpath.StorePath{Digest: digest}.HashPart(), pathinfo.ErrNotFound)
}

func (s *Service) missed(digest [nixpath.DigestSize]byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.miss[digest]
	if !ok {
		return false
	}
	if s.now().After(until) {
		delete(s.miss, digest)
		return false
	}
	return true
}

// Put implements pathinfo.Putter: it records near.
func (s *Service) Put(ctx context.Context, p *pathinfo.PathInfo) (*pathinfo.PathInfo, error) {
	s.mu.Lock()
	delete(s.miss, p.StorePath.Digest)
	s.mu.Unlock()
	return s.near.Put(ctx, p)
}

// List implements pathinfo.Lister: what is near (remote caches cannot be
// listed).
func (s *Service) List(ctx context.Context) iter.Seq2[*pathinfo.PathInfo, error] {
	return s.near.List(ctx)
}
