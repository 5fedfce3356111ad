package evalstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"github.com/castor-nix/castor/builder/realise"
	"github.com/castor-nix/castor/evaluator/evalio"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/fsimport"
	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// Realiser builds derivations: *realise.Realiser is one. Realise makes the
// outputs of the given .drv paths (which are in the store) valid, or
// returns an error naming what failed.
type Realiser interface {
	Realise(ctx context.Context, drvPaths []string) ([]realise.Result, error)
}

var _ Realiser = (*realise.Realiser)(nil)

// ErrNoBuilder: a derivation output is needed during evaluation and the
// Store has no Realiser.
var ErrNoBuilder = errors.New("no builder")

// Store is an evalio.Store over the castor store. Its fields must be set
// before use; Realiser may be nil, and then import from derivation works
// only for outputs that are already valid.
type Store struct {
	Blobs       castore.BlobService
	Directories castore.DirectoryService
	PathInfos   pathinfo.Service
	Realiser    Realiser
}

var _ evalio.Store = (*Store)(nil)

// maxSymlinks bounds the symlinks followed while resolving one path, as
// the kernel's ELOOP does.
const maxSymlinks = 40

// StoreDir implements evalio.Store.
func (s *Store) StoreDir() string { return nixpath.StoreDir }

func inStore(p string) bool { return strings.HasPrefix(p, nixpath.StoreDir+"/") }

// pathInfo returns the PathInfo of sp, or nil when sp is not valid.
func (s *Store) pathInfo(ctx context.Context, sp nixpath.StorePath) (*pathinfo.PathInfo, error) {
	info, err := s.PathInfos.Get(ctx, sp.Digest)
	if errors.Is(err, pathinfo.ErrNotFound) || err == nil && info.StorePath != sp {
		return nil, nil
	}
	return info, err
}

// resolved is where a path leads: a castore node, or a host path (when a
// symlink in the store points out of it).
type resolved struct {
	node castore.Node
	host string
}

// resolve finds the node at p, an absolute path below the store directory,
// following symlinks on the way (and at the end if follow). Missing paths
// are *fs.PathError with the errno the kernel would give.
func (s *Store) resolve(ctx context.Context, p string, follow bool, op string) (resolved, error) {
	orig := p
	fail := func(errno syscall.Errno) (resolved, error) {
		return resolved{}, &fs.PathError{Op: op, Path: orig, Err: errno}
	}
	for hops := 0; ; hops++ {
		if hops > maxSymlinks {
			return fail(syscall.ELOOP)
		}
		if !inStore(p) {
			return resolved{host: p}, nil
		}
		first, rest, _ := strings.Cut(p[len(nixpath.StoreDir)+1:], "/")
		sp, err := nixpath.Parse(first)
		if err != nil {
			return fail(syscall.ENOENT)
		}
		info, err := s.pathInfo(ctx, sp)
		if err != nil {
			return resolved{}, err
		}
		if info == nil {
			return fail(syscall.ENOENT)
		}
		node := info.Node
		dir := sp.Absolute()
		comps := strings.Split(rest, "/")
		if rest == "" {
			comps = nil
		}
		next := ""
		for i, c := range comps {
			if node.Kind == castore.KindSymlink {
				// A symlink on the way: continue from its target.
				next = path.Join(linkTarget(path.Dir(dir), node.Target), strings.Join(comps[i:], "/"))
				break
			}
			if node.Kind != castore.KindDirectory {
				return fail(syscall.ENOTDIR)
			}
			d, err := s.Directories.GetDirectory(ctx, node.Digest)
			if err != nil {
				return resolved{}, fmt.Errorf("%s: %w", dir, err)
			}
			child, ok := d.Lookup(c)
			if !ok {
				return fail(syscall.ENOENT)
			}
			node, dir = child, dir+"/"+c
		}
		switch {
		case next != "":
			p = next
		case node.Kind == castore.KindSymlink && follow:
			p = linkTarget(path.Dir(dir), node.Target)
		default:
			return resolved{node: node}, nil
		}
	}
}

// linkTarget is where a symlink in directory dir pointing at target
// leads.
func linkTarget(dir, target string) string {
	if path.IsAbs(target) {
		return path.Clean(target)
	}
	return path.Join(dir, target)
}

