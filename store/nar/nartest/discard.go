package nartest

import (
	"context"
	"hash"

	"github.com/castor-nix/castor/store/castore"
)

// DiscardBlobs is a castore.BlobIngester that computes each blob's digest
// and keeps nothing: for benchmarks that measure everything but storage,
// and for memory bounds that storage must not blur.
type DiscardBlobs struct{}

var _ castore.BlobIngester = DiscardBlobs{}

// NewBlobWriter implements castore.BlobIngester.
func (DiscardBlobs) NewBlobWriter(ctx context.Context) (castore.BlobWriter, error) {
	return &discardWriter{ctx: ctx, h: castore.NewHasher()}, nil
}

type discardWriter struct {
	ctx context.Context
	h   hash.Hash
}

func (w *discardWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	return w.h.Write(p)
}

func (w *discardWriter) Commit() (castore.Digest, error) {
	if err := w.ctx.Err(); err != nil {
		return castore.Digest{}, err
	}
	return castore.DigestOf(w.h), nil
}

func (w *discardWriter) Close() error { return nil }
