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
	err := nar.DumpPath(ctx, w, p, nil)
	if errors.Is(err, nar.ErrUnsupportedFile) {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}
