package memory

import (
	"context"
	"fmt"
	"iter"
	"sync"

	"github.com/castor-nix/castor/store/castore"
)

// DirectoryService keeps directories in a map.
type DirectoryService struct {
	mu   sync.RWMutex
	dirs map[castore.Digest]*castore.Directory // guarded by mu; never mutated once stored
}

var _ castore.DirectoryService = (*DirectoryService)(nil)

// NewDirectoryService returns an empty in-memory directory store.
func NewDirectoryService() *DirectoryService {
	return &DirectoryService{dirs: make(map[castore.Digest]*castore.Directory)}
}

// GetDirectory implements castore.DirectoryGetter.
func (s *DirectoryService) GetDirectory(ctx context.Context, d castore.Digest) (*castore.Directory, error) {
	s.mu.RLock()
	dir, ok := s.dirs[d]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("directory %s: %w", d, castore.ErrNotFound)
	}
	return dir, nil
}

// GetClosure implements castore.DirectoryGetter.
func (s *DirectoryService) GetClosure(ctx context.Context, root castore.Digest) iter.Seq2[*castore.Directory, error] {
	return castore.WalkClosure(ctx, s.GetDirectory, root)
}

// NewDirectoryPutter implements castore.DirectoryIngester.
func (s *DirectoryService) NewDirectoryPutter(ctx context.Context) castore.DirectoryPutter {
	return castore.NewClosurePutter(s, func(ctx context.Context, dirs []castore.DigestedDirectory) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, d := range dirs {
			s.dirs[d.Digest] = d.Directory
		}
		return nil
	})
}

// Delete removes a directory, for tests of damage handling.
func (s *DirectoryService) Delete(d castore.Digest) {
	s.mu.Lock()
	delete(s.dirs, d)
	s.mu.Unlock()
}
