package binarycache

import (
	"context"
	_ "crypto/md5" // hash algorithms FileHash may name
	_ "crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// ErrNotSupported: binary caches can be read, not written or listed here.
var ErrNotSupported = errors.New("not supported by a binary cache")

// Service is a pathinfo.Service over a Nix binary cache. Get fetches and
// ingests; Put and List are not supported.
type Service struct {
	fetch fetcher
	// trusted keys; nil with acceptUnsigned=false refuses everything.
	trusted        []PublicKey
	acceptUnsigned bool
	blobs          castore.BlobIngester
	dirs           castore.DirectoryService

	infoOnce sync.Once
	infoErr  error
}

var _ pathinfo.Service = (*Service)(nil)

// New opens a binary cache by URL (see the package comment), ingesting
// NARs into blobs and dirs.
func New(raw string, blobs castore.BlobIngester, dirs castore.DirectoryService) (*Service, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("binary cache URL %q: %w", raw, err)
	}
	s := &Service{blobs: blobs, dirs: dirs}
	q, err := parseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("binary cache URL %q: %w", raw, err)
	}
	for _, v := range q["trusted-public-keys"] {
		for _, k := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' }) {
			pk, err := ParsePublicKey(k)
			if err != nil {
				return nil, fmt.Errorf("binary cache URL %q: trusted-public-keys: %w", raw, err)
			}
			s.trusted = append(s.trusted, pk)
		}
	}
	switch q.Get("unsigned") {
	case "", "refuse":
	case "accept":
		s.acceptUnsigned = true
	default:
		return nil, fmt.Errorf("binary cache URL %q: unsigned=%q: want accept or refuse", raw, q.Get("unsigned"))
	}
	if len(s.trusted) == 0 && !s.acceptUnsigned {
		return nil, fmt.Errorf("binary cache URL %q: give trusted-public-keys=NAME:KEY (from the cache's public key file), or unsigned=accept to skip signature checks", raw)
	}
	u.RawQuery = ""
	switch u.Scheme {
	case "nix+file":
		if u.Host != "" {
			return nil, fmt.Errorf("binary cache URL %q: want nix+file:///absolute/dir", raw)
		}
		s.fetch = &fileFetcher{dir: u.Path}
	case "nix+http", "nix+https":
		u.Scheme = strings.TrimPrefix(u.Scheme, "nix+")
		s.fetch = newHTTPFetcher(u)
	default:
		return nil, fmt.Errorf("binary cache URL %q: scheme must be nix+http, nix+https or nix+file", raw)
	}
	return s, nil
}

// parseQuery splits a URL query without turning '+' into a space: keys are
// base64 and users paste them into URLs as they are.
func parseQuery(raw string) (url.Values, error) {
	q := url.Values{}
	for _, kv := range strings.Split(raw, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, err := url.PathUnescape(k)
		if err != nil {
			return nil, err
		}
		v, err = url.PathUnescape(v)
		if err != nil {
			return nil, err
		}
		q.Add(k, v)
	}
	return q, nil
}

// String names the cache.
func (s *Service) String() string { return s.fetch.String() }

// checkCacheInfo reads nix-cache-info once; a cache for another store
// directory is refused.
func (s *Service) checkCacheInfo(ctx context.Context) error {
	s.infoOnce.Do(func() {
		data, err := readSmall(ctx, s.fetch, "nix-cache-info", 64<<10)
		if errors.Is(err, errNotFound) {
			s.infoErr = fmt.Errorf("%s has no nix-cache-info: is it a Nix binary cache?", s.fetch)
			return
		}
		if err != nil {
			s.infoErr = err
			return
		}
		ci, err := ParseCacheInfo(data)
		if err != nil {
			s.infoErr = fmt.Errorf("%s: %w", s.fetch, err)
			return
		}
		if ci.StoreDir != nixpath.StoreDir {
			s.infoErr = fmt.Errorf("%s serves store %s, not %s", s.fetch, ci.StoreDir, nixpath.StoreDir)
		}
	})
	if s.infoErr != nil && ctx.Err() == nil && isTransient(s.infoErr) {
		// Let a later lookup retry a transient failure.
		err := s.infoErr
		s.infoOnce = sync.Once{}
		return err
	}
	return s.infoErr
}

