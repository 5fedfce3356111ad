package compose

import (
	"context"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/pathinfo"
)

// syncedPathInfos makes the blob store durable before each PathInfo is
// recorded: the path-info database syncs its own commits, so without this
// a power loss could leave a recorded path whose chunk files were never
// written back. One syncfs per Put; it costs what the kernel had left to
// flush anyway.
type syncedPathInfos struct {
	pathinfo.Service
	blobs castore.Syncer
}

func (s *syncedPathInfos) Put(ctx context.Context, p *pathinfo.PathInfo) (*pathinfo.PathInfo, error) {
	if err := s.blobs.Sync(ctx); err != nil {
		return nil, err
	}
	return s.Service.Put(ctx, p)
}

// withBlobSync wraps infos when blobs needs syncing.
func withBlobSync(infos pathinfo.Service, blobs castore.BlobService) pathinfo.Service {
	if sy, ok := blobs.(castore.Syncer); ok {
		return &syncedPathInfos{Service: infos, blobs: sy}
	}
	return infos
}
