package objectstore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/castor-nix/castor/store/castore"
)

// Chunk sizes of the FastCDC chunker (Snix's: average 256 KiB, minimum
// half, maximum double). They decide where chunk boundaries fall, so
// changing them changes which chunks two versions of a file share (never a
// blob's digest).
const (
	MinChunkSize = 128 << 10
	AvgChunkSize = 256 << 10
	MaxChunkSize = 512 << 10
)

// MaxReadChunkSize bounds the decompressed size of a chunk this store
// reads, its own or one another writer put there. It keeps a damaged or
// hostile chunk file from making a reader allocate without limit.
const MaxReadChunkSize = 16 << 20

// ErrClosed is returned by operations on a closed Store.
var ErrClosed = errors.New("objectstore: store closed")

var errStoreClosed = ErrClosed

// Compression chooses how chunk files are encoded. Every choice writes
// standard zstd frames, readable by Snix and the zstd tool.
type Compression int

const (
	// CompressAuto puts speed first: chunks are compressed, with zstd's
	// fastest level, only on cores the writers leave spare (hashing,
	// chunking and reading keep about two busy: GOMAXPROCS-2 compress at
	// most), chunks of large blobs only when no chunk is waiting. The
	// others are stored raw, as a zstd frame of stored blocks, which costs
	// a memcpy and is also the fastest to read. Adding files thus runs at
	// hashing and chunking speed; on a 2-core machine nothing is
	// compressed (the store then takes about the space Nix's does).
	CompressAuto Compression = iota
	// CompressFastest always uses zstd's fastest level (about 250 MB/s per
	// core on binaries here, ratio ~0.35).
	CompressFastest
	// CompressDefault always uses zstd's default level: slower, slightly
	// smaller.
	CompressDefault
	// CompressNone stores every chunk raw.
	CompressNone
)

// SyncMode chooses what Commit does for durability against power loss.
// Against a crashed or killed process no syncing is needed: files appear
// by atomic rename, and a blob's chunk list only after all its chunks.
type SyncMode int

const (
	// SyncNone never syncs. After a power loss or OS crash, chunk files
	// committed in the last seconds may be empty or partial even though
	// their blob is visible; reads then fail with ErrCorrupt (never wrong
	// bytes), the damaged chunk is moved to <root>/corrupt/, and adding
	// the content again repairs the blob. Callers that record blobs
	// elsewhere (path infos) call Store.Sync first, once per batch.
	// Nix itself does not sync store contents either.
	SyncNone SyncMode = iota
	// SyncCommit makes each Commit durable: one syncfs(2) before the chunk
	// list is renamed in (so chunks reach the disk first) and an fsync of
	// the list's directory after. It costs a disk flush per blob: see the
	// package documentation for figures.
	SyncCommit
)

// levelOf returns the zstd level a Compression compresses with.
func levelOf(c Compression) zstd.EncoderLevel {
	if c == CompressDefault {
		return zstd.SpeedDefault
	}
	return zstd.SpeedFastest
}

// config holds the options of Open.
type config struct {
	compression Compression
	layout      Layout
	sync        SyncMode
	cacheBytes  int64
	readAhead   int
	workers     int
	tempMaxAge  time.Duration
	log         *slog.Logger
	packTarget  int64 // tests make it small
}

// Option configures Open.
type Option func(*config)

// WithCompression sets how chunks are encoded (default CompressAuto).
func WithCompression(c Compression) Option { return func(o *config) { o.compression = c } }

// WithSync sets the durability of Commit (default SyncNone).
func WithSync(m SyncMode) Option { return func(o *config) { o.sync = m } }

// WithCacheSize bounds the memory of the decompressed-chunk cache shared by
// all readers of the Store (default 32 MiB). Zero disables the cache, and
// with it read-ahead.
func WithCacheSize(bytes int64) Option { return func(o *config) { o.cacheBytes = max(0, bytes) } }

// WithReadAhead sets how many chunks a sequential reader fetches ahead in
// the background (default 4, about 1.2 MiB). Zero disables read-ahead.
func WithReadAhead(chunks int) Option { return func(o *config) { o.readAhead = max(0, chunks) } }

