package evalio

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/nixpath"
)

// Host implements Store on the host file system without a store: AddPath
// and AddText compute the store path Nix would produce and write nothing,
// as `nix-instantiate --readonly-mode` does; Realise accepts the paths it
// computed and host paths that exist, and cannot build. Reads below a
// computed store path are served from the source it was computed from.
// The zero value is not usable; call NewHost.
type Host struct {
	mu       sync.Mutex
	sources  map[string]string   // store path -> source path (for AddPath)
	texts    map[string]string   // store path -> contents (for AddText)
	textRefs map[string][]string // store path -> references (for AddText)
}

var _ Store = (*Host)(nil)

// NewHost returns a Host store.
func NewHost() *Host {
	return &Host{sources: map[string]string{}, texts: map[string]string{}, textRefs: map[string][]string{}}
}

// StoreDir implements Store.
func (h *Host) StoreDir() string { return nixpath.StoreDir }

// resolve maps a path below a computed store path to its source.
func (h *Host) resolve(path string) (string, string, bool) {
	dir := nixpath.StoreDir + "/"
	if !strings.HasPrefix(path, dir) {
		return path, "", false
	}
	rest := path[len(dir):]
	base, sub, _ := strings.Cut(rest, "/")
	h.mu.Lock()
	defer h.mu.Unlock()
	sp := dir + base
	if src, ok := h.sources[sp]; ok {
		if sub == "" {
			return src, "", true
		}
		return src + "/" + sub, "", true
	}
	if t, ok := h.texts[sp]; ok && sub == "" {
		return "", t, true
	}
	return path, "", false
}

// ReadFile implements Store.
func (h *Host) ReadFile(ctx context.Context, path string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, text, ok := h.resolve(path)
	if ok && p == "" {
		return []byte(text), nil
	}
	return os.ReadFile(p)
}

// ReadDir implements Store.
func (h *Host) ReadDir(ctx context.Context, path string) ([]DirEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, _, _ := h.resolve(path)
	ents, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	out := make([]DirEntry, len(ents))
	for i, e := range ents {
		out[i] = DirEntry{Name: e.Name(), Type: modeType(e.Type())}
	}
	return out, nil
}

func modeType(m fs.FileMode) FileType {
	switch {
	case m&fs.ModeSymlink != 0:
		return TypeSymlink
	case m.IsDir():
		return TypeDirectory
	case m.IsRegular():
		return TypeRegular
	}
	return TypeUnknown
}

// Lstat implements Store.
func (h *Host) Lstat(ctx context.Context, path string) (FileInfo, error) {
	if err := ctx.Err(); err != nil {
		return FileInfo{}, err
	}
	p, text, ok := h.resolve(path)
	if ok && p == "" {
		return FileInfo{Type: TypeRegular, Size: int64(len(text))}, nil
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return FileInfo{}, err
	}
	return FileInfo{Type: modeType(fi.Mode()), Executable: fi.Mode()&0o111 != 0, Size: fi.Size()}, nil
}

// ReadLink implements Store.
func (h *Host) ReadLink(ctx context.Context, path string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	p, _, _ := h.resolve(path)
	return os.Readlink(p)
}

// AddPath implements Store by hashing the tree as a NAR.
func (h *Host) AddPath(ctx context.Context, req AddPathRequest) (string, error) {
	src, text, ok := h.resolve(req.Path)
	isText := ok && src == ""
	var sum [sha256.Size]byte
	if req.Recursive {
		hw := sha256.New()
		if isText {
			// A text path this Host computed: the NAR of a regular file.
			nw := nar.NewWriter(hw)
			if err := nw.WriteHeader(&nar.Header{Path: "/", Type: nar.TypeRegular, Size: int64(len(text))}); err != nil {
				return "", err
			}
			if _, err := io.WriteString(nw, text); err != nil {
				return "", err
			}
			if err := nw.Close(); err != nil {
				return "", err
			}
		} else if err := dumpNAR(ctx, hw, src, src, req.Filter); err != nil {
			return "", err
		}
		copy(sum[:], hw.Sum(nil))
		if err := checkHash(req, sum); err != nil {
			return "", err
		}
		if err := CheckFixedName(true, sum, req.Name, nil); err != nil {
			return "", err
		}
		sp, err := nixpath.MakeSourcePath(sum, req.Name, nil, false)
		if err != nil {
			return "", fmt.Errorf("adding %s: %w", req.Path, err)
		}
		h.remember(sp.Absolute(), src, text, isText)
		return sp.Absolute(), nil
	}
	data := []byte(text)
	if !isText {
		var err error
		if data, err = os.ReadFile(src); err != nil {
			return "", err
		}
	}
	sum = sha256.Sum256(data)
	if err := checkHash(req, sum); err != nil {
		return "", err
	}
	if err := CheckFixedName(false, sum, req.Name, nil); err != nil {
		return "", err
	}
	sp, err := nixpath.MakeFixedOutputPath(nixpath.Flat, nixpath.SHA256Hash(sum), req.Name, nil, false)
	if err != nil {
		return "", fmt.Errorf("adding %s: %w", req.Path, err)
	}
	h.remember(sp.Absolute(), src, text, isText)
	return sp.Absolute(), nil
}

