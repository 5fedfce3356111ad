package compose

import (
	"net/url"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/objectstore"
)

// openObjectStore opens the chunked local blob store at the URL's path.
func openObjectStore(o *opener, u *url.URL) (castore.BlobService, error) {
	s, err := objectstore.Open(u.Path)
	if err != nil {
		return nil, err
	}
	o.svc.closers = append(o.svc.closers, s)
	return s, nil
}