func (s *Store) readBlob(ctx context.Context, n castore.Node, p string) ([]byte, error) {
	r, err := s.Blobs.OpenBlob(ctx, n.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	defer r.Close()
	b := make([]byte, r.Size())
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return b, nil
}

// ReadFile implements evalio.Store.
func (s *Store) ReadFile(ctx context.Context, p string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !inStore(p) {
		return os.ReadFile(p)
	}
	r, err := s.resolve(ctx, p, true, "open")
	if err != nil {
		return nil, err
	}
	if r.host != "" {
		return os.ReadFile(r.host)
	}
	if r.node.Kind != castore.KindFile {
		return nil, &fs.PathError{Op: "read", Path: p, Err: syscall.EISDIR}
	}
	return s.readBlob(ctx, r.node, p)
}

func fileType(k castore.NodeKind) evalio.FileType {
	switch k {
	case castore.KindFile:
		return evalio.TypeRegular
	case castore.KindDirectory:
		return evalio.TypeDirectory
	case castore.KindSymlink:
		return evalio.TypeSymlink
	}
	return evalio.TypeUnknown
}

// ReadDir implements evalio.Store.
func (s *Store) ReadDir(ctx context.Context, p string) ([]evalio.DirEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !inStore(p) {
		return evalio.NewHost().ReadDir(ctx, p)
	}
	r, err := s.resolve(ctx, p, true, "opendir")
	if err != nil {
		return nil, err
	}
	if r.host != "" {
		return evalio.NewHost().ReadDir(ctx, r.host)
	}
	if r.node.Kind != castore.KindDirectory {
		return nil, &fs.PathError{Op: "opendir", Path: p, Err: syscall.ENOTDIR}
	}
	d, err := s.Directories.GetDirectory(ctx, r.node.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	var out []evalio.DirEntry
	for _, e := range d.Entries() {
		out = append(out, evalio.DirEntry{Name: e.Name, Type: fileType(e.Kind)})
	}
	return out, nil
}

// Lstat implements evalio.Store.
func (s *Store) Lstat(ctx context.Context, p string) (evalio.FileInfo, error) {
	if err := ctx.Err(); err != nil {
		return evalio.FileInfo{}, err
	}
	if !inStore(p) {
		return evalio.NewHost().Lstat(ctx, p)
	}
	r, err := s.resolve(ctx, p, false, "lstat")
	if err != nil {
		return evalio.FileInfo{}, err
	}
	if r.host != "" {
		return evalio.NewHost().Lstat(ctx, r.host)
	}
	fi := evalio.FileInfo{Type: fileType(r.node.Kind), Executable: r.node.Executable}
	switch r.node.Kind {
	case castore.KindFile:
		fi.Size = int64(r.node.Size)
	case castore.KindSymlink:
		fi.Size = int64(len(r.node.Target))
	}
	return fi, nil
}

// ReadLink implements evalio.Store.
func (s *Store) ReadLink(ctx context.Context, p string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if !inStore(p) {
		return os.Readlink(p)
	}
	r, err := s.resolve(ctx, p, false, "readlink")
	if err != nil {
		return "", err
	}
	if r.host != "" {
		return os.Readlink(r.host)
	}
	if r.node.Kind != castore.KindSymlink {
		return "", &fs.PathError{Op: "readlink", Path: p, Err: syscall.EINVAL}
	}
	return r.node.Target, nil
}

// References implements evalio.Store.
func (s *Store) References(ctx context.Context, storePath string) ([]string, error) {
	sp, err := nixpath.ParseAbsolute(storePath)
	if err != nil {
		return nil, &evalio.NotValidError{Path: storePath}
	}
	info, err := s.pathInfo(ctx, sp)
	if err != nil {
		return nil, err
	}
	if info == nil {
		return nil, &evalio.NotValidError{Path: storePath}
	}
	refs := make([]string, len(info.References))
	for i, r := range info.References {
		refs[i] = r.Absolute()
	}
	slices.Sort(refs)
	return refs, nil
}

// AddText implements evalio.Store: a regular file holding text, at the
// text path its contents and references give it.
func (s *Store) AddText(ctx context.Context, name, text string, refs []string) (string, error) {
	var rs []nixpath.StorePath
	for _, r := range refs {
		sp, err := nixpath.ParseAbsolute(r)
		if err != nil {
			return "", err
		}
		rs = append(rs, sp)
	}
	if err := evalio.CheckTextName(name, sha256.Sum256([]byte(text)), refs); err != nil {
		return "", err
	}
	sp, err := nixpath.MakeTextPath(name, sha256.Sum256([]byte(text)), rs)
	if err != nil {
		return "", err
	}
	if info, err := s.pathInfo(ctx, sp); err != nil || info != nil {
		return sp.Absolute(), err
	}
	f, err := s.addFile(ctx, strings.NewReader(text), int64(len(text)))
	if err != nil {
		return "", fmt.Errorf("adding %s: %w", sp.Absolute(), err)
	}
	info := &pathinfo.PathInfo{
		StorePath:  sp,
		Node:       f.node,
		References: rs,
		NarSize:    f.narSize,
		NarSHA256:  f.narSHA256,
		CA:         &nixpath.ContentAddress{Method: nixpath.Text, Hash: nixpath.SHA256Hash(f.sha256)},
	}
	info.SortReferences()
	if _, err := s.PathInfos.Put(ctx, info); err != nil {
		return "", fmt.Errorf("adding %s: %w", sp.Absolute(), err)
	}
	return sp.Absolute(), nil
}

// addedFile is a regular file stored as a blob, with what its store path
// and PathInfo need.
type addedFile struct {
	node      castore.Node // a non-executable file
	sha256    [sha256.Size]byte
	narSize   uint64
	narSHA256 [sha256.Size]byte
}

// addFile stores size bytes from r as a blob, hashing the contents and
// their NAR (a non-executable regular file) in the same pass.
func (s *Store) addFile(ctx context.Context, r io.Reader, size int64) (*addedFile, error) {
	bw, err := s.Blobs.NewBlobWriter(ctx)
	if err != nil {
		return nil, err
	}
	defer bw.Close()
	contents := sha256.New()
	narHash := &countingHash{h: sha256.New()}
	narHash.Write(fileNARHeader(size))
	n, err := io.Copy(io.MultiWriter(bw, contents, narHash), r)
	if err != nil {
		return nil, err
	}
	if n != size {
		return nil, fmt.Errorf("size changed while reading: %d bytes, expected %d", n, size)
	}
	narHash.Write(fileNARTrailer(size))
	d, err := bw.Commit()
	if err != nil {
		return nil, err
	}
	f := &addedFile{node: castore.Node{Kind: castore.KindFile, Digest: d, Size: uint64(size)}, narSize: narHash.n}
	contents.Sum(f.sha256[:0])
	narHash.h.Sum(f.narSHA256[:0])
	return f, nil
}

// fileNARHeader and fileNARTrailer surround the contents of a
// non-executable regular file to make its NAR (TestFileNAR checks them
// against nar.Writer). They spare small files nar.Writer's buffers.
func fileNARHeader(size int64) []byte {
	var b []byte
	for _, s := range []string{"nix-archive-1", "(", "type", "regular", "contents"} {
		b = narString(b, s)
	}
	return binary.LittleEndian.AppendUint64(b, uint64(size))
}

func fileNARTrailer(size int64) []byte {
	b := make([]byte, (8-size%8)%8)
	return narString(b, ")")
}

func narString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	b = append(b, s...)
	return append(b, make([]byte, (8-len(s)%8)%8)...)
}

type countingHash struct {
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n uint64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += uint64(len(p))
	return c.h.Write(p)
}

// Realise implements evalio.Store. Store paths must be valid; derivation
// outputs are built by the Realiser when they are not.
func (s *Store) Realise(ctx context.Context, paths []evalio.DerivedPath) error {
	var drvs []string
	want := map[string][]string{}
	for _, p := range paths {
		sp, err := nixpath.ParseAbsolute(p.Path)
		if err != nil {
			return &evalio.NotValidError{Path: p.Path}
		}
		info, err := s.pathInfo(ctx, sp)
		if err != nil {
			return err
		}
		if info == nil {
			return &evalio.NotValidError{Path: p.Path}
		}
		if p.Output == "" || !sp.IsDerivation() {
			continue
		}
		if _, ok := want[p.Path]; !ok {
			drvs = append(drvs, p.Path)
		}
		want[p.Path] = append(want[p.Path], p.Output)
	}
	if len(drvs) == 0 {
		return nil
	}
	if s.Realiser == nil {
		return fmt.Errorf("cannot build '%s' during evaluation: %w", drvs[0], ErrNoBuilder)
	}
	results, err := s.Realiser.Realise(ctx, drvs)
	if err != nil {
		return err
	}
	for _, res := range results {
		for _, o := range want[res.DrvPath] {
			if _, ok := res.Outputs[o]; !ok {
				return fmt.Errorf("derivation '%s' does not have an output named '%s'", res.DrvPath, o)
			}
		}
	}
	return nil
}

// AddPath implements evalio.Store: a tree (NAR-hashed, Recursive) or a
// file (flat) from the host, or from the store itself, becomes a store
// path with a fixed content address.
func (s *Store) AddPath(ctx context.Context, req evalio.AddPathRequest) (string, error) {
	method := nixpath.Flat
	if req.Recursive {
		method = nixpath.Recursive
	}
	var refs []nixpath.StorePath
	if req.KeepReferences && inStore(req.Path) {
		if sp, _, err := nixpath.ParseAbsoluteWithSub(req.Path); err == nil {
			if info, err := s.pathInfo(ctx, sp); err == nil && info != nil {
				refs = info.References
			}
		}
	}
	if !req.Recursive {
		// Nix cannot give a flat path references.
		refs = nil
	}
	refNames := make([]string, len(refs))
	for i, r := range refs {
		refNames[i] = r.Absolute()
	}
	if req.ExpectedSHA256 != nil {
		// A path with the expected contents is not read again (as Nix).
		var d [sha256.Size]byte
		copy(d[:], req.ExpectedSHA256)
		if err := evalio.CheckFixedName(req.Recursive, d, req.Name, refNames); err != nil {
			return "", err
		}
		sp, err := nixpath.MakeFixedOutputPath(method, nixpath.SHA256Hash(d), req.Name, refs, false)
		if err != nil {
			return "", fmt.Errorf("adding '%s': %w", req.Path, err)
		}
		if info, err := s.pathInfo(ctx, sp); err != nil || info != nil {
			return sp.Absolute(), err
		}
	}
	var root castore.Node
	var narSize uint64
	var narSHA, sum [sha256.Size]byte
	var err error
	if req.Recursive {
		root, narSize, narSHA, err = s.importTree(ctx, req.Path, req.Filter)
		sum = narSHA
	} else {
		var f *addedFile
		f, err = s.importFile(ctx, req.Path)
		if f != nil {
			root, narSize, narSHA, sum = f.node, f.narSize, f.narSHA256, f.sha256
		}
	}
	if err != nil {
		return "", err
	}
	if req.ExpectedSHA256 != nil && !bytes.Equal(req.ExpectedSHA256, sum[:]) {
		return "", fmt.Errorf("store path mismatch in (possibly filtered) path added from '%s': expected sha256 %x, got %x: %w",
			req.Path, req.ExpectedSHA256, sum, evalio.ErrHashMismatch)
	}
	if err := evalio.CheckFixedName(req.Recursive, sum, req.Name, refNames); err != nil {
		return "", err
	}
	sp, err := nixpath.MakeFixedOutputPath(method, nixpath.SHA256Hash(sum), req.Name, refs, false)
	if err != nil {
		return "", fmt.Errorf("adding '%s': %w", req.Path, err)
	}
	if info, err := s.pathInfo(ctx, sp); err != nil || info != nil {
		return sp.Absolute(), err
	}
	info := &pathinfo.PathInfo{
		StorePath:  sp,
		Node:       root,
		References: slices.Clone(refs),
		NarSize:    narSize,
		NarSHA256:  narSHA,
		CA:         &nixpath.ContentAddress{Method: method, Hash: nixpath.SHA256Hash(sum)},
	}
	info.SortReferences()
	if _, err := s.PathInfos.Put(ctx, info); err != nil {
		return "", fmt.Errorf("adding '%s': %w", req.Path, err)
	}
	return sp.Absolute(), nil
}

// importFile stores the contents of the file at p (following symlinks)
// for a flat path.
func (s *Store) importFile(ctx context.Context, p string) (*addedFile, error) {
	if inStore(p) {
		r, err := s.resolve(ctx, p, true, "open")
		if err != nil {
			return nil, err
		}
		if r.host == "" {
			if r.node.Kind != castore.KindFile {
				return nil, &fs.PathError{Op: "read", Path: p, Err: syscall.EISDIR}
			}
			b, err := s.Blobs.OpenBlob(ctx, r.node.Digest)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			defer b.Close()
			return s.addFile(ctx, b, b.Size())
		}
		p = r.host
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: p, Err: syscall.EISDIR}
	}
	return s.addFile(ctx, f, fi.Size())
}

