package nar

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/castor-nix/castor/store/castore"
)

// copyBufferSize is the piece in which file contents move from a NAR into
// a blob writer: large, so that readers and writers see few calls.
const copyBufferSize = 1 << 20

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// hashingReader feeds everything read through it to a hash and counts it.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n uint64
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += uint64(n)
	return n, err
}

// ingestDir is a directory of the NAR not yet ended.
type ingestDir struct {
	path string
	dir  castore.Directory
}

// Ingest reads a NAR from r into the castore and returns the root node with
// the NAR's size and SHA-256, computed from the bytes as they stream by.
//
// Each file's contents go straight into a blob writer from bs, never held
// whole. Directories are put through one DirectoryPutter from ds, leaves
// first, as the NAR ends them; a NAR whose root is a file or symlink puts
// no directories (ds may then be nil). Directory sizes follow castore's
// formula (Directory.Size).
//
// On any error (malformed NAR, wrapping ErrInvalid; the source's or a
// store's error; ctx done) the putter is aborted so no directory becomes
// visible, and the blob being written is discarded; blobs already
// committed stay, which is harmless as they are addressed by content.
// Ingest reads r to its end (data after the NAR is an error) and does not
// close it.
func Ingest(ctx context.Context, r io.Reader, bs castore.BlobIngester, ds castore.DirectoryIngester) (root castore.Node, narSize uint64, narSHA256 [32]byte, err error) {
	hr := &hashingReader{r: r, h: sha256.New()}
	nr := NewReader(hr)
	bufp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bufp)

	var putter castore.DirectoryPutter
	defer func() {
		if err != nil && putter != nil {
			putter.Abort()
		}
	}()
	var stack []*ingestDir
	haveRoot := false

	// place records a finished node in its parent, or as the root.
	place := func(path string, n castore.Node) {
		if len(stack) == 0 {
			root, haveRoot = n, true
			return
		}
		_, name := parentPath(path)
		d := &stack[len(stack)-1].dir
		switch n.Kind {
		case castore.KindDirectory:
			d.Directories = append(d.Directories, castore.DirectoryEntry{Name: name, Digest: n.Digest, Size: n.Size})
		case castore.KindFile:
			d.Files = append(d.Files, castore.FileEntry{Name: name, Digest: n.Digest, Size: n.Size, Executable: n.Executable})
		case castore.KindSymlink:
			d.Symlinks = append(d.Symlinks, castore.SymlinkEntry{Name: name, Target: n.Target})
		}
	}
	// pop ends the innermost directory: puts it and places its node.
	pop := func() error {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		dg, err := putter.Put(ctx, &top.dir)
		if err != nil {
			return fmt.Errorf("nar: ingest: put directory %s: %w", top.path, err)
		}
		size, ok := top.dir.Size()
		if !ok {
			return fmt.Errorf("%w: directory %s: size overflows", ErrInvalid, top.path)
		}
		place(top.path, castore.Node{Kind: castore.KindDirectory, Digest: dg, Size: size})
		return nil
	}

	for {
		h, err := nr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return castore.Node{}, 0, [32]byte{}, err
		}
		if err := ctx.Err(); err != nil {
			return castore.Node{}, 0, [32]byte{}, err
		}
		// Directories that do not hold this node have ended.
		dir, _ := parentPath(h.Path)
		for len(stack) > 0 && stack[len(stack)-1].path != dir {
			if err := pop(); err != nil {
				return castore.Node{}, 0, [32]byte{}, err
			}
		}
		switch h.Type {
		case TypeRegular:
			dg, err := ingestBlob(ctx, bs, nr, h, *bufp)
			if err != nil {
				return castore.Node{}, 0, [32]byte{}, err
			}
			place(h.Path, castore.Node{Kind: castore.KindFile, Digest: dg, Size: uint64(h.Size), Executable: h.Executable})
		case TypeSymlink:
			place(h.Path, castore.Node{Kind: castore.KindSymlink, Target: h.LinkTarget})
		case TypeDirectory:
			if putter == nil {
				if ds == nil {
					return castore.Node{}, 0, [32]byte{}, fmt.Errorf("nar: ingest: NAR holds directories but no directory service was given")
				}
				putter = ds.NewDirectoryPutter(ctx)
			}
			stack = append(stack, &ingestDir{path: h.Path})
		}
	}
	for len(stack) > 0 {
		if err := pop(); err != nil {
			return castore.Node{}, 0, [32]byte{}, err
		}
	}
	if !haveRoot {
		// The Reader returns io.EOF only after a whole root node.
		panic("nar: ingest ended without a root")
	}
	if putter != nil {
		dg, err := putter.Close(ctx)
		if err != nil {
			return castore.Node{}, 0, [32]byte{}, fmt.Errorf("nar: ingest: commit directories: %w", err)
		}
		if dg != root.Digest {
			return castore.Node{}, 0, [32]byte{}, fmt.Errorf("nar: ingest: directory putter returned root %s, want %s", dg, root.Digest)
		}
	}
	var sum [32]byte
	hr.h.Sum(sum[:0])
	return root, hr.n, sum, nil
}

// ingestBlob copies the current file's contents into a new blob.
func ingestBlob(ctx context.Context, bs castore.BlobIngester, r io.Reader, h *Header, buf []byte) (castore.Digest, error) {
	bw, err := bs.NewBlobWriter(ctx)
	if err != nil {
		return castore.Digest{}, fmt.Errorf("nar: ingest %s: %w", h.Path, err)
	}
	defer bw.Close()
	n, err := io.CopyBuffer(onlyWriter{bw}, r, buf)
	if err != nil {
		if errors.Is(err, ErrInvalid) {
			return castore.Digest{}, err
		}
		return castore.Digest{}, fmt.Errorf("nar: ingest %s: %w", h.Path, err)
	}
	if n != h.Size {
		// The Reader reports truncation; this guards its contract.
		return castore.Digest{}, fmt.Errorf("nar: ingest %s: copied %d of %d bytes", h.Path, n, h.Size)
	}
	dg, err := bw.Commit()
	if err != nil {
		return castore.Digest{}, fmt.Errorf("nar: ingest %s: commit blob: %w", h.Path, err)
	}
	return dg, nil
}

// onlyWriter hides any ReadFrom of a blob writer so that io.CopyBuffer
// uses the large buffer given to it.
type onlyWriter struct{ io.Writer }
