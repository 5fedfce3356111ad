package objectstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/castor-nix/castor/store/castore"
)

// Pack files. With LayoutPacks (the default) chunks are appended to pack
// files instead of getting a file each: on the ext4 disks measured here a
// created file costs 0.3 ms or more of kernel time (inode allocation
// scans recently freed inodes), and adding a tree of 20k small files spent
// most of its time creating chunk files. A pack holds many chunks and
// costs one create and one rename.
//
// A pack file is
//
//	magic "CSTRPAK1"
//	records: one chunk each, the bytes a chunk file would hold (a zstd frame)
//	index:   entries sorted by digest, each
//	         digest (32) | record offset (8) | record length (4) | chunk size (4)
//	footer:  index offset (8) | entry count (4) | BLAKE3 of the index (32) | magic "CSTRPAK1"
//
// little endian. A pack is written in tmp/ and renamed to packs/<name>.pack
// once complete ("sealed"); a sealed pack never changes. Its records are
// verified against their digests when read, like chunk files; its index
// is checked against the footer's digest when loaded.
//
// Visibility. A chunk appended to the open pack is visible at once to the
// Store that wrote it (its index lives in memory), and to other processes
// once the pack is sealed. Packs are sealed when they reach packTarget
// bytes (64 MiB), by Sync and Close, and before a multi-chunk blob's chunk list is
// published: a chunk list, a file of its own, must never name chunks that
// a crash could lose. A process killed before sealing loses the chunks of
// its open pack (Open removes the temporary file), which nothing outside
// it can refer to: callers record blobs elsewhere only after Sync.
//
// Small packs. A pack starts in memory and gets its file in tmp/ with its
// (spillMax+1)th record or past memPackMax bytes; one sealed with spillMax records or fewer is
// written as chunk files instead (see spillMax), so a Sync per small path
// leaves no pack per path behind, and the index remembers such chunks as
// being in their files.
//
// Damage. A record found damaged is dropped from the index and marked in
// corrupt/<hex digest>.record (a line "<pack name> <offset>"), so that the next
// writer of that content stores it anew; Open skips marked records.

const (
	packsDir = "packs"
	// packSuffix ends the names of sealed packs.
	packSuffix = ".pack"
	// defaultPackTarget is the size at which the open pack is sealed and
	// a new one begun.
	defaultPackTarget = 64 << 20
	// Sizes of the parts of a pack file.
	packEntrySize  = 32 + 8 + 4 + 4
	packFooterSize = 8 + 4 + 32 + 8
	// recordMarkerSuffix ends the names of the files in corrupt/ that
	// mark damaged pack records (after the chunk's hex digest).
	recordMarkerSuffix = ".record"
)

var packMagic = [8]byte{'C', 'S', 'T', 'R', 'P', 'A', 'K', '1'}

// Layout chooses how new chunks are stored. Stores of either layout read
// both.
type Layout int

const (
	// LayoutPacks appends chunks to pack files (see pack.go). Chunk lists
	// of multi-chunk blobs are files, as in LayoutFiles.
	LayoutPacks Layout = iota
	// LayoutFiles writes a file per chunk, Snix's object-store layout.
	LayoutFiles
)

func (l Layout) String() string {
	if l == LayoutFiles {
		return "files"
	}
	return "packs"
}

// WithLayout sets how new chunks are stored (default LayoutPacks).
func WithLayout(l Layout) Option { return func(o *config) { o.layout = l } }

// packFile is one pack: open (being appended to, in tmp/) or sealed.
type packFile struct {
	name string // base name in packs/ once sealed

	// Guarded by packSet.fdMu: the file's current path (in tmp/ while
	// open), its descriptor (nil while closed: sealed packs are opened on
	// demand, see acquire) and the reads using it.
	path string
	f    *os.File
	refs int
	// mem holds the records of a pack not yet given a file: a pack starts
	// in memory and gets its file with its (spillMax+1)th record (see
	// spillMax). Records keep the offsets they will have in the file.
	// Guarded by packSet.fdMu; never changed in place, only appended to.
	mem   []byte
	inMem bool

	// While open, guarded by the lane's mutex: the next free offset and
	// the records placed; guarded by packSet.mu: the records appended.
	off     int64
	records int
	entries []packEntry

	writers  sync.WaitGroup // appends in flight
	sealOnce sync.Once
	sealErr  error
	sealed   bool // guarded by packSet.mu; true for loaded packs
}

