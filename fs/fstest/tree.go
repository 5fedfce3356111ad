package fstest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/castor-nix/castor/store/castore"
)

// Node is a tree described in Go: a Dir, a File or a Symlink.
type Node interface{ isNode() }

// Dir maps names to nodes.
type Dir map[string]Node

// File is a regular file.
type File struct {
	Data       []byte
	Executable bool
}

// Symlink is a symbolic link to its target.
type Symlink string

func (Dir) isNode()     {}
func (File) isNode()    {}
func (Symlink) isNode() {}

// Put stores the tree n in the castore, blobs first, directories as one
// closure, and returns its root node.
func Put(ctx context.Context, blobs castore.BlobIngester, dirs castore.DirectoryIngester, n Node) (castore.Node, error) {
	p := dirs.NewDirectoryPutter(ctx)
	root, err := put(ctx, blobs, p, n)
	if err != nil {
		p.Abort()
		return castore.Node{}, err
	}
	if root.Kind != castore.KindDirectory {
		p.Abort()
		return root, nil
	}
	if _, err := p.Close(ctx); err != nil {
		return castore.Node{}, err
	}
	return root, nil
}

func put(ctx context.Context, blobs castore.BlobIngester, p castore.DirectoryPutter, n Node) (castore.Node, error) {
	switch n := n.(type) {
	case File:
		d, err := PutBlob(ctx, blobs, n.Data)
		if err != nil {
			return castore.Node{}, err
		}
		return castore.Node{Kind: castore.KindFile, Digest: d, Size: uint64(len(n.Data)), Executable: n.Executable}, nil
	case Symlink:
		return castore.Node{Kind: castore.KindSymlink, Target: string(n)}, nil
	case Dir:
		entries := make([]castore.NamedNode, 0, len(n))
		for name, child := range n {
			c, err := put(ctx, blobs, p, child)
			if err != nil {
				return castore.Node{}, fmt.Errorf("%s: %w", name, err)
			}
			entries = append(entries, castore.NamedNode{Name: name, Node: c})
		}
		dir, err := castore.NewDirectory(entries)
		if err != nil {
			return castore.Node{}, err
		}
		d, err := p.Put(ctx, dir)
		if err != nil {
			return castore.Node{}, err
		}
		size, _ := dir.Size()
		return castore.Node{Kind: castore.KindDirectory, Digest: d, Size: size}, nil
	}
	return castore.Node{}, fmt.Errorf("fstest: unknown node %T", n)
}

// PutBlob stores data as one blob.
func PutBlob(ctx context.Context, blobs castore.BlobIngester, data []byte) (castore.Digest, error) {
	w, err := blobs.NewBlobWriter(ctx)
	if err != nil {
		return castore.Digest{}, err
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		return castore.Digest{}, err
	}
	return w.Commit()
}

// WriteDisk writes the tree n at path with the modes of a Nix store: files
// 0444, executables and directories 0555.
func WriteDisk(path string, n Node) error {
	switch n := n.(type) {
	case File:
		mode := os.FileMode(0o444)
		if n.Executable {
			mode = 0o555
		}
		if err := os.WriteFile(path, n.Data, 0o644); err != nil {
			return err
		}
		return os.Chmod(path, mode)
	case Symlink:
		return os.Symlink(string(n), path)
	case Dir:
		if err := os.Mkdir(path, 0o755); err != nil {
			return err
		}
		for name, child := range n {
			if err := WriteDisk(filepath.Join(path, name), child); err != nil {
				return err
			}
		}
		return os.Chmod(path, 0o555)
	}
	return fmt.Errorf("fstest: unknown node %T", n)
}

// Entry describes one path of a tree on disk, for comparing trees.
type Entry struct {
	Type   string // "dir", "file" or "symlink"
	Perm   string // as stat -c %a prints it
	Size   int64  // files: the length; symlinks: the target's length
	SHA256 string // files only
	Target string // symlinks only
}