// WithWorkers sets how many goroutines of a large blob's writer hash,
// compress and write chunks (default GOMAXPROCS).
func WithWorkers(n int) Option { return func(o *config) { o.workers = max(1, n) } }

// WithTempMaxAge sets the age past which Open removes temporary files of
// other writers (default one hour). Temporary files of dead processes of
// the same pid namespace are removed at once regardless.
func WithTempMaxAge(d time.Duration) Option { return func(o *config) { o.tempMaxAge = d } }

// WithLogger sets where the store logs damage it finds (default
// slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *config) { o.log = l } }

// Store is a castore.BlobService keeping blobs as chunk files under one
// directory, in Snix's object-store layout. Its methods are safe for
// concurrent use, also with other processes using the same directory.
type Store struct {
	root  string
	cfg   config
	codec *codec
	cache *chunkCache
	temps tempNames
	log   *slog.Logger
	packs *packSet

	// Read-ahead loads run in the background: bgSem bounds how many at
	// once, bgWG lets Close wait for them, and bgMu orders starting one
	// (read lock, closed still false) before Close's wait (write lock).
	bgMu   sync.RWMutex
	bgWG   sync.WaitGroup
	bgSem  chan struct{}
	bgStop chan struct{} // closed by Close

	// compressSlots bounds the large-blob workers compressing at once
	// under CompressAuto (see mayCompress).
	compressSlots chan struct{}

	closed atomic.Bool

	// published counts files this process renamed into place; synced is
	// the count the last successful Sync covered.
	published, synced atomic.Int64
	// syncs counts syncfs calls (tests check Sync skips clean stores).
	syncs atomic.Int64

	chunkShards, blobShards shardSet

	stats storeStats
	hooks hooks
}

type storeStats struct {
	chunksWritten, chunksSkipped, bytesIn, bytesStored atomic.Int64
}

// Stats counts what the store's writers did since Open.
type Stats struct {
	// ChunksWritten and ChunksSkipped count chunk files written, and
	// chunks not written because they were already stored.
	ChunksWritten, ChunksSkipped int64
	// BytesIn is the size of the chunks written, BytesStored that of
	// their files.
	BytesIn, BytesStored int64
}

// Stats returns the writers' counters.
func (s *Store) Stats() Stats {
	return Stats{
		ChunksWritten: s.stats.chunksWritten.Load(),
		ChunksSkipped: s.stats.chunksSkipped.Load(),
		BytesIn:       s.stats.bytesIn.Load(),
		BytesStored:   s.stats.bytesStored.Load(),
	}
}

// hooks let tests observe and interrupt the store at chosen points (crash
// tests kill the process there). Nil in production.
type hooks struct {
	beforeRename func(path string) // a temporary file is written, not yet renamed to path
	afterPublish func(path string) // path was renamed into place
}

var _ castore.BlobService = (*Store)(nil)