// packEntry is one index entry.
type packEntry struct {
	digest   castore.Digest
	off      int64
	frameLen uint32
	size     uint32
}

// packLoc locates a chunk's record. A nil pack means the chunk was
// spilled to its chunk file (see spillMax): the entry remembers that it
// exists and its size.
type packLoc struct {
	pack *packFile
	packEntry
}

// packSet is the Store's view of its packs: an index of every chunk in
// the sealed packs it loaded and in its own open ones.
type packSet struct {
	s   *Store
	dir string

	mu       sync.RWMutex
	index    map[castore.Digest]packLoc
	unsealed map[*packFile]struct{} // open packs

	// lanes hold the packs appends go to, up to one per core: buffered
	// writes to one file serialize on its inode lock, so one shared pack
	// made concurrent writers wait for each other. An append takes the
	// first lane free, so a lone writer fills one pack.
	lanes []lane

	// fdMu guards the descriptors of packs (see acquire); open lists the
	// sealed packs whose descriptor is open.
	fdMu sync.Mutex
	open []*packFile

	// scanMu serializes scans of packs/; known holds the names loaded.
	scanMu    sync.Mutex
	known     map[string]bool
	dirStamp  unix.Timespec
	dirSize   int64
	bad       map[string]map[int64]bool // quarantined records: pack -> offsets
	badLoaded bool
}

// lane is a pack being appended to, and the append under way.
type lane struct {
	mu sync.Mutex
	p  *packFile // nil until needed
}

// maxOpenPacks bounds the descriptors kept open for reading sealed packs.
const maxOpenPacks = 256

func newPackSet(s *Store) *packSet {
	return &packSet{
		s:        s,
		dir:      filepath.Join(s.root, packsDir),
		index:    make(map[castore.Digest]packLoc),
		lanes:    make([]lane, max(1, runtime.GOMAXPROCS(0))),
		unsealed: make(map[*packFile]struct{}),
		known:    make(map[string]bool),
	}
}

// acquire returns p's descriptor, opening it if closed; release gives it
// back. Sealed packs keep their descriptor open until more than
// maxOpenPacks are, when one no read is using is closed: a store of many
// thousands of packs must not run out of descriptors.
func (ps *packSet) acquire(p *packFile) (*os.File, error) {
	ps.fdMu.Lock()
	defer ps.fdMu.Unlock()
	if p.f == nil {
		f, err := os.Open(p.path)
		if err != nil {
			return nil, err
		}
		p.f = f
		ps.open = append(ps.open, p)
		if len(ps.open) > maxOpenPacks {
			ps.closeIdle()
		}
	}
	p.refs++
	return p.f, nil
}

func (ps *packSet) release(p *packFile) {
	ps.fdMu.Lock()
	p.refs--
	ps.fdMu.Unlock()
}

// closeIdle closes the descriptors of sealed packs no read uses, oldest
// opened first, down to half of maxOpenPacks. Called with fdMu held.
func (ps *packSet) closeIdle() {
	kept := ps.open[:0]
	for i, p := range ps.open {
		if p.refs == 0 && len(ps.open)-i+len(kept) > maxOpenPacks/2 {
			p.f.Close()
			p.f = nil
			continue
		}
		kept = append(kept, p)
	}
	clear(ps.open[len(kept):])
	ps.open = kept
}

// lookup returns where chunk d is, if in a pack this Store knows.
func (ps *packSet) lookup(d castore.Digest) (packLoc, bool) {
	ps.mu.RLock()
	loc, ok := ps.index[d]
	ps.mu.RUnlock()
	return loc, ok
}

// find is lookup, and on a miss a scan for packs sealed by others since
// the last scan.
func (ps *packSet) find(d castore.Digest) (packLoc, bool, error) {
	if loc, ok := ps.lookup(d); ok {
		return loc, true, nil
	}
	changed, err := ps.scan()
	if err != nil || !changed {
		return packLoc{}, false, err
	}
	loc, ok := ps.lookup(d)
	return loc, ok, nil
}

