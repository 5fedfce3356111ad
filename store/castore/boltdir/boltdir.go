package boltdir

import (
	"context"
	"fmt"
	"iter"

	bolt "go.etcd.io/bbolt"

	"github.com/castor-nix/castor/store/castore"
)

var bucket = []byte("castore.directories")

// Service stores directories in a bbolt bucket.
type Service struct {
	db *bolt.DB
}

var _ castore.DirectoryService = (*Service)(nil)

// New uses db (which the caller closes), creating the bucket if needed.
func New(db *bolt.DB) (*Service, error) {
	if !db.IsReadOnly() {
		if err := db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(bucket)
			return err
		}); err != nil {
			return nil, fmt.Errorf("create directory bucket: %w", err)
		}
	}
	return &Service{db: db}, nil
}

// GetDirectory implements castore.DirectoryGetter. The stored bytes are
// hashed again, so damage to the file is an error, not a wrong tree.
func (s *Service) GetDirectory(ctx context.Context, d castore.Digest) (*castore.Directory, error) {
	var enc []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		// The empty directory encodes to zero bytes: keep a non-nil slice.
		if v := b.Get(d[:]); v != nil {
			enc = make([]byte, len(v))
			copy(enc, v)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if enc == nil {
		return nil, fmt.Errorf("directory %s: %w", d, castore.ErrNotFound)
	}
	if castore.Sum(enc) != d {
		return nil, fmt.Errorf("directory %s: stored bytes hash differently: %w", d, castore.ErrCorrupt)
	}
	dir, err := castore.UnmarshalDirectory(enc)
	if err != nil {
		return nil, fmt.Errorf("directory %s: %w: %w", d, castore.ErrCorrupt, err)
	}
	return dir, nil
}

// GetClosure implements castore.DirectoryGetter.
func (s *Service) GetClosure(ctx context.Context, root castore.Digest) iter.Seq2[*castore.Directory, error] {
	return castore.WalkClosure(ctx, s.GetDirectory, root)
}

// NewDirectoryPutter implements castore.DirectoryIngester: the closure is
// validated as it arrives and written in one transaction at Close.
func (s *Service) NewDirectoryPutter(ctx context.Context) castore.DirectoryPutter {
	return castore.NewClosurePutter(s, func(ctx context.Context, dirs []castore.DigestedDirectory) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucket)
			for _, d := range dirs {
				if b.Get(d.Digest[:]) != nil {
					continue
				}
				if err := b.Put(d.Digest[:], d.Marshal()); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// Corrupt overwrites the stored bytes of d, for tests of damage handling.
func (s *Service) Corrupt(d castore.Digest, enc []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(d[:], enc) })
}