// Open opens the store rooted at dir, creating the directory and its
// layout when missing, and removes temporary files left by dead writers.
func Open(dir string, opts ...Option) (*Store, error) {
	cfg := config{
		compression: CompressAuto,
		cacheBytes:  32 << 20,
		readAhead:   4,
		workers:     runtime.GOMAXPROCS(0),
		tempMaxAge:  time.Hour,
		log:         slog.Default(),
		packTarget:  defaultPackTarget,
	}
	for _, o := range opts {
		o(&cfg)
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("objectstore: %w", err)
	}
	for _, d := range []string{chunksDir, blobsDir, tmpDir, packsDir} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, fmt.Errorf("objectstore: %w", err)
		}
	}
	ns := pidNamespace()
	if n, err := cleanTemp(filepath.Join(root, tmpDir), ns, cfg.tempMaxAge, time.Now()); err != nil {
		return nil, fmt.Errorf("objectstore: clean temporary files: %w", err)
	} else if n > 0 {
		cfg.log.Info("objectstore: removed temporary files of dead writers", "dir", root, "count", n)
	}
	c, err := newCodec(levelOf(cfg.compression))
	if err != nil {
		return nil, fmt.Errorf("objectstore: %w", err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	s := &Store{
		root:   root,
		cfg:    cfg,
		codec:  c,
		cache:  newChunkCache(cfg.cacheBytes),
		log:    cfg.log,
		bgSem:  make(chan struct{}, max(2, runtime.GOMAXPROCS(0))),
		bgStop: make(chan struct{}),

		compressSlots: make(chan struct{}, max(0, runtime.GOMAXPROCS(0)-2)),
	}
	s.temps = tempNames{
		dir: filepath.Join(root, tmpDir),
		prefix: strconv.FormatUint(ns, 10) + "-" + strconv.Itoa(os.Getpid()) + "-" +
			strconv.FormatUint(binary.LittleEndian.Uint64(rnd[:]), 36) + "-",
	}
	s.packs = newPackSet(s)
	if _, err := s.packs.scan(); err != nil {
		return nil, err
	}
	return s, nil
}

// Root returns the store's directory.
func (s *Store) Root() string { return s.root }

// Close seals the open pack, stops read-ahead and makes further
// operations fail with ErrClosed. Writers not yet committed fail their
// Commit; readers fail their next read of a chunk not in memory. Close
// does not wait for them. It returns an error if the open pack could not
// be sealed: its blobs are then lost.
func (s *Store) Close() error {
	s.bgMu.Lock()
	wasClosed := s.closed.Swap(true)
	s.bgMu.Unlock()
	if wasClosed {
		return nil
	}
	close(s.bgStop)
	s.bgWG.Wait()
	if err := s.packs.flush(); err != nil {
		return fmt.Errorf("objectstore: close: %w", err)
	}
	return nil
}

// Sync makes every blob committed so far, by any writer of the file
// system, durable and visible to other processes: it seals the open pack,
// then runs one syncfs(2) of the file system holding the store. Callers
// with SyncNone call it before recording elsewhere (a path info, a
// database) that the blobs exist.
func (s *Store) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.packs.flush(); err != nil {
		return fmt.Errorf("objectstore: sync: %w", err)
	}
	// Nothing written since the last Sync (a path whose blobs were all
	// there already): no flush. Files of other processes are theirs to
	// sync.
	n := s.published.Load()
	if n == s.synced.Load() {
		return nil
	}
	if err := s.syncfs(); err != nil {
		return err
	}
	for {
		old := s.synced.Load()
		if old >= n || s.synced.CompareAndSwap(old, n) {
			return nil
		}
	}
}

func (s *Store) syncfs() error {
	fd, err := unix.Open(s.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("objectstore: sync: %w", &os.PathError{Op: "open", Path: s.root, Err: err})
	}
	defer unix.Close(fd)
	s.syncs.Add(1)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("objectstore: sync: %w", &os.PathError{Op: "syncfs", Path: s.root, Err: err})
	}
	return nil
}

// fsyncDir flushes the directory entry of path to disk.
func fsyncDir(path string) error {
	dir := filepath.Dir(path)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return &os.PathError{Op: "fsync", Path: dir, Err: err}
	}
	return nil
}