// has reports whether chunk d is in a known pack (no scan: writers use it
// to skip what they stored; a duplicate of another process's fresh chunk
// is harmless).
func (ps *packSet) has(d castore.Digest) bool {
	_, ok := ps.lookup(d)
	return ok
}

// append stores an encoded chunk (frame) of size bytes with digest d in
// the open pack, unless a pack holds d already. It returns whether it
// wrote.
func (ps *packSet) append(d castore.Digest, frame []byte, size int) (bool, error) {
	if ps.has(d) {
		return false, nil
	}
	var l *lane
	for i := range ps.lanes {
		if ps.lanes[i].mu.TryLock() {
			l = &ps.lanes[i]
			break
		}
	}
	if l == nil {
		l = &ps.lanes[int(d[0])%len(ps.lanes)]
		l.mu.Lock()
	}
	if l.p == nil {
		p := ps.create()
		ps.mu.Lock()
		ps.unsealed[p] = struct{}{}
		ps.mu.Unlock()
		l.p = p
	}
	p := l.p
	var err error
	if p.inMem && (p.records >= spillMax || p.off+int64(len(frame)) > memPackMax) {
		err = ps.materialize(p)
	}
	off := p.off
	if err == nil {
		p.off += int64(len(frame))
		p.records++
	}
	p.writers.Add(1)
	full := p.off >= ps.s.cfg.packTarget
	if full {
		l.p = nil // appends from now on go to a new pack
	}
	// The lane is held while writing: concurrent writes to one file
	// would only wait for each other in the kernel.
	switch {
	case err != nil:
	case p.inMem:
		ps.fdMu.Lock()
		p.mem = append(p.mem, frame...)
		ps.fdMu.Unlock()
	default:
		_, err = p.f.WriteAt(frame, off)
		if err == nil && off/writebackStep != p.off/writebackStep {
			startWriteback(p.f, p.off/writebackStep*writebackStep-writebackStep, writebackStep)
		}
	}
	l.mu.Unlock()
	if err == nil {
		e := packEntry{digest: d, off: off, frameLen: uint32(len(frame)), size: uint32(size)}
		ps.mu.Lock()
		if _, dup := ps.index[d]; !dup {
			ps.index[d] = packLoc{pack: p, packEntry: e}
			p.entries = append(p.entries, e)
		}
		ps.mu.Unlock()
	}
	p.writers.Done()
	if err != nil {
		return false, fmt.Errorf("write pack %s: %w", p.name, err)
	}
	if full {
		if err := ps.seal(p); err != nil {
			return true, err
		}
	}
	return true, nil
}

// create starts a new open pack, in memory: its file in tmp/ is made by
// materialize when it outgrows spillMax records.
func (ps *packSet) create() *packFile {
	tmp := ps.s.temps.next()
	return &packFile{path: tmp, name: filepath.Base(tmp) + packSuffix, off: int64(len(packMagic)), inMem: true}
}

// materialize gives the in-memory pack p its file in tmp/, holding the
// records so far. Called with p's lane held.
func (ps *packSet) materialize(p *packFile) error {
	for {
		tmp := p.path
		f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o444)
		if errors.Is(err, os.ErrExist) {
			// A leftover with the same name; take the next.
			p.path = ps.s.temps.next()
			p.name = filepath.Base(p.path) + packSuffix
			continue
		}
		if err != nil {
			return fmt.Errorf("create pack: %w", err)
		}
		ps.fdMu.Lock()
		mem := p.mem
		ps.fdMu.Unlock()
		if _, err := f.WriteAt(append(packMagic[:len(packMagic):len(packMagic)], mem...), 0); err != nil {
			f.Close()
			os.Remove(tmp)
			return fmt.Errorf("create pack: %w", err)
		}
		ps.fdMu.Lock()
		p.f, p.mem, p.inMem = f, nil, false
		ps.fdMu.Unlock()
		return nil
	}
}

