package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/castor-nix/castor/store/nar"
)

// DirOutputs are outputs left in a directory tree of the host: output i is
// at Root/Paths[i]. Executors whose builds write to the host's disk (the
// namespace sandbox, fetches) return them.
type DirOutputs struct {
	Root  string
	Paths []string
	// Cleanup, if set, is called once by Close (to delete Root).
	Cleanup func() error

	once sync.Once
	err  error
}

var _ Outputs = (*DirOutputs)(nil)

// WriteNAR implements Outputs.
func (d *DirOutputs) WriteNAR(ctx context.Context, i int, w io.Writer) error {
	if i < 0 || i >= len(d.Paths) {
		return fmt.Errorf("%w: no output %d", ErrInvalid, i)
	}
	return DumpNAR(ctx, filepath.Join(d.Root, filepath.FromSlash(d.Paths[i])), w)
}

// Close implements Outputs.
func (d *DirOutputs) Close() error {
	d.once.Do(func() {
		if d.Cleanup != nil {
			d.err = d.Cleanup()
		}
	})
	return d.err
}

// DumpNAR writes the tree at p as a NAR, as `nix-store --dump` does: a
// file is executable when its owner may execute it; modes, times and
// owners are not recorded. A missing p is an error wrapping ErrNoOutput;
// sockets, devices and FIFOs are errors wrapping ErrInvalid.
func DumpNAR(ctx context.Context, p string, w io.Writer) error {
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNoOutput, filepath.Base(p))
	}
	nw := nar.NewWriter(w)
	buf := make([]byte, 256<<10)
	if err := dumpNode(ctx, nw, p, "/", buf); err != nil {
		return err
	}
	return nw.Close()
}

func dumpNode(ctx context.Context, nw *nar.Writer, p, narPath string, buf []byte) error {
	if err := ctx.Err(); err != nil {
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
		if err := nw.WriteHeader(&nar.Header{Path: narPath, Type: nar.TypeRegular, Size: st.Size(), Executable: mode&0o100 != 0}); err != nil {
			return err
		}
		n, err := io.CopyBuffer(onlyWriter{nw}, io.LimitReader(f, st.Size()), buf)
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
		return nw.WriteHeader(&nar.Header{Path: narPath, Type: nar.TypeSymlink, LinkTarget: target})
	case mode.IsDir():
		if err := nw.WriteHeader(&nar.Header{Path: narPath, Type: nar.TypeDirectory}); err != nil {
			return err
		}
		entries, err := os.ReadDir(p) // sorted by name, bytewise, as NAR wants
		if err != nil {
			return err
		}
		for _, e := range entries {
			child := narPath + "/" + e.Name()
			if narPath == "/" {
				child = "/" + e.Name()
			}
			if err := dumpNode(ctx, nw, filepath.Join(p, e.Name()), child, buf); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("%w: %s has an unsupported type (%v)", ErrInvalid, p, st.Mode().Type())
	}
}

// onlyWriter hides a writer's ReadFrom so io.CopyBuffer uses the buffer.
type onlyWriter struct{ io.Writer }
