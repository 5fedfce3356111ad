package images_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/castor-nix/castor/images"
)

// TestStripModuleSignature: a Debian module without its signature is the
// module modinfo reads with no signer; unsigned or malformed input comes
// back unchanged.
func TestStripModuleSignature(t *testing.T) {
	_, rel := debianKernel(t)
	modinfo, err := exec.LookPath("modinfo")
	if err != nil {
		t.Skip("needs modinfo (kmod)")
	}
	mods, err := images.ResolveModules(filepath.Join("/lib/modules", rel), []string{"virtio_ring"})
	if err != nil || len(mods) == 0 {
		t.Fatalf("%v %v", mods, err)
	}
	if !strings.HasSuffix(mods[0].Path, ".ko") {
		t.Skipf("%s is compressed", mods[0].Path)
	}
	orig, err := os.ReadFile(mods[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	signer := func(b []byte) string {
		p := filepath.Join(t.TempDir(), "m.ko")
		os.WriteFile(p, b, 0o644)
		out, err := exec.Command(modinfo, "-F", "signer", p).Output()
		if err != nil {
			t.Fatalf("modinfo: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	if signer(orig) == "" {
		t.Skip("the kernel's modules are not signed")
	}
	stripped := images.StripModuleSignature(orig)
	if len(stripped) >= len(orig) || !bytes.Equal(stripped, orig[:len(stripped)]) {
		t.Fatalf("stripped %d of %d bytes", len(orig)-len(stripped), len(orig))
	}
	if s := signer(stripped); s != "" {
		t.Errorf("stripped module still signed by %q", s)
	}
	if got := images.StripModuleSignature(stripped); !bytes.Equal(got, stripped) {
		t.Error("stripping twice changed the module")
	}
	for _, bad := range [][]byte{
		[]byte("~Module signature appended~\n"),
		append([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, "~Module signature appended~\n"...),
	} {
		if got := images.StripModuleSignature(bad); !bytes.Equal(got, bad) {
			t.Errorf("malformed %q changed", bad)
		}
	}
}

// FuzzStripModuleSignature: whatever the bytes, the result is a prefix of
// them and stripping is idempotent on it.
func FuzzStripModuleSignature(f *testing.F) {
	f.Add([]byte("~Module signature appended~\n"))
	f.Add(append(append([]byte("ELF...sig"), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3), "~Module signature appended~\n"...))
	f.Add([]byte("plain module"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := images.StripModuleSignature(b)
		if len(got) > len(b) || !bytes.Equal(got, b[:len(got)]) {
			t.Fatalf("result is not a prefix of the input")
		}
	})
}