// seal completes pack p (once, whoever asks): it waits for the appends in
// flight, writes the index and footer, and renames the file into packs/.
// A pack that fails to seal has its chunks dropped from the index, so
// that they are written again.
func (ps *packSet) seal(p *packFile) error {
	p.sealOnce.Do(func() {
		ps.detach(func(q *packFile) bool { return q == p })
		p.writers.Wait()
		ps.mu.Lock()
		entries := slices.Clone(p.entries)
		ps.mu.Unlock()
		p.sealErr = ps.writeSealed(p, entries)
		ps.mu.Lock()
		delete(ps.unsealed, p)
		if p.sealErr == nil && len(entries) <= spillMax {
			p.sealed = true // and gone: writeSealed removed or spilled it
		} else if p.sealErr == nil {
			p.sealed = true
			ps.fdMu.Lock()
			p.path = filepath.Join(ps.dir, p.name)
			ps.open = append(ps.open, p)
			if len(ps.open) > maxOpenPacks {
				ps.closeIdle()
			}
			ps.fdMu.Unlock()
		} else {
			for _, e := range entries {
				if loc, ok := ps.index[e.digest]; ok && loc.pack == p {
					delete(ps.index, e.digest)
				}
			}
		}
		ps.mu.Unlock()
	})
	return p.sealErr
}

// writeSealed appends index and footer to p and renames it into packs/.
// An empty pack is removed instead.
func (ps *packSet) writeSealed(p *packFile, entries []packEntry) error {
	tmp := p.path
	if len(entries) == 0 {
		// Only failed appends went here; nothing refers to it.
		if p.f != nil {
			p.f.Close()
			os.Remove(tmp)
		}
		return nil
	}
	if len(entries) <= spillMax {
		return ps.spill(p, entries)
	}
	slices.SortFunc(entries, func(a, b packEntry) int { return bytes.Compare(a.digest[:], b.digest[:]) })
	buf := make([]byte, 0, len(entries)*packEntrySize+packFooterSize)
	for _, e := range entries {
		buf = append(buf, e.digest[:]...)
		buf = binary.LittleEndian.AppendUint64(buf, uint64(e.off))
		buf = binary.LittleEndian.AppendUint32(buf, e.frameLen)
		buf = binary.LittleEndian.AppendUint32(buf, e.size)
	}
	sum := castore.Sum(buf)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(p.off))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(entries)))
	buf = append(buf, sum[:]...)
	buf = append(buf, packMagic[:]...)
	if _, err := p.f.WriteAt(buf, p.off); err != nil {
		return fmt.Errorf("seal pack %s: %w", tmp, err)
	}
	if ps.s.cfg.sync == SyncCommit {
		if err := p.f.Sync(); err != nil {
			return fmt.Errorf("seal pack %s: %w", tmp, err)
		}
	} else {
		startWriteback(p.f, 0, 0)
	}
	dst := filepath.Join(ps.dir, p.name)
	if ps.s.hooks.beforeRename != nil {
		ps.s.hooks.beforeRename(dst)
	}
	if err := renameMkdir(tmp, dst); err != nil {
		return fmt.Errorf("seal pack: %w", err)
	}
	ps.s.published.Add(1)
	if ps.s.cfg.sync == SyncCommit {
		if err := fsyncDir(dst); err != nil {
			return fmt.Errorf("seal pack: %w", err)
		}
	}
	ps.scanMu.Lock()
	ps.known[p.name] = true
	ps.scanMu.Unlock()
	if ps.s.hooks.afterPublish != nil {
		ps.s.hooks.afterPublish(dst)
	}
	return nil
}

// spillMax is the most chunks a pack may hold for its seal to write them
// as chunk files instead. A Sync after each small path (a .drv written by
// instantiate, say) would otherwise leave a pack per path, and every Open
// reads every pack's index: 1000 instantiated derivations made 1000
// packs. A chunk file costs the same one create and rename, and is found
// by its name when needed.
const spillMax = 4

// memPackMax bounds the bytes a pack holds in memory before it gets its
// file: small paths stay in memory, large chunks go to the file at once
// (buffering them only made garbage).
const memPackMax = 64 << 10