// Manifest describes every path under root, keyed by the path relative to
// root ("." for root itself), hashing every file. It never follows
// symlinks.
func Manifest(root string) (map[string]Entry, error) {
	m := map[string]Entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		e := Entry{Perm: fmt.Sprintf("%o", st.Mode&0o7777), Size: st.Size}
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			e.Type, e.Size = "dir", 0 // directory sizes differ by filesystem
		case syscall.S_IFLNK:
			e.Type = "symlink"
			if e.Target, err = os.Readlink(p); err != nil {
				return err
			}
		case syscall.S_IFREG:
			e.Type = "file"
			if e.SHA256, err = hashFile(p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unexpected file type %o", p, st.Mode&syscall.S_IFMT)
		}
		m[rel] = e
		return nil
	})
	return m, err
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// DiffManifests lists the differences between two manifests, sorted, or
// nothing when they are equal.
func DiffManifests(want, got map[string]Entry) []string {
	var diffs []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s: missing", p))
		case g != w:
			diffs = append(diffs, fmt.Sprintf("%s: got %+v, want %+v", p, g, w))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: unexpected", p))
		}
	}
	sort.Strings(diffs)
	return diffs
}

// RandomOptions shape a random tree.
type RandomOptions struct {
	Files    int // regular files (some executable)
	MaxSize  int // largest file, in bytes
	Symlinks int
	MaxDepth int // deepest directory nesting
	// Duplicates is the share (0..1) of files that repeat an earlier
	// file's contents, and of directories that repeat an earlier
	// subtree, so that content sharing shows.
	Duplicates float64
}

// Random builds a random tree: names with spaces, dots and non-ASCII
// bytes, empty and large files, executables, relative and absolute
// symlinks (some dangling), empty directories and repeated content.
func Random(rng *rand.Rand, o RandomOptions) Dir {
	root := Dir{}
	dirs := []Dir{root}
	var files []File
	name := func(d Dir) string {
		for {
			var n string
			switch rng.IntN(6) {
			case 0:
				n = fmt.Sprintf("f%d", rng.IntN(1_000_000))
			case 1:
				n = fmt.Sprintf("with space %d", rng.IntN(1000))
			case 2:
				n = fmt.Sprintf(".hidden%d", rng.IntN(1000))
			case 3:
				n = fmt.Sprintf("ünïcödé-%d", rng.IntN(1000))
			case 4:
				n = fmt.Sprintf("lib%d.so.%d", rng.IntN(100), rng.IntN(10))
			default:
				n = fmt.Sprintf("%c%d", 'a'+rng.IntN(26), rng.IntN(100))
			}
			if _, taken := d[n]; !taken {
				return n
			}
		}
	}
	levels := []int{0}
	for range max(1, o.Files/8) {
		i := rng.IntN(len(dirs))
		if levels[i] >= o.MaxDepth {
			continue
		}
		d := Dir{}
		dirs[i][name(dirs[i])] = d
		dirs, levels = append(dirs, d), append(levels, levels[i]+1)
	}
	for range o.Files {
		d := dirs[rng.IntN(len(dirs))]
		var f File
		if len(files) > 0 && rng.Float64() < o.Duplicates {
			f = files[rng.IntN(len(files))]
		} else {
			size := 0
			switch r := rng.IntN(10); {
			case r == 0:
				size = 0
			case r < 7:
				size = rng.IntN(min(o.MaxSize, 4096) + 1)
			default:
				size = rng.IntN(o.MaxSize + 1)
			}
			data := make([]byte, size)
			var seed [32]byte
			for i := range seed {
				seed[i] = byte(rng.Uint32())
			}
			rand.NewChaCha8(seed).Read(data)
			f = File{Data: data, Executable: rng.IntN(5) == 0}
			files = append(files, f)
		}
		d[name(d)] = f
	}
	for range o.Symlinks {
		d := dirs[rng.IntN(len(dirs))]
		var target string
		switch rng.IntN(3) {
		case 0:
			target = "../" + fmt.Sprintf("f%d", rng.IntN(100))
		case 1:
			target = fmt.Sprintf("/nix/store/%032d-dangling", rng.IntN(1000))
		default:
			target = fmt.Sprintf("sibling %d", rng.IntN(10))
		}
		d[name(d)] = Symlink(target)
	}
	// Repeat some subtrees whole.
	for i := 1; i < len(dirs) && o.Duplicates > 0; i++ {
		if rng.Float64() < o.Duplicates/4 {
			j := rng.IntN(len(dirs))
			if levels[j] < o.MaxDepth && !contains(dirs[i], dirs[j]) {
				dirs[j][name(dirs[j])] = dirs[i]
			}
		}
	}
	return root
}

// contains reports whether d is inner or below it (so that adding d below
// inner would make a cycle).
func contains(d, inner Dir) bool {
	if fmt.Sprintf("%p", d) == fmt.Sprintf("%p", inner) {
		return true
	}
	for _, c := range d {
		if cd, ok := c.(Dir); ok && contains(cd, inner) {
			return true
		}
	}
	return false
}
