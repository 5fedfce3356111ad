package compose

import (
	"fmt"
	"net/url"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/objectstore"
)

// openObjectStore opens the chunked local blob store at the URL's path.
// Query parameters: layout=packs (default) or files (a file per chunk,
// Snix's layout); compression=auto (default), fastest, default or none.
func openObjectStore(o *opener, u *url.URL) (castore.BlobService, error) {
	var opts []objectstore.Option
	q := u.Query()
	for key := range q {
		if key != "layout" && key != "compression" {
			return nil, fmt.Errorf("blob service URL %q: unknown parameter %q (want layout or compression)", u.Redacted(), key)
		}
	}
	switch l := q.Get("layout"); l {
	case "", "packs":
	case "files":
		opts = append(opts, objectstore.WithLayout(objectstore.LayoutFiles))
	default:
		return nil, fmt.Errorf("blob service URL %q: layout %q: want packs or files", u.Redacted(), l)
	}
	comp := map[string]objectstore.Compression{
		"": objectstore.CompressAuto, "auto": objectstore.CompressAuto,
		"fastest": objectstore.CompressFastest, "default": objectstore.CompressDefault,
		"none": objectstore.CompressNone,
	}
	c, ok := comp[q.Get("compression")]
	if !ok {
		return nil, fmt.Errorf("blob service URL %q: compression %q: want auto, fastest, default or none", u.Redacted(), q.Get("compression"))
	}
	opts = append(opts, objectstore.WithCompression(c))
	s, err := objectstore.Open(u.Path, opts...)
	if err != nil {
		return nil, err
	}
	o.svc.closers = append(o.svc.closers, s)
	return s, nil
}