// remember records where reads below a computed path go: the source, or
// the text of a text path copied.
func (h *Host) remember(sp, src, text string, isText bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if isText {
		h.texts[sp] = text
		h.textRefs[sp] = nil
		return
	}
	h.sources[sp] = src
}

func checkHash(req AddPathRequest, sum [sha256.Size]byte) error {
	if req.ExpectedSHA256 != nil && !bytes.Equal(req.ExpectedSHA256, sum[:]) {
		return fmt.Errorf("store path mismatch in (possibly filtered) path added from '%s': expected sha256 %x, got %x: %w",
			req.Path, req.ExpectedSHA256, sum, ErrHashMismatch)
	}
	return nil
}

// AddText implements Store.
func (h *Host) AddText(ctx context.Context, name, text string, refs []string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	var rs []nixpath.StorePath
	for _, r := range refs {
		sp, err := nixpath.ParseAbsolute(r)
		if err != nil {
			return "", err
		}
		rs = append(rs, sp)
	}
	if err := CheckTextName(name, sha256.Sum256([]byte(text)), refs); err != nil {
		return "", err
	}
	sp, err := nixpath.MakeTextPath(name, sha256.Sum256([]byte(text)), rs)
	if err != nil {
		return "", err
	}
	abs := make([]string, len(rs))
	for i, r := range rs {
		abs[i] = r.Absolute()
	}
	sort.Strings(abs)
	h.mu.Lock()
	h.texts[sp.Absolute()] = text
	h.textRefs[sp.Absolute()] = slices.Compact(abs)
	h.mu.Unlock()
	return sp.Absolute(), nil
}

// References implements Store for the paths Host computed: text files
// refer to what they were given, sources to nothing. Other paths are not
// valid (Host has no store to ask).
func (h *Host) References(ctx context.Context, storePath string) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if refs, ok := h.textRefs[storePath]; ok {
		return slices.Clone(refs), nil
	}
	if _, ok := h.sources[storePath]; ok {
		return nil, nil
	}
	return nil, &NotValidError{Path: storePath}
}

// Realise implements Store: paths Host computed, and host paths that
// exist, are valid; derivation outputs would need a builder, so, as in
// Nix's read-only mode, their derivation is reported as not valid.
func (h *Host) Realise(ctx context.Context, paths []DerivedPath) error {
	for _, p := range paths {
		if p.Output != "" {
			return &NotValidError{Path: p.Path}
		}
		if _, _, ok := h.resolve(p.Path); ok {
			continue
		}
		if _, err := os.Lstat(p.Path); err == nil {
			continue
		}
		return &NotValidError{Path: p.Path}
	}
	return nil
}

// dumpNAR writes the NAR serialisation of the tree at path, leaving out
// what filter rejects (it sees absolute paths).
func dumpNAR(ctx context.Context, w hash.Hash, path, root string, filter Filter) error {
	var f nar.DumpFilter
	if filter != nil {
		f = func(p string, typ fs.FileMode) bool { return filter(p, modeType(typ)) }
	}
	err := nar.DumpPath(ctx, w, path, f)
	if errors.Is(err, nar.ErrUnsupportedFile) {
		return fmt.Errorf("file '%s' has an unsupported type: %w", path, errors.ErrUnsupported)
	}
	return err
}
