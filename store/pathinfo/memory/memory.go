package memory

import (
	"context"
	"fmt"
	"iter"
	"sync"

	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// Service keeps path infos in a map.
type Service struct {
	mu    sync.RWMutex
	infos map[[nixpath.DigestSize]byte]*pathinfo.PathInfo // guarded by mu
}

var _ pathinfo.Service = (*Service)(nil)

// New returns an empty service.
func New() *Service {
	return &Service{infos: make(map[[nixpath.DigestSize]byte]*pathinfo.PathInfo)}
}

// Get implements pathinfo.Getter.
func (s *Service) Get(ctx context.Context, digest [nixpath.DigestSize]byte) (*pathinfo.PathInfo, error) {
	s.mu.RLock()
	p, ok := s.infos[digest]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%s: %w", nixpath.StorePath{Digest: digest}.HashPart(), pathinfo.ErrNotFound)
	}
	return p, nil
}

// Put implements pathinfo.Putter. It stores a copy made through the wire
// encoding, so later changes to p by the caller do not leak in.
func (s *Service) Put(ctx context.Context, p *pathinfo.PathInfo) (*pathinfo.PathInfo, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	c, err := pathinfo.Unmarshal(p.Marshal())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.infos[c.StorePath.Digest] = c
	s.mu.Unlock()
	return c, nil
}

// List implements pathinfo.Lister over a snapshot.
func (s *Service) List(ctx context.Context) iter.Seq2[*pathinfo.PathInfo, error] {
	return func(yield func(*pathinfo.PathInfo, error) bool) {
		s.mu.RLock()
		all := make([]*pathinfo.PathInfo, 0, len(s.infos))
		for _, p := range s.infos {
			all = append(all, p)
		}
		s.mu.RUnlock()
		for _, p := range all {
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			if !yield(p, nil) {
				return
			}
		}
	}
}
