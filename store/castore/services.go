package castore

import (
	"context"
	"io"
	"iter"
)

// BlobReader reads one blob. Reads are verified: data that does not hash to
// the digest it is stored under yields an error wrapping ErrCorrupt, never
// the wrong bytes. A reader is not safe for concurrent Read/Seek, but ReadAt
// may be called concurrently (as io.ReaderAt allows).
type BlobReader interface {
	io.Reader
	io.ReaderAt
	io.Seeker
	io.Closer
	// Size is the blob's length in bytes.
	Size() int64
}

// BlobOpener opens blobs for reading.
type BlobOpener interface {
	// OpenBlob opens the blob with digest d. It returns an error wrapping
	// ErrNotFound when the blob is not in the store. The caller closes the
	// reader.
	OpenBlob(ctx context.Context, d Digest) (BlobReader, error)
}

// ChunkMeta describes one stored chunk of a blob.
type ChunkMeta struct {
	Digest Digest
	Size   uint64
}

// BlobStat describes a stored blob.
type BlobStat struct {
	Size uint64
	// Chunks lists the blob's chunks in order. It is empty when the blob is
	// not stored in chunks, or is a single chunk whose digest is the blob's.
	Chunks []ChunkMeta
}

// BlobStater answers whether a blob exists without reading it.
type BlobStater interface {
	// StatBlob returns the blob's size and chunk list, or an error wrapping
	// ErrNotFound.
	StatBlob(ctx context.Context, d Digest) (*BlobStat, error)
}

// BlobWriter takes the contents of one new blob. Nothing is visible to
// readers until Commit returns; a writer closed without Commit leaves no
// trace. A BlobWriter is used by one goroutine.
type BlobWriter interface {
	io.Writer
	// Commit makes the blob visible and returns its digest. Committing a
	// blob that already exists succeeds. After Commit, Close only frees
	// resources.
	Commit() (Digest, error)
	// Close releases the writer, discarding uncommitted data. It is safe to
	// call more than once, and after Commit.
	Close() error
}

// BlobIngester creates blob writers.
type BlobIngester interface {
	// NewBlobWriter starts a blob. The context bounds the writer's life:
	// once it is done, Write and Commit fail.
	NewBlobWriter(ctx context.Context) (BlobWriter, error)
}

// BlobService is the whole blob role set. Backends implement it; callers
// take the smallest part they need.
type BlobService interface {
	BlobOpener
	BlobStater
	BlobIngester
}

// DirectoryGetter reads directories.
type DirectoryGetter interface {
	// GetDirectory returns the directory with digest d, validated, or an
	// error wrapping ErrNotFound. The result may be shared with other
	// callers: never modify it.
	GetDirectory(ctx context.Context, d Digest) (*Directory, error)
	// GetClosure yields the directory with digest root and every directory
	// below it, root first, each digest once, a directory only after one
	// that references it (breadth-first). A missing root yields one error
	// wrapping ErrNotFound; a missing child is an error too (the closure
	// was put whole, so it means damage). Stop iterating to cancel.
	GetClosure(ctx context.Context, root Digest) iter.Seq2[*Directory, error]
}

// DirectoryPutter takes one closure, leaves first. Nothing becomes visible
// until Close succeeds. It is used by one goroutine.
type DirectoryPutter interface {
	// Put adds one directory after validating it. Each child it references
	// must have been put earlier through this putter or already be in the
	// store, with a recorded size no smaller than the child's entry count.
	// Put returns the directory's digest; after an error the putter is
	// failed and Close reports that error.
	Put(ctx context.Context, d *Directory) (Digest, error)
	// Close checks that every directory put is reachable from the last one
	// (the root), commits them all, and returns the root's digest. Closing
	// a putter that received nothing is an error wrapping ErrInvalid.
	Close(ctx context.Context) (Digest, error)
	// Abort discards everything put so far. Safe after Close.
	Abort()
}

// DirectoryIngester creates directory putters.
type DirectoryIngester interface {
	NewDirectoryPutter(ctx context.Context) DirectoryPutter
}

// DirectoryService is the whole directory role set.
type DirectoryService interface {
	DirectoryGetter
	DirectoryIngester
}

// Syncer is implemented by blob stores whose committed blobs may not yet
// survive a power loss (the chunked local store writes without syncing).
// Sync makes everything committed so far durable; callers call it before
// they record elsewhere that blobs exist, once per batch.
type Syncer interface {
	Sync(ctx context.Context) error
}
