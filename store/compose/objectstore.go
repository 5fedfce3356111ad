package compose

import (
	"fmt"
	"net/url"

	"github.com/castor-nix/castor/store/castore"
)

// openObjectStore opens the chunked local blob store. Until that backend
// lands, the embedded default cannot keep blobs.
func openObjectStore(o *opener, u *url.URL) (castore.BlobService, error) {
	return nil, fmt.Errorf("blob service %s: the chunked local blob store is not built yet", u)
}
