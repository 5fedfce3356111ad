package images

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// Entry is one file, directory or symlink of an initramfs.
type Entry struct {
	Path   string      // absolute in the guest: "/bin/busybox"
	Mode   fs.FileMode // permission bits plus fs.ModeDir or fs.ModeSymlink
	Data   []byte      // file contents
	Target string      // symlink target
}

// WriteCPIO writes entries as a cpio newc archive, the format the kernel
// unpacks into its initial rootfs. Parent directories are added when
// missing; entries are sorted by path and carry uid/gid 0 and time 0, so
// the output depends only on the entries. Duplicate paths are an error.
func WriteCPIO(w io.Writer, entries []Entry) error {
	all := map[string]Entry{}
	for _, e := range entries {
		p := path.Clean("/" + e.Path)
		if p == "/" {
			return fmt.Errorf("images: cpio entry with empty path")
		}
		if _, dup := all[p]; dup {
			return fmt.Errorf("images: duplicate cpio entry %s", p)
		}
		e.Path = p
		all[p] = e
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := all[d]; !ok {
				all[d] = Entry{Path: d, Mode: fs.ModeDir | 0o755}
			}
		}
	}
	paths := make([]string, 0, len(all))
	for p := range all {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	cw := cpio.NewWriter(w)
	for i, p := range paths {
		e := all[p]
		if p2 := path.Dir(p); p2 != "/" && !all[p2].Mode.IsDir() {
			return fmt.Errorf("images: %s is inside %s, which is not a directory", p, p2)
		}
		h := &cpio.Header{
			Name:  strings.TrimPrefix(p, "/"),
			Links: 1,
			Inode: int64(i + 1),
		}
		var body []byte
		switch {
		case e.Mode&fs.ModeDir != 0:
			h.Mode = cpio.TypeDir | cpio.FileMode(e.Mode.Perm())
			h.Links = 2
		case e.Mode&fs.ModeSymlink != 0:
			h.Mode = cpio.TypeSymlink | 0o777
			body = []byte(e.Target)
		case e.Mode.IsRegular():
			h.Mode = cpio.TypeReg | cpio.FileMode(e.Mode.Perm())
			body = e.Data
		default:
			return fmt.Errorf("images: %s: unsupported file type %v", p, e.Mode.Type())
		}
		h.Size = int64(len(body))
		if err := cw.WriteHeader(h); err != nil {
			return fmt.Errorf("images: cpio header %s: %w", p, err)
		}
		if _, err := cw.Write(body); err != nil {
			return fmt.Errorf("images: cpio %s: %w", p, err)
		}
	}
	return cw.Close()
}
