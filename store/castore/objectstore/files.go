package objectstore

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/castor-nix/castor/store/castore"
)

// File handling. The hot paths call the system directly rather than
// through os.File: a chunk or blob file is opened, written or read once,
// and closed, and os.File's extra fstat and finalizer cost more than the
// work for a small file.

// Directories under the root.
const (
	chunksDir     = "chunks/b3"
	blobsDir      = "blobs/b3"
	tmpDir        = "tmp"
	quarantineDir = "corrupt"
)

// shardHex is how many hex digits of the digest name a shard directory:
// 2 (256 shards). Snix uses 4 (65536 shards); on the ext4 disks measured
// here a directory costs about 0.3 ms to create, and a fresh store of 20k
// blobs then spent a third of its time making some 18k shard directories
// for each of chunks/ and blobs/. 256 shards keep directories small enough
// (ext4's htree handles millions of entries) and are created once.
const shardHex = 2

// shardPath returns <root>/<dir>/<hex of first byte>/<hex digest>.
func shardPath(root, dir string, d castore.Digest) string {
	var b strings.Builder
	b.Grow(len(root) + len(dir) + 2 + shardHex + 1 + 64)
	b.WriteString(root)
	b.WriteByte('/')
	b.WriteString(dir)
	b.WriteByte('/')
	var h [64]byte
	hex.Encode(h[:], d[:])
	b.Write(h[:shardHex])
	b.WriteByte('/')
	b.Write(h[:])
	return b.String()
}

func (s *Store) chunkPath(d castore.Digest) string { return shardPath(s.root, chunksDir, d) }
func (s *Store) blobPath(d castore.Digest) string  { return shardPath(s.root, blobsDir, d) }

// shardSet remembers which shard directories (<hex of digest[0]>) are
// known to exist, so that a writer creates each at most once per process
// instead of first failing to rename into it. Shard directories are never
// removed; if one is anyway, renameMkdir recreates it.
type shardSet [256 / 64]atomic.Uint64

// ensure creates the shard directory of d under root/dir unless known.
func (ss *shardSet) ensure(root, dir string, d castore.Digest) error {
	i := int(d[0])
	word, bit := &ss[i/64], uint64(1)<<(i%64)
	if word.Load()&bit != 0 {
		return nil
	}
	if err := mkdirParent(shardPath(root, dir, d)); err != nil {
		return err
	}
	word.Or(bit)
	return nil
}

// tempNames makes names for temporary files, unique across processes:
// <pid namespace>-<pid>-<random>-<sequence>. The pid namespace and pid let
// Open remove the temp files of dead writers at once (see cleanTemp).
type tempNames struct {
	dir    string
	prefix string
	mu     sync.Mutex
	seq    uint64 // guarded by mu
}

func (t *tempNames) next() string {
	t.mu.Lock()
	t.seq++
	n := t.seq
	t.mu.Unlock()
	return t.dir + "/" + t.prefix + strconv.FormatUint(n, 36)
}

// pidNamespace identifies this process's pid namespace (the inode of
// /proc/self/ns/pid), or 0 when /proc cannot tell.
func pidNamespace() uint64 {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return 0
	}
	return st.Ino
}