// spill seals p by writing its chunks as chunk files (see spillMax),
// then drops them from the index so that reads find the files. Readers
// holding a location in p still read it: its descriptor stays open until
// nothing refers to p.
func (ps *packSet) spill(p *packFile, entries []packEntry) error {
	for _, e := range entries {
		frame, err := ps.recordBytes(p, e)
		if err != nil {
			return fmt.Errorf("seal pack %s: %w", p.path, err)
		}
		path := ps.s.chunkPath(e.digest)
		err = ps.s.chunkShards.ensure(ps.s.root, chunksDir, e.digest)
		if err == nil {
			err = ps.s.publish(path, frame, ps.s.cfg.sync == SyncCommit)
		}
		if err != nil {
			return fmt.Errorf("seal pack %s: %w", p.path, err)
		}
	}
	ps.mu.Lock()
	for _, e := range entries {
		if loc, ok := ps.index[e.digest]; ok && loc.pack == p {
			ps.index[e.digest] = packLoc{packEntry: packEntry{digest: e.digest, size: e.size}}
		}
	}
	ps.mu.Unlock()
	if p.f != nil {
		os.Remove(p.path)
	}
	return nil
}

// recordBytes returns the stored bytes of record e of the open pack p,
// from memory or its file; the caller must not change them.
func (ps *packSet) recordBytes(p *packFile, e packEntry) ([]byte, error) {
	ps.fdMu.Lock()
	inMem, mem := p.inMem, p.mem
	ps.fdMu.Unlock()
	if inMem {
		start := e.off - int64(len(packMagic))
		return mem[start : start+int64(e.frameLen)], nil
	}
	b := make([]byte, e.frameLen)
	if _, err := p.f.ReadAt(b, e.off); err != nil {
		return nil, err
	}
	return b, nil
}

// forget drops what the index says of chunk d if it says d is in its
// chunk file: the file was found damaged and moved aside, and the next
// writer must write it anew.
func (ps *packSet) forget(d castore.Digest) {
	ps.mu.Lock()
	if loc, ok := ps.index[d]; ok && loc.pack == nil {
		delete(ps.index, d)
	}
	ps.mu.Unlock()
}

// writebackStep is how much of an open pack is written before its
// writeback is started.
const writebackStep = 16 << 20

// startWriteback asks the kernel to start writing the range of f to disk
// (length 0: to the end), without waiting. Sync, which must wait for the
// data before a path info records it, then finds most of it written: the
// disk works while the writers go on instead of after them (adding 1 GB
// here spent 0.5 s in the final syncfs). Errors are for Sync to meet.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// detach takes the packs that match out of their lanes, so that appends
// go to new packs.
func (ps *packSet) detach(match func(*packFile) bool) {
	for i := range ps.lanes {
		l := &ps.lanes[i]
		l.mu.Lock()
		if l.p != nil && match(l.p) {
			l.p = nil
		}
		l.mu.Unlock()
	}
}

// sealFor seals the open packs holding any of the chunks ds, so that a
// chunk list naming them can be published.
func (ps *packSet) sealFor(ds []castore.Digest) error {
	var open []*packFile
	ps.mu.RLock()
	for _, d := range ds {
		if loc, ok := ps.index[d]; ok && loc.pack != nil && !loc.pack.sealed && !slices.Contains(open, loc.pack) {
			open = append(open, loc.pack)
		}
	}
	ps.mu.RUnlock()
	for _, p := range open {
		if err := ps.seal(p); err != nil {
			return err
		}
	}
	return nil
}

// flush seals every open pack.
func (ps *packSet) flush() error {
	ps.detach(func(*packFile) bool { return true })
	ps.mu.Lock()
	open := make([]*packFile, 0, len(ps.unsealed))
	for p := range ps.unsealed {
		open = append(open, p)
	}
	ps.mu.Unlock()
	var errs []error
	for _, p := range open {
		errs = append(errs, ps.seal(p))
	}
	return errors.Join(errs...)
}

