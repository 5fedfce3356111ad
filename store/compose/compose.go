package compose

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/castor-nix/castor/store/binarycache"
	"github.com/castor-nix/castor/store/boltdb"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/boltdir"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/pathinfo"
	"github.com/castor-nix/castor/store/pathinfo/boltinfo"
	"github.com/castor-nix/castor/store/pathinfo/layered"
	pimemory "github.com/castor-nix/castor/store/pathinfo/memory"
)

// Layout of the embedded default store inside its directory.
const (
	// BlobDir holds chunks and chunk lists.
	BlobDir = "castore"
	// DBFile holds directories and path infos.
	DBFile = "castor.db"
)

// DataDir returns the default store directory.
func DataDir() string {
	if d := os.Getenv("CASTOR_HOME"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "castor")
	}
	if os.Geteuid() == 0 {
		return "/var/lib/castor"
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "castor")
	}
	return filepath.Join(os.TempDir(), "castor")
}

// Config names each service by URL. Empty fields take the default from
// Store (the embedded store in DataDir() when Store is empty too).
type Config struct {
	// Store names a whole store: memory:// or the directory of an
	// embedded store (file:///DIR or DIR).
	Store string
	// Blobs, Directories and PathInfos override single services.
	Blobs, Directories, PathInfos string
	// Substituters are binary caches (nix+http://, nix+https://,
	// nix+file://) consulted in order for paths the store lacks; what they
	// give is recorded in the store.
	Substituters []string
	// ReadOnly opens bbolt files read-only (shared with other readers).
	ReadOnly bool
}

// Services is an opened store.
type Services struct {
	Blobs       castore.BlobService
	Directories castore.DirectoryService
	PathInfos   pathinfo.Service

	closers []io.Closer
}

// Close releases everything Open opened.
func (s *Services) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i].Close())
	}
	s.closers = nil
	return errors.Join(errs...)
}

// Open opens the services cfg names.
func Open(cfg Config) (*Services, error) {
	base := cfg.Store
	if base == "" {
		base = DataDir()
	}
	blobURL, dirURL, infoURL := cfg.Blobs, cfg.Directories, cfg.PathInfos
	if base == "memory://" || base == "memory:" {
		blobURL, dirURL, infoURL = or(blobURL, "memory://"), or(dirURL, "memory://"), or(infoURL, "memory://")
	} else {
		dir := strings.TrimPrefix(base, "file://")
		if strings.Contains(dir, "://") {
			return nil, fmt.Errorf("store URL %q: want memory://, file:///DIR or a directory", base)
		}
		dir, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		blobURL = or(blobURL, "objectstore+file://"+filepath.Join(dir, BlobDir))
		dirURL = or(dirURL, "bbolt://"+filepath.Join(dir, DBFile))
		infoURL = or(infoURL, "bbolt://"+filepath.Join(dir, DBFile))
	}
	s := &Services{}
	o := &opener{readOnly: cfg.ReadOnly, dbs: map[string]*bolt.DB{}, svc: s}
	var err error
	if s.Blobs, err = o.blobs(blobURL); err != nil {
		s.Close()
		return nil, err
	}
	if s.Directories, err = o.directories(dirURL); err != nil {
		s.Close()
		return nil, err
	}
	if s.PathInfos, err = o.pathInfos(infoURL); err != nil {
		s.Close()
		return nil, err
	}
	s.PathInfos = withBlobSync(s.PathInfos, s.Blobs)
	if len(cfg.Substituters) > 0 {
		far := make([]pathinfo.Getter, len(cfg.Substituters))
		for i, u := range cfg.Substituters {
			bc, err := OpenSubstituter(u, s)
			if err != nil {
				s.Close()
				return nil, err
			}
			far[i] = bc
		}
		s.PathInfos = layered.New(s.PathInfos, far...)
	}
	return s, nil
}

// OpenSubstituter opens a binary cache that ingests into s's castore.
func OpenSubstituter(url string, s *Services) (*binarycache.Service, error) {
	return binarycache.New(url, s.Blobs, s.Directories)
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// opener shares one bbolt handle per file between the services of a store.
type opener struct {
	readOnly bool
	dbs      map[string]*bolt.DB
	svc      *Services
}

func (o *opener) db(u *url.URL) (*bolt.DB, error) {
	path := u.Path
	if u.Host != "" {
		return nil, fmt.Errorf("%s: want bbolt:///absolute/path (three slashes)", u)
	}
	if db, ok := o.dbs[path]; ok {
		return db, nil
	}
	db, err := boltdb.Open(path, o.readOnly)
	if err != nil {
		return nil, err
	}
	o.dbs[path] = db
	o.svc.closers = append(o.svc.closers, db)
	return db, nil
}

func parse(kind, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s service URL %q: %w", kind, raw, err)
	}
	return u, nil
}

func (o *opener) blobs(raw string) (castore.BlobService, error) {
	u, err := parse("blob", raw)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "memory":
		return memory.NewBlobService(), nil
	case "objectstore+file":
		return openObjectStore(o, u)
	}
	return nil, fmt.Errorf("blob service URL %q: unknown scheme (want memory:// or objectstore+file:///DIR)", raw)
}

func (o *opener) directories(raw string) (castore.DirectoryService, error) {
	u, err := parse("directory", raw)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "memory":
		return memory.NewDirectoryService(), nil
	case "bbolt":
		db, err := o.db(u)
		if err != nil {
			return nil, err
		}
		return boltdir.New(db)
	}
	return nil, fmt.Errorf("directory service URL %q: unknown scheme (want memory:// or bbolt:///FILE)", raw)
}

func (o *opener) pathInfos(raw string) (pathinfo.Service, error) {
	u, err := parse("path info", raw)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "memory":
		return pimemory.New(), nil
	case "bbolt":
		db, err := o.db(u)
		if err != nil {
			return nil, err
		}
		return boltinfo.New(db)
	}
	return nil, fmt.Errorf("path info service URL %q: unknown scheme (want memory:// or bbolt:///FILE)", raw)
}