// StatBlob implements castore.BlobStater. It looks only at blob files
// (chunk lists): a chunk that is not also a committed blob is not found.
func (s *Store) StatBlob(ctx context.Context, d castore.Digest) (*castore.BlobStat, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	// A chunk in a pack is a one-chunk blob: no chunk list to look for.
	if loc, ok := s.packs.lookup(d); ok {
		return &castore.BlobStat{Size: uint64(loc.size)}, nil
	}
	path := s.blobPath(d)
	size, ok, err := statSize(path)
	if err != nil {
		return nil, fmt.Errorf("objectstore: stat blob %s: %w", d, err)
	}
	if !ok {
		// No chunk list: a one-chunk blob is its chunk file alone.
		n, err := s.singleChunkSize(d)
		if errors.Is(err, errNoChunk) {
			if s.quarantined(d) {
				return nil, fmt.Errorf("blob %s: %w: its chunk was damaged and moved aside", d, castore.ErrCorrupt)
			}
			return nil, fmt.Errorf("blob %s: %w", d, castore.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		return &castore.BlobStat{Size: uint64(n)}, nil
	}
	if size == 0 {
		n, err := s.singleChunkSize(d)
		if err != nil {
			return nil, err
		}
		return &castore.BlobStat{Size: uint64(n)}, nil
	}
	refs, err := s.readChunkList(d)
	if err != nil {
		return nil, err
	}
	if refs == nil {
		n, err := s.singleChunkSize(d)
		if err != nil {
			return nil, err
		}
		return &castore.BlobStat{Size: uint64(n)}, nil
	}
	st := &castore.BlobStat{}
	if len(refs) == 1 && refs[0].digest == d {
		// Snix's way of writing a one-chunk blob.
		st.Size = uint64(refs[0].size)
		return st, nil
	}
	st.Chunks = make([]castore.ChunkMeta, len(refs))
	for i, r := range refs {
		st.Chunks[i] = castore.ChunkMeta{Digest: r.digest, Size: uint64(r.size)}
		st.Size += uint64(r.size)
	}
	return st, nil
}

// errNoChunk marks a missing chunk file in singleChunkSize's errors.
var errNoChunk = errors.New("no chunk file")

// singleChunkSize returns the size of the blob d stored as one chunk: from
// the cache, or the content size in the chunk's frame header, or, for
// frames that do not declare it, by decompressing the chunk.
func (s *Store) singleChunkSize(d castore.Digest) (int64, error) {
	if b, ok := s.cache.peek(d); ok {
		return int64(len(b)), nil
	}
	if loc, ok, err := s.packs.find(d); err != nil {
		return 0, err
	} else if ok {
		return int64(loc.size), nil
	}
	var head [32]byte
	n, err := readHead(s.chunkPath(d), head[:])
	if err == errNoFile {
		return 0, fmt.Errorf("blob %s: %w: its chunk file is missing (%w)", d, castore.ErrCorrupt, errNoChunk)
	}
	if err != nil {
		return 0, fmt.Errorf("objectstore: blob %s: %w", d, err)
	}
	if size, ok := contentSize(head[:n]); ok && size <= MaxReadChunkSize {
		return int64(size), nil
	}
	b, err := s.loadChunk(d, -1)
	if err != nil {
		return 0, err
	}
	return int64(len(b)), nil
}

// readChunkList reads and parses the blob file of d. It returns an error
// wrapping castore.ErrNotFound when there is none.
func (s *Store) readChunkList(d castore.Digest) ([]chunkRef, error) {
	b, err := readFile(s.blobPath(d))
	if err == errNoFile {
		return nil, fmt.Errorf("blob %s: %w", d, castore.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("objectstore: blob %s: %w", d, err)
	}
	defer putBuf(b)
	return parseChunkList(d, b)
}

// OpenBlob implements castore.BlobOpener. Besides committed blobs it opens
// single chunks by their own digest, as Snix's Read does. A blob stored as
// one chunk is read and verified here, so its damage shows as an
// ErrCorrupt from OpenBlob; larger blobs load chunks as they are read.
func (s *Store) OpenBlob(ctx context.Context, d castore.Digest) (castore.BlobReader, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	// Most blobs are one chunk: try the chunk file first, one open.
	data, err := s.cache.get(d, func() ([]byte, error) { return s.readChunk(d, -1) })
	if err == nil {
		return newBytesReader(data), nil
	}
	if !errors.Is(err, errNoFile) {
		return nil, err
	}
	refs, err := s.readChunkList(d)
	if errors.Is(err, castore.ErrNotFound) && s.quarantined(d) {
		return nil, fmt.Errorf("blob %s: %w: its chunk was damaged and moved aside; write the content again to repair it", d, castore.ErrCorrupt)
	}
	if err != nil {
		return nil, err
	}
	if refs == nil {
		// An empty chunk list names the blob's own chunk, which is gone.
		return nil, fmt.Errorf("blob %s: %w: its chunk file is missing", d, castore.ErrCorrupt)
	}
	return s.newChunkedReader(d, refs), nil
}

// quarantined reports whether a damaged chunk file of digest d was moved
// aside. A one-chunk blob is only its chunk file, so this is how a damaged
// one stays an ErrCorrupt instead of turning into a plain miss. Only
// looked at on a miss.
func (s *Store) quarantined(d castore.Digest) bool {
	for _, name := range []string{d.Hex(), d.Hex() + recordMarkerSuffix} {
		if _, err := os.Lstat(filepath.Join(s.root, quarantineDir, name)); err == nil {
			return true
		}
	}
	return false
}

// loadChunk returns chunk d, verified, through the cache. size is its
// expected size, or -1 when unknown. A missing chunk file is damage here:
// callers know the chunk belongs to a committed blob.
func (s *Store) loadChunk(d castore.Digest, size int64) ([]byte, error) {
	b, err := s.cache.get(d, func() ([]byte, error) { return s.readChunk(d, size) })
	if errors.Is(err, errNoFile) {
		return nil, fmt.Errorf("chunk %s: %w: chunk file missing", d, castore.ErrCorrupt)
	}
	return b, err
}

// readChunk reads, decompresses and verifies chunk d from its file. It
// returns errNoFile (unwrapped) when there is no such file, and moves a
// damaged file aside so that writing the content again repairs it.
func (s *Store) readChunk(d castore.Digest, size int64) ([]byte, error) {
	if s.closed.Load() {
		return nil, errStoreClosed
	}
	if loc, ok := s.packs.lookup(d); ok && loc.pack != nil {
		return s.packs.readPacked(loc, size)
	}
	path := s.chunkPath(d)
	frame, raw, err := readChunkFile(path, size)
	if err == errNoFile {
		// Perhaps in a pack another process sealed since we looked.
		if loc, ok, err := s.packs.find(d); err != nil {
			return nil, err
		} else if ok && loc.pack != nil {
			return s.packs.readPacked(loc, size)
		}
		return nil, errNoFile
	}
	if err != nil {
		return nil, fmt.Errorf("objectstore: chunk %s: %w", d, err)
	}
	if raw {
		// Read straight into place; only the digest is left to check.
		if castore.Sum(frame) != d {
			err := fmt.Errorf("chunk %s: %w: contents do not match the digest", d, castore.ErrCorrupt)
			s.quarantine(d, path, err)
			return nil, err
		}
		return frame, nil
	}
	data, err := s.codec.decode(frame, d, size)
	if errors.Is(err, castore.ErrCorrupt) && size >= 0 {
		// The chunk may be fine and the chunk list that gave the size
		// wrong: then the chunk stays (other blobs may share it).
		if whole, err2 := s.codec.decode(frame, d, -1); err2 == nil {
			putBuf(frame)
			return nil, fmt.Errorf("chunk %s: %w: the chunk list says %d bytes, the chunk has %d", d, castore.ErrCorrupt, size, len(whole))
		}
	}
	putBuf(frame)
	if errors.Is(err, castore.ErrCorrupt) {
		s.quarantine(d, path, err)
	}
	return data, err
}

// quarantine moves a damaged chunk file to <root>/corrupt/, so that the
// next writer of that content, which skips chunks that exist, writes it
// anew. Writers never replace a chunk that exists, so the file moved is
// the one found damaged.
func (s *Store) quarantine(d castore.Digest, path string, cause error) {
	s.packs.forget(d)
	dst := filepath.Join(s.root, quarantineDir, filepath.Base(path))
	err := renameMkdir(path, dst)
	if err != nil && errors.Is(err, unix.ENOENT) {
		return // another reader moved it first
	}
	s.log.Error("objectstore: damaged chunk moved aside", "path", path, "to", dst, "cause", cause, "move_error", err)
}

// check fails fast when the context is done or the store closed.
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return errStoreClosed
	}
	return ctx.Err()
}