// NarInfo fetches, parses and checks the narinfo of a store path digest:
// it must name that digest and carry a valid signature by a trusted key.
func (s *Service) NarInfo(ctx context.Context, digest [nixpath.DigestSize]byte) (*NarInfo, error) {
	if err := s.checkCacheInfo(ctx); err != nil {
		return nil, err
	}
	hashPart := nixpath.StorePath{Digest: digest}.HashPart()
	data, err := readSmall(ctx, s.fetch, hashPart+".narinfo", maxNarInfoSize)
	if errors.Is(err, errNotFound) {
		return nil, fmt.Errorf("%s in %s: %w", hashPart, s.fetch, pathinfo.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	ni, err := ParseNarInfo(data)
	if err != nil {
		return nil, fmt.Errorf("%s/%s.narinfo: %w", s.fetch, hashPart, err)
	}
	if ni.StorePath.Digest != digest {
		return nil, fmt.Errorf("%s/%s.narinfo: %w: it describes %s", s.fetch, hashPart, ErrInvalid, ni.StorePath)
	}
	if !s.acceptUnsigned {
		if err := VerifySignatures(s.trusted, ni.Fingerprint(), ni.Signatures); err != nil {
			return nil, fmt.Errorf("%s from %s: %w", ni.StorePath.Absolute(), s.fetch, err)
		}
	}
	return ni, nil
}

// Get implements pathinfo.Getter: narinfo, then the NAR into the castore.
func (s *Service) Get(ctx context.Context, digest [nixpath.DigestSize]byte) (*pathinfo.PathInfo, error) {
	return s.Fetch(ctx, digest, nil)
}

// Fetch is Get with a progress callback, told the number of compressed
// bytes read as they arrive.
func (s *Service) Fetch(ctx context.Context, digest [nixpath.DigestSize]byte, progress func(n int64)) (*pathinfo.PathInfo, error) {
	ni, err := s.NarInfo(ctx, digest)
	if err != nil {
		return nil, err
	}
	var root castore.Node
	for attempt := 0; ; attempt++ {
		root, err = s.ingest(ctx, ni, progress)
		if err == nil || !isTransient(err) || attempt == 2 || ctx.Err() != nil {
			break
		}
		slog.Warn("NAR download failed, retrying", "path", ni.StorePath.Absolute(), "error", err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s from %s: %w", ni.StorePath.Absolute(), s.fetch, err)
	}
	info := &pathinfo.PathInfo{
		StorePath:  ni.StorePath,
		Node:       root,
		References: ni.References,
		NarSize:    ni.NarSize,
		NarSHA256:  ni.narSHA256(),
		Signatures: ni.Signatures,
		Deriver:    ni.Deriver,
		CA:         ni.CA,
	}
	info.SortReferences()
	if err := info.Validate(); err != nil {
		return nil, err
	}
	return info, nil
}

// ingest downloads, decompresses and ingests the NAR, checking FileSize,
// FileHash, NarSize and NarHash. Directories are committed only after all
// checks pass.
func (s *Service) ingest(ctx context.Context, ni *NarInfo, progress func(int64)) (castore.Node, error) {
	body, err := s.fetch.fetch(ctx, ni.URL)
	if errors.Is(err, errNotFound) {
		return castore.Node{}, fmt.Errorf("its NAR %s is missing from the cache", ni.URL)
	}
	if err != nil {
		return castore.Node{}, err
	}
	defer body.Close()
	file := &checkingReader{r: body, progress: progress}
	// Uncompressed, the file is the NAR: a SHA-256 FileHash is checked
	// against the NAR's hash, computed anyway, instead of hashing the
	// same bytes twice (a fifth of the CPU time of such a copy).
	fileIsNAR := (ni.Compression == "none" || ni.Compression == "") && ni.FileHash != nil && ni.FileHash.Algo() == nixhash.SHA256
	if ni.FileHash != nil && !fileIsNAR {
		file.h = ni.FileHash.Algo().Func().New()
	}
	dec, err := decompress(ni.Compression, file)
	if err != nil {
		return castore.Node{}, err
	}
	defer dec.Close()
	staged := &stagedDirectories{lookup: s.dirs}
	root, narSize, narSHA, err := nar.Ingest(ctx, dec, s.blobs, staged)
	if err != nil {
		dec.Close() // stop a decompressor process before looking at file
		if ferr := file.failure(); ferr != nil {
			// The download broke, not the NAR.
			return castore.Node{}, &transientError{fmt.Errorf("download cut short: %w", ferr)}
		}
		return castore.Node{}, err
	}
	// Drain what the decompressor may still hold back (a trailer) so the
	// file checks see every byte.
	if _, err := io.Copy(io.Discard, dec); err != nil {
		return castore.Node{}, fmt.Errorf("decompress %s: %w", ni.Compression, err)
	}
	fileSize, fileSum := file.result()
	if ni.FileSize != 0 && uint64(fileSize) != ni.FileSize {
		return castore.Node{}, fmt.Errorf("compressed NAR is %d bytes, narinfo says FileSize %d", fileSize, ni.FileSize)
	}
	if fileIsNAR {
		fileSum = narSHA[:]
	}
	if ni.FileHash != nil && !fileIsNAR {
		if got := fileSum; string(got) != string(ni.FileHash.Digest()) {
			return castore.Node{}, fmt.Errorf("compressed NAR hashes to %s, narinfo says FileHash %s",
				nixhash.MustNewHash(ni.FileHash.Algo(), got).Format(nixhash.NixBase32, true), ni.FileHash.Format(nixhash.NixBase32, true))
		}
	}
	if narSize != ni.NarSize {
		return castore.Node{}, fmt.Errorf("NAR is %d bytes, narinfo says NarSize %d", narSize, ni.NarSize)
	}
	if narSHA != ni.narSHA256() {
		return castore.Node{}, fmt.Errorf("NAR hashes to %s, narinfo says NarHash %s", nixpath.FormatSHA256(narSHA), nixpath.FormatSHA256(ni.narSHA256()))
	}
	if fileIsNAR && string(fileSum) != string(ni.FileHash.Digest()) {
		return castore.Node{}, fmt.Errorf("uncompressed NAR hashes to %s, narinfo says FileHash %s",
			nixhash.MustNewHash(ni.FileHash.Algo(), fileSum).Format(nixhash.NixBase32, true), ni.FileHash.Format(nixhash.NixBase32, true))
	}
	if err := staged.commit(ctx, s.dirs); err != nil {
		return castore.Node{}, err
	}
	return root, nil
}

// Put implements pathinfo.Putter: not supported.
func (s *Service) Put(ctx context.Context, p *pathinfo.PathInfo) (*pathinfo.PathInfo, error) {
	return nil, fmt.Errorf("put %s into %s: %w", p.StorePath, s.fetch, ErrNotSupported)
}

// List implements pathinfo.Lister: not supported.
func (s *Service) List(ctx context.Context) iter.Seq2[*pathinfo.PathInfo, error] {
	return func(yield func(*pathinfo.PathInfo, error) bool) {
		yield(nil, fmt.Errorf("list %s: %w", s.fetch, ErrNotSupported))
	}
}

// checkingReader counts and hashes the compressed stream and remembers a
// transport error (to tell a cut download from a bad NAR). A decompressor
// process reads it from its own goroutine, hence the lock.
type checkingReader struct {
	r        io.Reader
	progress func(int64)

	mu  sync.Mutex
	h   hash.Hash // guarded by mu
	n   int64     // guarded by mu
	err error     // guarded by mu
}

func (c *checkingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.mu.Lock()
	if n > 0 {
		c.n += int64(n)
		if c.h != nil {
			c.h.Write(p[:n])
		}
	}
	if err != nil && err != io.EOF {
		c.err = err
	}
	c.mu.Unlock()
	if n > 0 && c.progress != nil {
		c.progress(int64(n))
	}
	return n, err
}

func (c *checkingReader) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *checkingReader) result() (int64, []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.h == nil {
		return c.n, nil
	}
	return c.n, c.h.Sum(nil)
}

// decompressorWaitDelay bounds how long closing a decompressor process
// waits for its input copier, which may sit in a stalled network read.
const decompressorWaitDelay = 2 * time.Second

// stagedDirectories validates a closure like any putter but holds it until
// commit, so a NAR that fails its hash check leaves no directories behind.
type stagedDirectories struct {
	lookup castore.DirectoryGetter
	dirs   []castore.DigestedDirectory
}

func (s *stagedDirectories) NewDirectoryPutter(ctx context.Context) castore.DirectoryPutter {
	return castore.NewClosurePutter(s.lookup, func(ctx context.Context, dirs []castore.DigestedDirectory) error {
		s.dirs = dirs
		return nil
	})
}

func (s *stagedDirectories) commit(ctx context.Context, to castore.DirectoryIngester) error {
	if len(s.dirs) == 0 {
		return nil
	}
	p := to.NewDirectoryPutter(ctx)
	for _, d := range s.dirs {
		if _, err := p.Put(ctx, d.Directory); err != nil {
			p.Abort()
			return err
		}
	}
	_, err := p.Close(ctx)
	return err
}
