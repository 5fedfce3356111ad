package images

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// GuestModules are the modules a castor guest loads: virtio over MMIO
// (microvm, Cloud Hypervisor) and PCI (q35), virtio-fs, the virtio
// console, and virtio vsock. Their dependencies come from modules.dep.
var GuestModules = []string{"virtio_mmio", "virtio_pci", "virtiofs", "virtio_console", "vmw_vsock_virtio_transport"}

// Module is one kernel module to put into an initramfs.
type Module struct {
	Name string // "virtiofs"
	Path string // absolute path on the host, maybe compressed (.ko.zst, .ko.gz)
}

// ResolveModules returns the named modules of the module tree modDir
// (/lib/modules/<release>) and everything they depend on, in an order
// where each module comes after its dependencies (as insmod needs). Names
// use either '-' or '_'. A module that is built into the kernel
// (modules.builtin) is skipped; an unknown one is an error.
func ResolveModules(modDir string, names []string) ([]Module, error) {
	deps, err := readModulesDep(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(modDir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			builtin[modName(l)] = true
		}
	}
	byName := map[string]string{}
	for rel := range deps {
		byName[modName(rel)] = rel
	}
	var out []Module
	seen := map[string]int{} // 1 visiting, 2 done
	var visit func(rel string) error
	visit = func(rel string) error {
		switch seen[rel] {
		case 1:
			return fmt.Errorf("images: module dependency cycle at %s", rel)
		case 2:
			return nil
		}
		seen[rel] = 1
		for _, d := range deps[rel] {
			if err := visit(d); err != nil {
				return err
			}
		}
		seen[rel] = 2
		out = append(out, Module{Name: modName(rel), Path: filepath.Join(modDir, rel)})
		return nil
	}
	for _, n := range names {
		n = strings.ReplaceAll(n, "-", "_")
		rel, ok := byName[n]
		if !ok {
			if builtin[n] {
				continue
			}
			return nil, fmt.Errorf("images: module %q not found in %s/modules.dep", n, modDir)
		}
		if err := visit(rel); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// modName turns "kernel/fs/fuse/virtiofs.ko.zst" into "virtiofs".
func modName(rel string) string {
	b := filepath.Base(rel)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

func readModulesDep(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	defer f.Close()
	deps := map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[strings.TrimSpace(mod)] = strings.Fields(rest)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("images: read %s: %w", path, err)
	}
	return deps, nil
}

// readModule returns a module's ELF bytes, decompressing .zst and .gz
// (busybox insmod in the guest wants them plain).
func readModule(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasSuffix(path, ".ko"):
		return b, nil
	case strings.HasSuffix(path, ".ko.zst"):
		d, err := zstd.NewReader(nil)
		if err != nil {
			return nil, err
		}
		defer d.Close()
		return d.DecodeAll(b, nil)
	case strings.HasSuffix(path, ".ko.gz"):
		r, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(r)
	}
	return nil, fmt.Errorf("images: module %s: unsupported compression", path)
}

// moduleSigMagic ends a signed module: the signature, a 12-byte
// struct module_signature whose last 4 bytes are the signature's length
// (big-endian), then this string.
const moduleSigMagic = "~Module signature appended~\n"

// StripModuleSignature returns a module without its appended signature,
// or the module as it is when it has none (or a malformed one).
func StripModuleSignature(b []byte) []byte {
	if !bytes.HasSuffix(b, []byte(moduleSigMagic)) {
		return b
	}
	n := len(b) - len(moduleSigMagic)
	if n < 12 {
		return b
	}
	sigLen := int(binary.BigEndian.Uint32(b[n-4 : n]))
	if sigLen < 0 || sigLen > n-12 {
		return b
	}
	return b[:n-12-sigLen]
}