// importTree stores the tree at p (not following a final symlink) with
// the entries filter accepts, and returns its root and NAR.
func (s *Store) importTree(ctx context.Context, p string, filter evalio.Filter) (castore.Node, uint64, [sha256.Size]byte, error) {
	var fail [sha256.Size]byte
	if inStore(p) {
		r, err := s.resolve(ctx, p, false, "lstat")
		if err != nil {
			return castore.Node{}, 0, fail, err
		}
		if r.host == "" {
			root, err := s.filterTree(ctx, r.node, p, filter)
			if err != nil {
				return castore.Node{}, 0, fail, err
			}
			size, sum, err := nar.CalculateNAR(ctx, root, s.Blobs, s.Directories)
			return root, size, sum, err
		}
		p = r.host
	}
	var opts fsimport.Options
	if filter != nil {
		opts.Filter = func(p string, mode os.FileMode) bool { return filter(p, modeType(mode)) }
	}
	return fsimport.Import(ctx, p, s.Blobs, s.Directories, &opts)
}

func modeType(m os.FileMode) evalio.FileType {
	switch m.Type() {
	case 0:
		return evalio.TypeRegular
	case os.ModeDir:
		return evalio.TypeDirectory
	case os.ModeSymlink:
		return evalio.TypeSymlink
	}
	return evalio.TypeUnknown
}

