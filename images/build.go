package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// formatVersion is hashed into every cache key: bump it when the layout
// of what Build writes changes, so old cache entries are not reused.
const formatVersion = "castor-images-1"

// Spec says what goes into a VM's boot files. Zero fields get Debian's
// defaults (DefaultSpec fills them).
type Spec struct {
	// Kernel is a bzImage or ELF vmlinux; default DebianKernel().
	Kernel string
	// ModulesDir is the kernel's module tree (/lib/modules/<release>).
	ModulesDir string
	// Modules are loaded by the guest, in dependency order.
	Modules []string
	// Busybox is a static busybox binary installed as /bin/busybox with
	// its applets linked in /bin; empty means no busybox.
	Busybox string
	// Init is /init: a static binary (the guest agent) or a script.
	Init []byte
	// Files are extra entries (test payloads, configuration).
	Files []Entry
	// StripModuleSignatures drops the signatures Debian appends to its
	// modules: the guest kernel then loads them without verifying an RSA
	// signature each (about 50 ms for castor's agent's modules under
	// TCG), tainting itself once. The modules are the host's own files,
	// so the signature proves nothing in the guest.
	StripModuleSignatures bool
}

// DefaultSpec returns a spec with Debian's cloud kernel, its module tree,
// GuestModules and /bin/busybox, for the given init.
func DefaultSpec(init []byte) (Spec, error) {
	k, rel, err := DebianKernel()
	if err != nil {
		return Spec{}, err
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return Spec{}, fmt.Errorf("images: static busybox not found (install busybox-static): %w", err)
	}
	return Spec{
		Kernel:     k,
		ModulesDir: filepath.Join("/lib/modules", rel),
		Modules:    GuestModules,
		Busybox:    bb,
		Init:       init,
	}, nil
}

// Image is a built kernel and initramfs.
type Image struct {
	Kernel    string // uncompressed ELF vmlinux (PVH boot)
	Initramfs string // uncompressed cpio newc
	// Digests of the outputs' inputs, naming their cache directories.
	KernelDigest, InitramfsDigest string
}

// Build returns the boot files for spec under cacheDir, building only what
// is not cached yet. Outputs are written to a temporary name and renamed
// into place, so a crash never leaves a half-written file that a later
// Build would trust. Build honours ctx between steps.
func Build(ctx context.Context, cacheDir string, spec Spec) (*Image, error) {
	if spec.Kernel == "" {
		return nil, errors.New("images: spec has no kernel")
	}
	if len(spec.Init) == 0 {
		return nil, errors.New("images: spec has no init")
	}
	kimg, err := os.ReadFile(spec.Kernel)
	if err != nil {
		return nil, fmt.Errorf("images: kernel: %w", err)
	}
	img := &Image{}
	img.KernelDigest = digestOf("kernel", kimg)
	img.Kernel = filepath.Join(cacheDir, "kernel-"+img.KernelDigest, "vmlinux")
	if _, err := os.Stat(img.Kernel); err != nil {
		vmlinux, err := ExtractVmlinux(kimg)
		if err != nil {
			return nil, fmt.Errorf("images: %s: %w", spec.Kernel, err)
		}
		if err := writeAtomic(img.Kernel, vmlinux, 0o644); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	entries, err := initramfsEntries(spec)
	if err != nil {
		return nil, err
	}
	img.InitramfsDigest = digestEntries(entries)
	img.Initramfs = filepath.Join(cacheDir, "initramfs-"+img.InitramfsDigest, "initramfs.cpio")
	if _, err := os.Stat(img.Initramfs); err == nil {
		return img, nil
	}
	var buf bytes.Buffer
	if err := WriteCPIO(&buf, entries); err != nil {
		return nil, err
	}
	if err := writeAtomic(img.Initramfs, buf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	return img, nil
}

// ModuleList is where the initramfs lists its modules, one path per line
// in load order, for the init to insmod.
const ModuleList = "/etc/castor/modules"

func initramfsEntries(spec Spec) ([]Entry, error) {
	entries := []Entry{
		{Path: "/init", Mode: 0o755, Data: spec.Init},
		{Path: "/dev", Mode: fs.ModeDir | 0o755},
		{Path: "/proc", Mode: fs.ModeDir | 0o555},
		{Path: "/sys", Mode: fs.ModeDir | 0o555},
		{Path: "/tmp", Mode: fs.ModeDir | 0o1777},
		{Path: "/mnt", Mode: fs.ModeDir | 0o755},
	}
	if len(spec.Modules) > 0 {
		if spec.ModulesDir == "" {
			return nil, errors.New("images: modules requested without a module tree")
		}
		mods, err := ResolveModules(spec.ModulesDir, spec.Modules)
		if err != nil {
			return nil, err
		}
		var list strings.Builder
		for _, m := range mods {
			b, err := readModule(m.Path)
			if err != nil {
				return nil, fmt.Errorf("images: module %s: %w", m.Name, err)
			}
			if spec.StripModuleSignatures {
				b = StripModuleSignature(b)
			}
			p := "/lib/modules/" + m.Name + ".ko"
			entries = append(entries, Entry{Path: p, Mode: 0o644, Data: b})
			list.WriteString(p + "\n")
		}
		entries = append(entries, Entry{Path: ModuleList, Mode: 0o644, Data: []byte(list.String())})
	}
	if spec.Busybox != "" {
		bb, err := os.ReadFile(spec.Busybox)
		if err != nil {
			return nil, fmt.Errorf("images: busybox: %w", err)
		}
		applets, err := busyboxApplets(spec.Busybox)
		if err != nil {
			return nil, err
		}
		entries = append(entries, Entry{Path: "/bin/busybox", Mode: 0o755, Data: bb})
		for _, a := range applets {
			if a == "busybox" || a == "init" || strings.Contains(a, "/") {
				continue
			}
			entries = append(entries, Entry{Path: "/bin/" + a, Mode: fs.ModeSymlink, Target: "busybox"})
		}
	}
	taken := map[string]bool{}
	for _, e := range entries {
		taken[filepath.Clean(e.Path)] = true
	}
	for _, e := range spec.Files {
		if taken[filepath.Clean("/"+e.Path)] {
			// An extra file overrides a generated one (e.g. a busybox
			// applet link): drop the generated entry.
			entries = removePath(entries, filepath.Clean("/"+e.Path))
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func removePath(es []Entry, p string) []Entry {
	out := es[:0]
	for _, e := range es {
		if filepath.Clean(e.Path) != p {
			out = append(out, e)
		}
	}
	return out
}

// busyboxApplets asks the (static) busybox itself which applets it has.
func busyboxApplets(bb string) ([]string, error) {
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("images: %s --list: %w", bb, err)
	}
	return strings.Fields(string(out)), nil
}

func digestOf(kind string, b []byte) string {
	h := sha256.New()
	h.Write([]byte(formatVersion + "\x00" + kind + "\x00"))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// digestEntries hashes the archive's content: every entry's path, mode,
// target and data, in path order, length-prefixed so no two different
// entry lists hash alike.
func digestEntries(es []Entry) string {
	sorted := append([]Entry(nil), es...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	h := sha256.New()
	h.Write([]byte(formatVersion + "\x00initramfs\x00"))
	var n [8]byte
	field := func(b []byte) {
		binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	for _, e := range sorted {
		field([]byte(e.Path))
		binary.LittleEndian.PutUint64(n[:], uint64(e.Mode))
		h.Write(n[:])
		field([]byte(e.Target))
		field(e.Data)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("images: write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("images: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("images: write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return nil
}
