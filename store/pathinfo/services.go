package pathinfo

import (
	"context"
	"encoding/base64"
	"iter"

	"github.com/castor-nix/castor/store/nixpath"
)

// Getter looks up path infos.
type Getter interface {
	// Get returns the PathInfo whose store path has this digest, or an
	// error wrapping ErrNotFound. The result may be shared: do not modify.
	Get(ctx context.Context, digest [nixpath.DigestSize]byte) (*PathInfo, error)
}

// Putter records path infos.
type Putter interface {
	// Put validates and stores p, replacing any PathInfo for the same
	// store path, and returns what was stored. The caller must have put
	// p's whole tree in the castore first.
	Put(ctx context.Context, p *PathInfo) (*PathInfo, error)
}

// Lister enumerates path infos.
type Lister interface {
	// List yields every PathInfo, in no particular order. Stop iterating
	// to cancel; an error ends the sequence.
	List(ctx context.Context) iter.Seq2[*PathInfo, error]
}

// Service is the whole path-info role set.
type Service interface {
	Getter
	Putter
	Lister
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