// scan loads packs sealed since the last scan (by this or other
// processes), if packs/ changed. It reports whether it loaded any.
func (ps *packSet) scan() (bool, error) {
	ps.scanMu.Lock()
	defer ps.scanMu.Unlock()
	var st unix.Stat_t
	if err := unix.Stat(ps.dir, &st); err != nil {
		if err == unix.ENOENT {
			return false, nil
		}
		return false, fmt.Errorf("objectstore: %w", &os.PathError{Op: "stat", Path: ps.dir, Err: err})
	}
	// An unchanged directory needs no listing, but its time stamp is
	// coarse (a clock tick): renames in the same tick as the last listing
	// leave it as it was. So a recent stamp proves nothing.
	mtime := time.Unix(st.Mtim.Unix())
	if st.Mtim == ps.dirStamp && st.Size == ps.dirSize && time.Since(mtime) > 2*time.Second {
		return false, nil
	}
	entries, err := os.ReadDir(ps.dir)
	if err != nil {
		return false, fmt.Errorf("objectstore: %w", err)
	}
	ps.dirStamp, ps.dirSize = st.Mtim, st.Size
	if !ps.badLoaded {
		ps.bad = loadQuarantine(filepath.Join(ps.s.root, quarantineDir))
		ps.badLoaded = true
	}
	loaded := false
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, packSuffix) || ps.known[name] {
			continue
		}
		p, idx, err := ps.load(name)
		if err != nil {
			ps.s.log.Error("objectstore: damaged pack moved aside; write its contents again to repair the blobs it held", "pack", name, "cause", err)
			_ = renameMkdir(filepath.Join(ps.dir, name), filepath.Join(ps.s.root, quarantineDir, name))
			continue
		}
		ps.known[name] = true
		bad := ps.bad[name]
		ps.mu.Lock()
		for _, e := range idx {
			if bad[e.off] {
				continue
			}
			if _, ok := ps.index[e.digest]; !ok {
				ps.index[e.digest] = packLoc{pack: p, packEntry: e}
			}
		}
		ps.mu.Unlock()
		loaded = true
	}
	return loaded, nil
}

// load opens sealed pack name and reads and checks its index.
func (ps *packSet) load(name string) (*packFile, []packEntry, error) {
	path := filepath.Join(ps.dir, name)
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	idx, err := readPackIndex(f)
	f.Close() // reopened when read
	if err != nil {
		return nil, nil, err
	}
	return &packFile{path: path, name: name, sealed: true}, idx, nil
}

// readPackIndex reads and validates the index of the sealed pack f.
func readPackIndex(f *os.File) ([]packEntry, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < int64(len(packMagic))+packFooterSize {
		return nil, fmt.Errorf("%w: pack of %d bytes is too short", castore.ErrCorrupt, size)
	}
	var foot [packFooterSize]byte
	if _, err := f.ReadAt(foot[:], size-packFooterSize); err != nil {
		return nil, err
	}
	var head [8]byte
	if _, err := f.ReadAt(head[:], 0); err != nil {
		return nil, err
	}
	if head != packMagic || [8]byte(foot[packFooterSize-8:]) != packMagic {
		return nil, fmt.Errorf("%w: not a pack (bad magic)", castore.ErrCorrupt)
	}
	idxOff := int64(binary.LittleEndian.Uint64(foot[0:]))
	count := int64(binary.LittleEndian.Uint32(foot[8:]))
	if idxOff < int64(len(packMagic)) || idxOff+count*packEntrySize+packFooterSize != size {
		return nil, fmt.Errorf("%w: footer says %d entries at %d, file has %d bytes", castore.ErrCorrupt, count, idxOff, size)
	}
	buf := make([]byte, count*packEntrySize)
	if _, err := f.ReadAt(buf, idxOff); err != nil {
		return nil, err
	}
	if castore.Sum(buf) != castore.Digest(foot[12:44]) {
		return nil, fmt.Errorf("%w: index does not match its digest", castore.ErrCorrupt)
	}
	entries := make([]packEntry, count)
	for i := range entries {
		b := buf[i*packEntrySize:]
		e := packEntry{
			digest:   castore.Digest(b[:32]),
			off:      int64(binary.LittleEndian.Uint64(b[32:])),
			frameLen: binary.LittleEndian.Uint32(b[40:]),
			size:     binary.LittleEndian.Uint32(b[44:]),
		}
		if e.off < int64(len(packMagic)) || e.off+int64(e.frameLen) > idxOff || e.frameLen < minFrameSize || e.size > MaxReadChunkSize {
			return nil, fmt.Errorf("%w: index entry %d (%s) out of bounds", castore.ErrCorrupt, i, e.digest)
		}
		entries[i] = e
	}
	return entries, nil
}