// filterTree returns the tree at n (whose path is p) without the entries
// filter rejects, putting the directories that change.
func (s *Store) filterTree(ctx context.Context, n castore.Node, p string, filter evalio.Filter) (castore.Node, error) {
	if filter == nil || n.Kind != castore.KindDirectory {
		return n, nil
	}
	put := s.Directories.NewDirectoryPutter(ctx)
	// Also when the filter raises an evaluation error (a panic).
	defer put.Abort()
	root, changed, err := s.filterDir(ctx, put, n, p, filter)
	if err != nil || !changed {
		return root, err
	}
	if _, err := put.Close(ctx); err != nil {
		return castore.Node{}, err
	}
	return root, nil
}

func (s *Store) filterDir(ctx context.Context, put castore.DirectoryPutter, n castore.Node, p string, filter evalio.Filter) (castore.Node, bool, error) {
	d, err := s.Directories.GetDirectory(ctx, n.Digest)
	if err != nil {
		return castore.Node{}, false, fmt.Errorf("%s: %w", p, err)
	}
	entries := d.Entries()
	kept := entries[:0:0]
	changed := false
	for _, e := range entries {
		cp := p + "/" + e.Name
		if !filter(cp, fileType(e.Kind)) {
			changed = true
			continue
		}
		if e.Kind == castore.KindDirectory {
			c, ch, err := s.filterDir(ctx, put, e.Node, cp, filter)
			if err != nil {
				return castore.Node{}, false, err
			}
			e.Node, changed = c, changed || ch
		}
		kept = append(kept, e)
	}
	if !changed {
		return n, false, nil
	}
	nd, err := castore.NewDirectory(kept)
	if err != nil {
		return castore.Node{}, false, err
	}
	if _, err := put.Put(ctx, nd); err != nil {
		return castore.Node{}, false, err
	}
	return nd.Node(), true, nil
}
