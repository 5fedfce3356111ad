package objectstore

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/castorepb"
)

// A blob file holds the blob's chunk list as an encoded
// castorepb.StatBlobResponse (Snix's layout). An empty file, an empty list,
// means the blob is one chunk whose digest is the blob's own. Snix writes
// that case as a one-entry list; both are read.

// chunkRef locates one chunk of a blob.
type chunkRef struct {
	digest castore.Digest
	offset int64 // of the chunk's first byte in the blob
	size   int64
}

// marshalChunkList encodes the blob file for a blob of several chunks.
func marshalChunkList(chunks []castore.ChunkMeta) ([]byte, error) {
	msg := &castorepb.StatBlobResponse{Chunks: make([]*castorepb.StatBlobResponse_ChunkMeta, len(chunks))}
	for i, c := range chunks {
		msg.Chunks[i] = &castorepb.StatBlobResponse_ChunkMeta{Digest: c.Digest[:], Size: c.Size}
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(msg)
}

// parseChunkList decodes and checks a blob file's contents for blob d. It
// returns no chunks for an empty list (a one-chunk blob stored as itself).
// Anything malformed is an error
// wrapping castore.ErrCorrupt: the file was written by a writer that
// checked it, so a bad one means damage.
func parseChunkList(d castore.Digest, b []byte) ([]chunkRef, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var msg castorepb.StatBlobResponse
	if err := proto.Unmarshal(b, &msg); err != nil {
		return nil, fmt.Errorf("blob %s: %w: chunk list: %v", d, castore.ErrCorrupt, err)
	}
	if len(msg.Chunks) == 0 {
		return nil, nil
	}
	refs := make([]chunkRef, len(msg.Chunks))
	var off int64
	for i, c := range msg.Chunks {
		cd, err := castore.DigestFromBytes(c.Digest)
		if err != nil {
			return nil, fmt.Errorf("blob %s: %w: chunk %d: %v", d, castore.ErrCorrupt, i, err)
		}
		if c.Size == 0 || c.Size > MaxReadChunkSize {
			return nil, fmt.Errorf("blob %s: %w: chunk %d has size %d, want 1..%d", d, castore.ErrCorrupt, i, c.Size, MaxReadChunkSize)
		}
		if off > math.MaxInt64-int64(c.Size) {
			return nil, fmt.Errorf("blob %s: %w: chunk sizes overflow", d, castore.ErrCorrupt)
		}
		refs[i] = chunkRef{digest: cd, offset: off, size: int64(c.Size)}
		off += int64(c.Size)
	}
	return refs, nil
}