// writeFull writes all of b to fd.
func writeFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// publish writes data to a new temporary file and renames it to path,
// creating path's directory when missing. Readers see either no file or
// the whole file. With sync, the data is flushed to disk before the
// rename. Renaming over an existing file is fine: the same path always
// names the same contents.
func (s *Store) publish(path string, data []byte, sync bool) error {
	var tmp string
	var fd int
	for {
		tmp = s.temps.next()
		var err error
		fd, err = unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o444)
		if err == unix.EEXIST {
			continue // a leftover with the same name; take the next
		}
		if err != nil {
			return fmt.Errorf("create temporary file: %w", &os.PathError{Op: "open", Path: tmp, Err: err})
		}
		break
	}
	err := writeFull(fd, data)
	if err == nil && sync {
		err = unix.Fdatasync(fd)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err == nil && s.hooks.beforeRename != nil {
		s.hooks.beforeRename(path)
	}
	if err == nil {
		err = renameMkdir(tmp, path)
	}
	if err == nil {
		// After the rename: a committer's own files are counted before
		// it calls Sync, and that Sync must flush them.
		s.published.Add(1)
	}
	if err != nil {
		_ = unix.Unlink(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if s.hooks.afterPublish != nil {
		s.hooks.afterPublish(path)
	}
	return nil
}

// renameMkdir renames old to new, creating new's directory if needed.
func renameMkdir(old, new string) error {
	err := unix.Rename(old, new)
	if err == unix.ENOENT {
		if merr := mkdirParent(new); merr != nil {
			return merr
		}
		err = unix.Rename(old, new)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: old, New: new, Err: err}
	}
	return nil
}

// mkdirParent creates the (shard) directory holding path. Its parent
// exists from Open on.
func mkdirParent(path string) error {
	dir := filepath.Dir(path)
	if err := unix.Mkdir(dir, 0o755); err != nil && err != unix.EEXIST {
		return &os.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	return nil
}

// createEmpty creates an empty file at path; it fails with an error
// wrapping unix.EEXIST if there is one. An empty file cannot be seen
// half-written, so it needs no temporary file.
func createEmpty(path string) error {
	err := unix.Mknod(path, unix.S_IFREG|0o444, 0)
	if err == unix.ENOENT {
		if merr := mkdirParent(path); merr != nil {
			return merr
		}
		err = unix.Mknod(path, unix.S_IFREG|0o444, 0)
	}
	if err != nil {
		return &os.PathError{Op: "mknod", Path: path, Err: err}
	}
	return nil
}

// statSize returns the size of the file at path; ok is false when there is
// no such file.
func statSize(path string) (size int64, ok bool, err error) {
	var st unix.Stat_t
	err = unix.Stat(path, &st)
	if err == unix.ENOENT {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return st.Size, true, nil
}

// errNoFile reports that readFile found no file.
var errNoFile = errors.New("no such file")

// readFile reads the whole file at path into a buffer from the pool (or a
// new one when it does not fit). It returns errNoFile when path does not
// exist. The caller returns the buffer with putBuf.
func readFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return nil, errNoFile
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	return readAllAt(fd, path, 0, st.Size)
}

// readAllAt reads the size bytes at base of the open file fd into a buffer
// from the pool, as readFile.
func readAllAt(fd int, path string, base, size64 int64) ([]byte, error) {
	size := int(size64)
	buf := getBuf(size)
	for n := 0; n < size; {
		m, err := unix.Pread(fd, buf[n:size], base+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			putBuf(buf)
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			// The file shrank under us: files here never change once
			// renamed in, so this is damage (or a foreign writer).
			size = n
			break
		}
		n += m
	}
	return buf[:size], nil
}

// rawContentSize returns the content size n for which rawFrameSize(n) is
// fileSize, if there is one.
func rawContentSize(fileSize int64) (int64, bool) {
	for blocks := int64(1); blocks <= MaxReadChunkSize/maxRawBlock; blocks++ {
		n := fileSize - rawFrameHeader - 3*blocks
		if n >= 0 && max(1, (n+maxRawBlock-1)/maxRawBlock) == blocks {
			return n, true
		}
	}
	return 0, false
}

// readChunkFile reads a chunk file, as readFrame. It returns errNoFile
// when there is no file.
func readChunkFile(path string, size int64) (b []byte, raw bool, err error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return nil, false, errNoFile
	}
	if err != nil {
		return nil, false, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, false, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	return readFrame(fd, path, 0, st.Size, size)
}

// readFrame reads the frameLen bytes of a chunk's frame at base in fd (a
// chunk file, or a record of a pack). When they hold a raw frame (as
// appendRawFrame writes it) of size bytes (-1: any size), the contents go
// straight into a new buffer with one preadv (frame and block headers to
// a scratch buffer, payloads to their place), saving a copy of the data,
// and raw is true. Otherwise it returns the frame's bytes, in a buffer the
// caller returns with putBuf, to be decoded.
func readFrame(fd int, path string, base, frameLen, size int64) (b []byte, raw bool, err error) {
	if size < 0 {
		if n, ok := rawContentSize(frameLen); ok {
			size = n
		}
	}
	if size < 0 || frameLen != int64(rawFrameSize(int(size))) {
		b, err := readAllAt(fd, path, base, frameLen)
		return b, false, err
	}
	data := make([]byte, size)
	blocks := max(1, (int(size)+maxRawBlock-1)/maxRawBlock)
	var scratch [rawFrameHeader + 3*(MaxReadChunkSize/maxRawBlock)]byte
	hdrs := scratch[:rawFrameHeader+3*blocks]
	iov := make([][]byte, 0, 1+2*blocks)
	iov = append(iov, hdrs[:rawFrameHeader])
	for b := range blocks {
		iov = append(iov, hdrs[rawFrameHeader+3*b:rawFrameHeader+3*b+3])
		iov = append(iov, data[b*maxRawBlock:min(int(size), (b+1)*maxRawBlock)])
	}
	want := int(frameLen)
	got := 0
	for got < want {
		n, err := unix.Preadv(fd, iov, base+int64(got))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, false, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			break // shrank: read what is there the usual way
		}
		got += n
		iov = skipIovec(iov, n)
	}
	// Raw only if the headers are exactly those of a raw frame of size.
	var expect [rawFrameHeader + 3*(MaxReadChunkSize/maxRawBlock)]byte
	if got == want && bytes.Equal(hdrs, rawFrameHeaders(expect[:0], int(size))) {
		return data, true, nil
	}
	b, err = readAllAt(fd, path, base, frameLen)
	return b, false, err
}

// rawFrameHeaders appends the header bytes appendRawFrame writes for size
// bytes: the frame header, then each block's header.
func rawFrameHeaders(dst []byte, size int) []byte {
	dst = append(dst, zstdMagic[:]...)
	dst = append(dst, 2<<6|1<<5)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(size))
	for rest := size; ; {
		n := min(rest, maxRawBlock)
		h := uint32(n) << 3
		if n == rest {
			h |= 1
		}
		dst = append(dst, byte(h), byte(h>>8), byte(h>>16))
		rest -= n
		if rest == 0 {
			return dst
		}
	}
}

