package boltinfo

import (
	"context"
	"fmt"
	"iter"

	bolt "go.etcd.io/bbolt"

	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

var bucket = []byte("store.pathinfos")

// Service stores path infos in a bbolt bucket.
type Service struct {
	db *bolt.DB
}

var _ pathinfo.Service = (*Service)(nil)

// New uses db (which the caller closes), creating the bucket if needed.
func New(db *bolt.DB) (*Service, error) {
	if !db.IsReadOnly() {
		if err := db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(bucket)
			return err
		}); err != nil {
			return nil, fmt.Errorf("create path info bucket: %w", err)
		}
	}
	return &Service{db: db}, nil
}

// Get implements pathinfo.Getter.
func (s *Service) Get(ctx context.Context, digest [nixpath.DigestSize]byte) (*pathinfo.PathInfo, error) {
	var enc []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucket); b != nil {
			if v := b.Get(digest[:]); v != nil {
				enc = append([]byte(nil), v...)
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if enc == nil {
		return nil, fmt.Errorf("%s: %w", nixpath.StorePath{Digest: digest}.HashPart(), pathinfo.ErrNotFound)
	}
	p, err := pathinfo.Unmarshal(enc)
	if err != nil {
		return nil, fmt.Errorf("stored path info %s: %w", nixpath.StorePath{Digest: digest}.HashPart(), err)
	}
	return p, nil
}

// Put implements pathinfo.Putter; the write is durable when Put returns.
func (s *Service) Put(ctx context.Context, p *pathinfo.PathInfo) (*pathinfo.PathInfo, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	enc := p.Marshal()
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put(p.StorePath.Digest[:], enc)
	}); err != nil {
		return nil, fmt.Errorf("put path info %s: %w", p.StorePath, err)
	}
	return p, nil
}

// List implements pathinfo.Lister. It reads in batches, so a long listing
// does not hold one read transaction (and the database's growth) open.
func (s *Service) List(ctx context.Context) iter.Seq2[*pathinfo.PathInfo, error] {
	return func(yield func(*pathinfo.PathInfo, error) bool) {
		const batch = 512
		var after []byte
		for {
			var encs [][]byte
			if err := s.db.View(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucket)
				if b == nil {
					return nil
				}
				c := b.Cursor()
				k, v := c.First()
				if after != nil {
					k, v = c.Seek(after)
					if k != nil && string(k) == string(after) {
						k, v = c.Next()
					}
				}
				for ; k != nil && len(encs) < batch; k, v = c.Next() {
					encs = append(encs, append([]byte(nil), v...))
					after = append(after[:0], k...)
				}
				return nil
			}); err != nil {
				yield(nil, err)
				return
			}
			for _, enc := range encs {
				if err := ctx.Err(); err != nil {
					yield(nil, err)
					return
				}
				p, err := pathinfo.Unmarshal(enc)
				if !yield(p, err) || err != nil {
					return
				}
			}
			if len(encs) < batch {
				return
			}
		}
	}
}
