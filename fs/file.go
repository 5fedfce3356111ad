package fs

import (
	"context"
	"errors"
	"io"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/castor-nix/castor/store/castore"
)

// fileHandle is one open file: a blob reader, opened at OPEN and closed at
// RELEASE, and the read-ahead for sequential readers.
type fileHandle struct {
	fsys   *FS
	digest castore.Digest
	r      castore.BlobReader
	size   int64
	pf     *prefetcher // nil when prefetching is off
	cancel context.CancelFunc
}

func (h *fileHandle) close() {
	h.cancel()
	if h.pf != nil {
		h.pf.close()
	}
	if err := h.r.Close(); err != nil {
		h.fsys.log.Warn("closing a blob reader", "blob", h.digest.String(), "err", err)
	}
}

// Open implements fuse.RawFileSystem. It opens the blob, so a blob missing
// from the store is EIO here (logged with its digest), and asks the kernel
// to keep cached pages across opens: the contents never change.
func (fsys *FS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	ino := fsys.inodes.get(in.NodeId)
	if ino == nil {
		return fuse.Status(syscall.ESTALE)
	}
	switch ino.node.Kind {
	case castore.KindDirectory:
		return fuse.EISDIR
	case castore.KindSymlink:
		return fuse.Status(syscall.ELOOP)
	}
	if in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY || in.Flags&syscall.O_TRUNC != 0 {
		return fuse.EROFS
	}
	ctx := fsys.reqCtx(cancel)
	d := ino.node.Digest
	r, err := fsys.blobs.OpenBlob(ctx, d)
	if err != nil {
		if errors.Is(err, castore.ErrNotFound) {
			return fsys.ioError(ctx, err, "blob missing from the store", "blob", d.String())
		}
		return fsys.ioError(ctx, err, "opening a blob", "blob", d.String())
	}
	if r.Size() != int64(ino.node.Size) {
		r.Close()
		fsys.log.Error("blob size differs from the directory entry", "blob", d.String(), "size", r.Size(), "entry_size", ino.node.Size)
		return fuse.EIO
	}
	hctx, hcancel := context.WithCancel(fsys.ctx)
	h := &fileHandle{fsys: fsys, digest: d, r: r, size: r.Size(), cancel: hcancel}
	if fsys.opts.Prefetch > 0 && h.size > pieceSize {
		h.pf = newPrefetcher(hctx, r, h.size, int64(fsys.opts.Prefetch), &fsys.prefetchBytes)
	}
	out.Fh = fsys.files.add(h)
	out.OpenFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH
	return fuse.OK
}

// Read implements fuse.RawFileSystem. It answers with a blobRead, which
// reads the blob when go-fuse asks for the bytes: straight into the
// request's buffer (/dev/fuse) or into the guest's pages (virtio-fs). A
// read the backend cannot serve is EIO, logged with the blob's digest.
func (fsys *FS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	h, ok := fsys.files.get(in.Fh)
	if !ok {
		return nil, fuse.EBADF
	}
	off := int64(in.Offset)
	if off >= h.size {
		return fuse.ReadResultData(nil), fuse.OK
	}
	n := min(int64(in.Size), h.size-off)
	return &blobRead{h: h, ctx: fsys.reqCtx(cancel), off: off, size: int(n)}, fuse.OK
}

// blobRead is the answer to one READ: size bytes of h's blob at off, read
// when go-fuse wants them. Over /dev/fuse go-fuse calls Bytes with the
// request's buffer. Over virtio-fs it calls Readv with the reply's part
// of the guest's buffers, which for a guest filling its page cache are
// one 4 KiB page apart from the next: reading into them directly saves
// go-fuse's gathering buffer and a second copy of every byte.
type blobRead struct {
	h    *fileHandle
	ctx  context.Context
	off  int64
	size int
}

func (r *blobRead) Size() int { return r.size }

func (r *blobRead) Done() {}

// Bytes implements fuse.ReadResult.
func (r *blobRead) Bytes(buf []byte) ([]byte, fuse.Status) {
	if len(buf) < r.size {
		buf = make([]byte, r.size)
	}
	p := buf[:r.size]
	if st := r.readAt(p, r.off); !st.Ok() {
		return nil, st
	}
	return p, fuse.OK
}

// Readv fills dst, a scatter list of exactly Size bytes, in order (go-fuse
// looks for this method on a ReadResult).
func (r *blobRead) Readv(dst [][]byte) (int, fuse.Status) {
	off, left := r.off, r.size
	for _, p := range dst {
		if left == 0 {
			break
		}
		p = p[:min(len(p), left)]
		if st := r.readAt(p, off); !st.Ok() {
			return 0, st
		}
		off += int64(len(p))
		left -= len(p)
	}
	return r.size - left, fuse.OK
}

func (r *blobRead) readAt(p []byte, off int64) fuse.Status {
	h := r.h
	var err error
	if h.pf != nil {
		err = h.pf.readAt(r.ctx, p, off)
	} else {
		err = readFull(h.r, p, off)
	}
	if err != nil {
		return h.fsys.ioError(r.ctx, err, "reading a blob", "blob", h.digest.String(), "offset", off, "size", len(p))
	}
	return fuse.OK
}

// readFull reads exactly len(p) bytes at off: the caller knows the blob's
// size, so a short read is damage.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Release implements fuse.RawFileSystem.
func (fsys *FS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	if h, ok := fsys.files.remove(in.Fh); ok {
		h.close()
	}
}

// Flush implements fuse.RawFileSystem: nothing is ever dirty.
func (fsys *FS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status { return fuse.OK }

// Fsync implements fuse.RawFileSystem: nothing is ever dirty.
func (fsys *FS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status { return fuse.OK }

// OpenFiles returns how many file handles are open.
func (fsys *FS) OpenFiles() int { return fsys.files.len() }