// readPacked reads, decodes and verifies chunk d from its record. size is
// the size a chunk list gives it, or -1. A damaged record is quarantined.
func (ps *packSet) readPacked(loc packLoc, size int64) ([]byte, error) {
	d := loc.digest
	if size >= 0 && size != int64(loc.size) {
		return nil, fmt.Errorf("chunk %s: %w: the chunk list says %d bytes, the chunk has %d", d, castore.ErrCorrupt, size, loc.size)
	}
	var data []byte
	var raw bool
	if mem, ok := ps.memRecord(loc); ok {
		// A pack still in memory: decode from there (no file to read).
		data = append(getBuf(len(mem))[:0], mem...)
	} else {
		f, err := ps.acquire(loc.pack)
		if err != nil {
			return nil, fmt.Errorf("objectstore: chunk %s: %w", d, err)
		}
		data, raw, err = readFrame(int(f.Fd()), f.Name(), loc.off, int64(loc.frameLen), int64(loc.size))
		ps.release(loc.pack)
		if err != nil {
			return nil, fmt.Errorf("objectstore: chunk %s: %w", d, err)
		}
	}
	if raw {
		if castore.Sum(data) != d {
			err := fmt.Errorf("chunk %s: %w: contents do not match the digest", d, castore.ErrCorrupt)
			ps.quarantine(loc, err)
			return nil, err
		}
		return data, nil
	}
	out, err := ps.s.codec.decode(data, d, int64(loc.size))
	putBuf(data)
	if errors.Is(err, castore.ErrCorrupt) {
		ps.quarantine(loc, err)
	}
	return out, err
}

// memRecord returns the bytes of loc's record if its pack is still in
// memory.
func (ps *packSet) memRecord(loc packLoc) ([]byte, bool) {
	ps.fdMu.Lock()
	defer ps.fdMu.Unlock()
	if !loc.pack.inMem {
		return nil, false
	}
	start := loc.off - int64(len(packMagic))
	return loc.pack.mem[start : start+int64(loc.frameLen)], true
}

// quarantine drops a damaged record from the index and marks it in
// corrupt/, so that this and later Stores write the content anew.
func (ps *packSet) quarantine(loc packLoc, cause error) {
	ps.mu.Lock()
	if cur, ok := ps.index[loc.digest]; ok && cur.pack == loc.pack && cur.off == loc.off {
		delete(ps.index, loc.digest)
	}
	ps.mu.Unlock()
	dir := filepath.Join(ps.s.root, quarantineDir)
	marker := filepath.Join(dir, loc.digest.Hex()+recordMarkerSuffix)
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		var f *os.File
		if f, err = os.OpenFile(marker, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			_, err = fmt.Fprintf(f, "%s %d\n", loc.pack.name, loc.off)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
	}
	ps.s.log.Error("objectstore: damaged chunk record dropped", "pack", loc.pack.name, "offset", loc.off, "digest", loc.digest, "marker", marker, "cause", cause, "mark_error", err)
}

// loadQuarantine reads the records marked damaged in dir: pack name ->
// offsets.
func loadQuarantine(dir string) map[string]map[int64]bool {
	bad := make(map[string]map[int64]bool)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return bad
	}
	for _, e := range entries {
		hexDigest, ok := strings.CutSuffix(e.Name(), recordMarkerSuffix)
		if !ok {
			continue
		}
		if _, err := castore.ParseDigest(hexDigest); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			var name string
			var off int64
			if _, err := fmt.Sscanf(line, "%s %d", &name, &off); err == nil {
				if bad[name] == nil {
					bad[name] = make(map[int64]bool)
				}
				bad[name][off] = true
			}
		}
	}
	return bad
}

// packedChunks returns every chunk the Store's packs hold, for Check.
func (ps *packSet) packedChunks() []castore.Digest {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	ds := make([]castore.Digest, 0, len(ps.index))
	for d := range ps.index {
		ds = append(ds, d)
	}
	return ds
}
