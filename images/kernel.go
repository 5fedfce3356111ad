package images

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// ErrBadKernel is wrapped by errors about a kernel image that cannot be
// used: not a bzImage or ELF, a corrupt or unsupported payload.
var ErrBadKernel = errors.New("unusable kernel image")

func badKernel(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadKernel, fmt.Sprintf(format, args...))
}

// DebianKernel returns the newest /boot/vmlinuz-* that has a module tree
// under /lib/modules, and its release ("6.1.0-56-cloud-amd64").
func DebianKernel() (vmlinuz, release string, err error) {
	return findKernel("/boot", "/lib/modules")
}

func findKernel(bootDir, modRoot string) (string, string, error) {
	matches, _ := filepath.Glob(filepath.Join(bootDir, "vmlinuz-*"))
	sort.Sort(sort.Reverse(sort.StringSlice(matches)))
	for _, m := range matches {
		rel := strings.TrimPrefix(filepath.Base(m), "vmlinuz-")
		if _, err := os.Stat(filepath.Join(modRoot, rel, "modules.dep")); err == nil {
			return m, rel, nil
		}
	}
	return "", "", fmt.Errorf("no kernel with modules: no %s/vmlinuz-* with %s/<release>/modules.dep (install linux-image-cloud-amd64)", bootDir, modRoot)
}

// ExtractVmlinux returns the uncompressed ELF kernel inside a bzImage. An
// image that is already an ELF is returned as is.
func ExtractVmlinux(img []byte) ([]byte, error) {
	if bytes.HasPrefix(img, []byte(elf.ELFMAG)) {
		return img, checkELF(img)
	}
	if len(img) < 0x250 || string(img[0x202:0x206]) != "HdrS" {
		return nil, badKernel("neither an ELF nor a bzImage (no HdrS setup header)")
	}
	if v := binary.LittleEndian.Uint16(img[0x206:]); v < 0x208 {
		return nil, badKernel("boot protocol %#x too old to locate the payload", v)
	}
	setupSects := int(img[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	start := (setupSects + 1) * 512
	off := int(binary.LittleEndian.Uint32(img[0x248:]))
	n := int(binary.LittleEndian.Uint32(img[0x24c:]))
	if start+off < start || start+off+n > len(img) || n < 8 {
		return nil, badKernel("payload %d+%d outside the %d-byte image", start+off, n, len(img))
	}
	payload := img[start+off : start+off+n]
	var out []byte
	var err error
	switch {
	case bytes.HasPrefix(payload, []byte{0x02, 0x21, 0x4c, 0x18}):
		out, err = unlz4Legacy(payload)
	case bytes.HasPrefix(payload, []byte{0x1f, 0x8b}):
		out, err = readAllFrom(gzip.NewReader(bytes.NewReader(payload)))
	case bytes.HasPrefix(payload, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		var d *zstd.Decoder
		if d, err = zstd.NewReader(nil); err == nil {
			out, err = d.DecodeAll(payload, nil)
			d.Close()
		}
	default:
		return nil, badKernel("payload compression %x not supported (lz4, gzip, zstd are)", payload[:4])
	}
	if err != nil {
		return nil, badKernel("decompress payload: %v", err)
	}
	return out, checkELF(out)
}

func readAllFrom(r io.Reader, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// unlz4Legacy decodes the LZ4 legacy frame the kernel's build writes: the
// magic, then blocks of (u32 compressed size, data) each inflating to at
// most 8 MiB, then the 4-byte uncompressed size the build appends.
func unlz4Legacy(p []byte) ([]byte, error) {
	const magic, blockMax = 0x184c2102, 8 << 20
	want := int(binary.LittleEndian.Uint32(p[len(p)-4:]))
	if want <= 0 || want > 1<<30 {
		return nil, fmt.Errorf("implausible uncompressed size %d", want)
	}
	out := make([]byte, 0, want)
	p = p[4 : len(p)-4]
	for len(p) >= 4 {
		sz := binary.LittleEndian.Uint32(p)
		p = p[4:]
		if sz == magic {
			continue
		}
		if int(sz) > len(p) || sz == 0 {
			return nil, fmt.Errorf("lz4 block of %d bytes with %d left", sz, len(p))
		}
		if len(out)+blockMax > cap(out) {
			grown := make([]byte, len(out), len(out)+blockMax)
			copy(grown, out)
			out = grown
		}
		k, err := lz4.UncompressBlock(p[:sz], out[len(out):len(out)+blockMax])
		if err != nil {
			return nil, fmt.Errorf("lz4 block: %v", err)
		}
		out = out[:len(out)+k]
		p = p[sz:]
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%d trailing bytes in lz4 stream", len(p))
	}
	if len(out) != want {
		return nil, fmt.Errorf("decompressed %d bytes, header says %d", len(out), want)
	}
	return out, nil
}

// checkELF insists on a 64-bit x86 ELF with a PVH entry note, the one
// thing a direct boot needs.
func checkELF(b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return badKernel("uncompressed kernel is not an ELF: %v", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return badKernel("kernel is for %v, not x86-64", f.Machine)
	}
	if !hasPVHNote(f) {
		return badKernel("kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); build it with CONFIG_PVH")
	}
	return nil
}

// hasPVHNote looks for a Xen ELF note of type 18 (PHYS32_ENTRY).
func hasPVHNote(f *elf.File) bool {
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, err := io.ReadAll(p.Open())
		if err != nil {
			continue
		}
		for len(data) >= 12 {
			nsz := binary.LittleEndian.Uint32(data)
			dsz := binary.LittleEndian.Uint32(data[4:])
			typ := binary.LittleEndian.Uint32(data[8:])
			nEnd := 12 + (int(nsz)+3)&^3
			dEnd := nEnd + (int(dsz)+3)&^3
			if nsz > 1<<16 || dsz > 1<<16 || dEnd > len(data) {
				break
			}
			if typ == 18 && strings.TrimRight(string(data[12:12+nsz]), "\x00") == "Xen" {
				return true
			}
			data = data[dEnd:]
		}
	}
	return false
}