// skipIovec drops the first n bytes from iov.
func skipIovec(iov [][]byte, n int) [][]byte {
	for n > 0 && len(iov) > 0 {
		if n < len(iov[0]) {
			iov[0] = iov[0][n:]
			return iov
		}
		n -= len(iov[0])
		iov = iov[1:]
	}
	return iov
}

// readHead reads up to len(b) bytes from the start of the file at path.
func readHead(path string, b []byte) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return 0, errNoFile
	}
	if err != nil {
		return 0, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Pread(fd, b, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, &os.PathError{Op: "read", Path: path, Err: err}
		}
		return n, nil
	}
}

// File buffers are pooled by size class: chunk files are at most a little
// over MaxChunkSize, blob files a few KiB.
const fileBufSize = MaxChunkSize + 64<<10

var fileBufs = sync.Pool{New: func() any { b := make([]byte, fileBufSize); return &b }}

func getBuf(n int) []byte {
	if n > fileBufSize {
		return make([]byte, n)
	}
	return (*fileBufs.Get().(*[]byte))[:n]
}

func putBuf(b []byte) {
	if cap(b) != fileBufSize {
		return
	}
	b = b[:cap(b)]
	fileBufs.Put(&b)
}

// cleanTemp removes temporary files left by writers that died: those of a
// process of our pid namespace that no longer exists, and any older than
// maxAge (a writer keeps a temporary file for the time it takes to write
// one chunk, so an old one is certainly abandoned; removing one still in
// use would only make that writer fail its rename, never lose data).
func cleanTemp(dir string, ourNS uint64, maxAge time.Duration, now time.Time) (removed int, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		name := e.Name()
		dead := false
		if ns, pid, ok := parseTempName(name); ok && ns == ourNS && ourNS != 0 {
			dead = unix.Kill(pid, 0) == unix.ESRCH
		}
		if !dead {
			info, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			dead = now.Sub(info.ModTime()) > maxAge
		}
		if dead {
			if err := os.Remove(filepath.Join(dir, name)); err == nil {
				removed++
			}
		}
	}
	return removed, nil
}

// parseTempName reads the pid namespace and pid from a temp file name.
func parseTempName(name string) (ns uint64, pid int, ok bool) {
	nsStr, rest, ok1 := strings.Cut(name, "-")
	pidStr, _, ok2 := strings.Cut(rest, "-")
	if !ok1 || !ok2 {
		return 0, 0, false
	}
	ns, err1 := strconv.ParseUint(nsStr, 10, 64)
	p, err2 := strconv.Atoi(pidStr)
	if err1 != nil || err2 != nil || p <= 0 {
		return 0, 0, false
	}
	return ns, p, true
}
