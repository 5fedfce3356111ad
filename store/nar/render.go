package nar

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/castor-nix/castor/store/castore"
)

// Bounds of Render's read-ahead: at most prefetchBlobs blobs are being
// fetched or held ahead of the writer, and at most prefetchBytes of their
// data is buffered. A blob's first prefetchHead bytes are read ahead; the
// rest streams from its reader when its turn comes, so a large blob costs
// no more memory than a small one.
const (
	prefetchBlobs = 16
	prefetchBytes = 8 << 20
	prefetchHead  = 1 << 20
	budgetUnit    = 64 << 10
)

// renderFile is one regular file of the tree, in NAR order.
type renderFile struct {
	path   string
	digest castore.Digest
	size   uint64
}

// fetched is a blob read ahead: its first bytes, and the open reader for
// the rest when there is more.
type fetched struct {
	head  []byte
	rd    castore.BlobReader
	units int // read-ahead budget held
	err   error
}

// Render writes the NAR of the tree at root to w, byte for byte what
// `nix-store --dump` writes for the same tree.
//
// The directories of the tree are fetched first (one GetClosure call),
// then blobs are fetched ahead of the writer, a bounded number at a time,
// in NAR order, so a slow or remote blob store is not waited on one blob
// after another. A missing directory or blob is an error wrapping
// castore.ErrNotFound; a blob whose length differs from its FileEntry's
// size, or that the store finds damaged, wraps castore.ErrCorrupt. The
// error is returned as soon as the writer reaches the broken node: w then
// holds a partial NAR, which the caller must discard. Render does not close
// w; it flushes everything it wrote before returning nil.
func Render(ctx context.Context, w io.Writer, root castore.Node, bs castore.BlobOpener, ds castore.DirectoryGetter) error {
	if err := root.Validate(); err != nil {
		return fmt.Errorf("nar: render: root: %w", err)
	}
	dirs := map[castore.Digest]*castore.Directory{}
	if root.Kind == castore.KindDirectory {
		if ds == nil {
			return fmt.Errorf("nar: render: tree has directories but no directory service was given")
		}
		for d, err := range ds.GetClosure(ctx, root.Digest) {
			if err != nil {
				return fmt.Errorf("nar: render: directories of %s: %w", root.Digest, err)
			}
			dirs[d.Digest()] = d
		}
		if dirs[root.Digest] == nil {
			return fmt.Errorf("nar: render: directory %s: %w", root.Digest, castore.ErrNotFound)
		}
	}

	// The files in NAR order, for the read-ahead.
	var files []renderFile
	var list func(path string, n castore.Node) error
	list = func(path string, n castore.Node) error {
		switch n.Kind {
		case castore.KindFile:
			files = append(files, renderFile{path: path, digest: n.Digest, size: n.Size})
		case castore.KindDirectory:
			d := dirs[n.Digest]
			if d == nil {
				return fmt.Errorf("nar: render: directory %s at %s: %w", n.Digest, path, castore.ErrNotFound)
			}
			for _, e := range d.Entries() {
				if err := list(childPath(path, e.Name), e.Node); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := list("/", root); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pf := startPrefetch(ctx, bs, files)
	defer pf.stop(cancel)

	nw := NewWriter(w)
	var walk func(path string, n castore.Node) error
	walk = func(path string, n castore.Node) error {
		switch n.Kind {
		case castore.KindFile:
			if n.Size > 1<<63-1 {
				return fmt.Errorf("%w: file %s: size %d too large", castore.ErrInvalid, path, n.Size)
			}
			if err := nw.WriteHeader(&Header{Path: path, Type: TypeRegular, Size: int64(n.Size), Executable: n.Executable}); err != nil {
				return err
			}
			return pf.copyNext(ctx, nw, path, n)
		case castore.KindSymlink:
			return nw.WriteHeader(&Header{Path: path, Type: TypeSymlink, LinkTarget: n.Target})
		case castore.KindDirectory:
			if err := nw.WriteHeader(&Header{Path: path, Type: TypeDirectory}); err != nil {
				return err
			}
			for _, e := range dirs[n.Digest].Entries() {
				if err := walk(childPath(path, e.Name), e.Node); err != nil {
					return err
				}
			}
			return nil
		}
		return fmt.Errorf("%w: %s: unknown node kind %v", castore.ErrInvalid, path, n.Kind)
	}
	if err := walk("/", root); err != nil {
		return fmt.Errorf("nar: render: %w", err)
	}
	if err := nw.Close(); err != nil {
		return fmt.Errorf("nar: render: %w", err)
	}
	return nil
}

// prefetcher fetches blobs ahead of the writer.
type prefetcher struct {
	queue  chan chan fetched // one result channel per file, in order
	budget chan struct{}     // tokens of budgetUnit bytes held by read-ahead data
	done   chan struct{}     // closed when the dispatcher has exited
}

func startPrefetch(ctx context.Context, bs castore.BlobOpener, files []renderFile) *prefetcher {
	p := &prefetcher{
		queue:  make(chan chan fetched, prefetchBlobs),
		budget: make(chan struct{}, prefetchBytes/budgetUnit),
		done:   make(chan struct{}),
	}
	go p.dispatch(ctx, bs, files)
	return p
}

// dispatch starts a fetch per file, in order, once the budget allows; the
// bounded queue limits how many are ahead of the writer.
func (p *prefetcher) dispatch(ctx context.Context, bs castore.BlobOpener, files []renderFile) {
	defer close(p.done)
	defer close(p.queue)
	for _, f := range files {
		units := int((min(f.size, prefetchHead) + budgetUnit - 1) / budgetUnit)
		for range units {
			select {
			case p.budget <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		ch := make(chan fetched, 1)
		select {
		case p.queue <- ch:
		case <-ctx.Done():
			p.release(units)
			return
		}
		go func() {
			r := fetch(ctx, bs, f)
			r.units = units
			ch <- r
		}()
	}
}

func (p *prefetcher) release(units int) {
	for range units {
		<-p.budget
	}
}

// fetch opens one blob, checks its size and reads its head.
func fetch(ctx context.Context, bs castore.BlobOpener, f renderFile) fetched {
	if f.size == 0 && f.digest == castore.EmptyDigest {
		// The digest proves the contents: no need to ask the store.
		return fetched{}
	}
	rd, err := bs.OpenBlob(ctx, f.digest)
	if err != nil {
		return fetched{err: fmt.Errorf("blob %s of %s: %w", f.digest, f.path, err)}
	}
	if got := rd.Size(); got < 0 || uint64(got) != f.size {
		rd.Close()
		return fetched{err: fmt.Errorf("%w: blob %s of %s has %d bytes, its entry says %d", castore.ErrCorrupt, f.digest, f.path, got, f.size)}
	}
	head := make([]byte, min(f.size, prefetchHead))
	if _, err := io.ReadFull(rd, head); err != nil {
		rd.Close()
		return fetched{err: blobReadErr(f, err)}
	}
	if uint64(len(head)) == f.size {
		err := expectEOF(rd, f)
		rd.Close()
		if err != nil {
			return fetched{err: err}
		}
		rd = nil
	}
	return fetched{head: head, rd: rd}
}

// expectEOF checks that a blob reader has nothing after the size its entry
// records. Reading to the end also lets a backend that verifies the digest
// at the end report damage.
func expectEOF(rd io.Reader, f renderFile) error {
	var b [1]byte
	n, err := io.ReadFull(rd, b[:])
	switch {
	case n > 0:
		return fmt.Errorf("%w: blob %s of %s is longer than its %d bytes", castore.ErrCorrupt, f.digest, f.path, f.size)
	case errors.Is(err, io.EOF):
		return nil
	}
	return fmt.Errorf("blob %s of %s: %w", f.digest, f.path, err)
}

func blobReadErr(f renderFile, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: blob %s of %s ended before its %d bytes", castore.ErrCorrupt, f.digest, f.path, f.size)
	}
	return fmt.Errorf("blob %s of %s: %w", f.digest, f.path, err)
}

// copyNext writes the next file's contents, which must be n's.
func (p *prefetcher) copyNext(ctx context.Context, w io.Writer, path string, n castore.Node) error {
	var ch chan fetched
	select {
	case ch = <-p.queue:
	case <-ctx.Done():
		return ctx.Err()
	}
	var r fetched
	select {
	case r = <-ch:
	case <-ctx.Done():
		// The fetch sends into ch's buffer; stop drains it.
		go func() { r := <-ch; closeFetched(p, r) }()
		return ctx.Err()
	}
	defer closeFetched(p, r)
	if r.err != nil {
		return r.err
	}
	if _, err := w.Write(r.head); err != nil {
		return err
	}
	if r.rd == nil {
		return nil
	}
	f := renderFile{path: path, digest: n.Digest, size: n.Size}
	rest := int64(n.Size) - int64(len(r.head))
	bufp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bufp)
	copied, err := io.CopyBuffer(onlyWriter{w}, io.LimitReader(r.rd, rest), *bufp)
	if err != nil {
		if errors.Is(err, ErrInvalid) {
			return err
		}
		return blobReadErr(f, err)
	}
	if copied != rest {
		return blobReadErr(f, io.ErrUnexpectedEOF)
	}
	return expectEOF(r.rd, f)
}

func closeFetched(p *prefetcher, r fetched) {
	if r.rd != nil {
		r.rd.Close()
	}
	p.release(r.units)
}

// stop cancels read-ahead and releases everything fetched but not used.
func (p *prefetcher) stop(cancel context.CancelFunc) {
	cancel()
	for ch := range p.queue {
		closeFetched(p, <-ch)
	}
	<-p.done
}

// CalculateNAR returns the size and SHA-256 of the NAR of the tree at
// root, as Render would write it, with Render's errors.
func CalculateNAR(ctx context.Context, root castore.Node, bs castore.BlobOpener, ds castore.DirectoryGetter) (size uint64, sha256sum [32]byte, err error) {
	h := sha256.New()
	cw := &countingWriter{w: h}
	if err := Render(ctx, cw, root, bs, ds); err != nil {
		return 0, [32]byte{}, err
	}
	h.Sum(sha256sum[:0])
	return cw.n, sha256sum, nil
}

type countingWriter struct {
	w io.Writer
	n uint64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += uint64(n)
	return n, err
}
