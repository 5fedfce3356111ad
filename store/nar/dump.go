package nar

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrUnsupportedFile is wrapped by DumpPath's errors about files a NAR
// cannot hold: sockets, devices, FIFOs.
var ErrUnsupportedFile = fmt.Errorf("%w: unsupported file type", fs.ErrInvalid)

// DumpFilter decides whether DumpPath includes the entry at path (below the
// root; the root is always included); typ is its type bits (fs.ModeDir,
// fs.ModeSymlink, or 0 for a regular file). nil includes everything.
type DumpFilter func(path string, typ fs.FileMode) bool

// DumpPath writes the tree at path as a NAR, as `nix-store --dump` does: a
// symlink at path is dumped as a symlink; a regular file is executable when
// its owner may execute it; modes, times and owners are not recorded. A
// file that changes size while it is read is an error. The NAR goes to w
// through a Writer, so what it writes is checked like any NAR.
func DumpPath(ctx context.Context, w io.Writer, path string, filter DumpFilter) error {
	nw := NewWriter(w)
	d := &dumper{ctx: ctx, nw: nw, filter: filter, buf: make([]byte, 256<<10)}
	if err := d.node(path, "/"); err != nil {
		return err
	}
	return nw.Close()
}

type dumper struct {
	ctx    context.Context
	nw     *Writer
	filter DumpFilter
	buf    []byte
}

func (d *dumper) node(p, narPath string) error {
	if err := d.ctx.Err(); err != nil {
		return err
	}
	st, err := os.Lstat(p)
	if err != nil {
		return err
	}
	switch mode := st.Mode(); {
	case mode.IsRegular():
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := d.nw.WriteHeader(&Header{Path: narPath, Type: TypeRegular, Size: st.Size(), Executable: mode&0o100 != 0}); err != nil {
			return err
		}
		n, err := io.CopyBuffer(onlyWriter{d.nw}, io.LimitReader(f, st.Size()), d.buf)
		if err != nil {
			return err
		}
		if n != st.Size() {
			return fmt.Errorf("%s changed size while being read", p)
		}
		return nil
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		return d.nw.WriteHeader(&Header{Path: narPath, Type: TypeSymlink, LinkTarget: target})
	case mode.IsDir():
		if err := d.nw.WriteHeader(&Header{Path: narPath, Type: TypeDirectory}); err != nil {
			return err
		}
		entries, err := os.ReadDir(p) // sorted by name, bytewise, as NAR wants
		if err != nil {
			return err
		}
		for _, e := range entries {
			child := filepath.Join(p, e.Name())
			if d.filter != nil && !d.filter(child, e.Type()) {
				continue
			}
			sub := narPath + "/" + e.Name()
			if narPath == "/" {
				sub = "/" + e.Name()
			}
			if err := d.node(child, sub); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("%w: %s (%v)", ErrUnsupportedFile, p, mode.Type())
	}
}
