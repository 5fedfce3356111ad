package images_test

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/images"
	"github.com/castor-nix/castor/images/imagestest"
)

func debianKernel(t *testing.T) (string, string) {
	t.Helper()
	k, rel, err := images.DebianKernel()
	if err != nil {
		t.Skipf("needs Debian's cloud kernel (install linux-image-cloud-amd64; .ci/run does): %v", err)
	}
	return k, rel
}

// The extracted kernel is checked against the lz4 tool's own decoding of
// the same payload and must be a PVH-bootable ELF.
func TestExtractVmlinuxDebian(t *testing.T) {
	k, _ := debianKernel(t)
	img, err := os.ReadFile(k)
	if err != nil {
		t.Fatal(err)
	}
	vmlinux, err := images.ExtractVmlinux(img)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		t.Errorf("ELF machine %v type %v", f.Machine, f.Type)
	}
	// Oracle: the lz4 CLI decoding the stream from its magic on.
	lz4bin, err := exec.LookPath("lz4")
	if err != nil {
		t.Logf("lz4 CLI absent, skipping the oracle comparison")
		return
	}
	i := bytes.Index(img, []byte{0x02, 0x21, 0x4c, 0x18})
	if i < 0 {
		t.Skip("kernel payload is not LZ4")
	}
	cmd := exec.Command(lz4bin, "-dc")
	cmd.Stdin = bytes.NewReader(img[i:])
	want, _ := cmd.Output() // lz4 complains about the trailing bytes; the output is complete
	if len(want) < len(vmlinux) || !bytes.Equal(want[:len(vmlinux)], vmlinux) {
		t.Fatalf("ExtractVmlinux differs from lz4 -dc: %d vs %d bytes", len(vmlinux), len(want))
	}
}

func TestExtractVmlinuxRejectsGarbage(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":     nil,
		"text":      []byte(strings.Repeat("not a kernel ", 100)),
		"truncated": truncatedKernel(t),
	} {
		if _, err := images.ExtractVmlinux(b); !errors.Is(err, images.ErrBadKernel) {
			t.Errorf("%s: err = %v, want ErrBadKernel", name, err)
		}
	}
}

func truncatedKernel(t *testing.T) []byte {
	k, _, err := images.DebianKernel()
	if err != nil {
		return []byte("HdrS")
	}
	b, err := os.ReadFile(k)
	if err != nil {
		t.Fatal(err)
	}
	return b[:len(b)/2]
}

func FuzzExtractVmlinux(f *testing.F) {
	hdr := make([]byte, 0x300)
	copy(hdr[0x202:], "HdrS")
	hdr[0x206], hdr[0x207] = 0x0f, 0x02
	hdr[0x1f1] = 0
	f.Add(hdr)
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := images.ExtractVmlinux(b)
		if err == nil && len(out) == 0 {
			t.Fatal("no error and no kernel")
		}
	})
}

// Module resolution is checked against modprobe's own answer.
func TestResolveModulesMatchesModprobe(t *testing.T) {
	_, rel := debianKernel(t)
	modprobe, err := exec.LookPath("modprobe")
	if err != nil {
		t.Skip("needs modprobe (kmod)")
	}
	modDir := filepath.Join("/lib/modules", rel)
	for _, name := range images.GuestModules {
		mods, err := images.ResolveModules(modDir, []string{name})
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(modprobe, "-S", rel, "--show-depends", name).Output()
		if err != nil {
			t.Fatalf("modprobe --show-depends %s: %v", name, err)
		}
		var want []string
		for _, l := range strings.Split(string(out), "\n") {
			if p, ok := strings.CutPrefix(strings.TrimSpace(l), "insmod "); ok {
				want = append(want, strings.Fields(p)[0])
			}
		}
		var got []string
		pos := map[string]int{}
		for i, m := range mods {
			got = append(got, m.Path)
			pos[m.Path] = i
		}
		a, b := append([]string(nil), got...), append([]string(nil), want...)
		sort.Strings(a)
		sort.Strings(b)
		if strings.Join(a, " ") != strings.Join(b, " ") {
			t.Errorf("%s: got %v, modprobe says %v", name, got, want)
		}
		if mods[len(mods)-1].Name != name {
			t.Errorf("%s: last module is %s", name, mods[len(mods)-1].Name)
		}
	}
	if _, err := images.ResolveModules(modDir, []string{"no_such_module"}); err == nil {
		t.Error("unknown module resolved")
	}
}

// The archive is read back with the real cpio tool (the oracle) and with
// the Go reader, and is byte-identical when written twice.
func TestWriteCPIO(t *testing.T) {
	entries := []images.Entry{
		{Path: "/init", Mode: 0o755, Data: []byte("#!/bin/sh\necho hi\n")},
		{Path: "/bin/sh", Mode: fs.ModeSymlink, Target: "busybox"},
		{Path: "/etc/castor/modules", Mode: 0o644, Data: []byte("/lib/modules/fuse.ko\n")},
		{Path: "/empty", Mode: 0o600},
	}
	var a, b bytes.Buffer
	if err := images.WriteCPIO(&a, entries); err != nil {
		t.Fatal(err)
	}
	rev := append([]images.Entry(nil), entries...)
	sort.Slice(rev, func(i, j int) bool { return rev[i].Path > rev[j].Path })
	if err := images.WriteCPIO(&b, rev); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("archive depends on entry order")
	}
	r := cpio.NewReader(bytes.NewReader(a.Bytes()))
	got := map[string]string{}
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r)
		got[h.Name] = fmt.Sprintf("%o %s%s", h.Mode, body, h.Linkname)
	}
	want := map[string]string{
		"bin":                "40755 ",
		"bin/sh":             "120777 busybox",
		"etc":                "40755 ",
		"etc/castor":         "40755 ",
		"etc/castor/modules": "100644 /lib/modules/fuse.ko\n",
		"empty":              "100600 ",
		"init":               "100755 #!/bin/sh\necho hi\n",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	if cpioBin, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command(cpioBin, "-t", "--quiet")
		cmd.Stdin = bytes.NewReader(a.Bytes())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio -t: %v", err)
		}
		if list := strings.Fields(string(out)); len(list) != len(want) {
			t.Errorf("cpio -t lists %v", list)
		}
	}
	if err := images.WriteCPIO(io.Discard, []images.Entry{{Path: "/x", Mode: 0o644}, {Path: "x", Mode: 0o644}}); err == nil {
		t.Error("duplicate path accepted")
	}
	if err := images.WriteCPIO(io.Discard, []images.Entry{{Path: "/x", Mode: 0o644}, {Path: "/x/y", Mode: 0o644}}); err == nil {
		t.Error("file under a regular file accepted")
	}
}

func TestBuildCachesByContent(t *testing.T) {
	k, rel := debianKernel(t)
	testenv.RequireBinary(t, "busybox")
	cache := t.TempDir()
	spec, err := images.DefaultSpec([]byte("#!/bin/sh\necho one\n"))
	if err != nil {
		t.Fatal(err)
	}
	if spec.Kernel != k || !strings.HasSuffix(spec.ModulesDir, rel) {
		t.Fatalf("DefaultSpec = %+v", spec)
	}
	ctx := context.Background()
	img1, err := images.Build(ctx, cache, spec)
	if err != nil {
		t.Fatal(err)
	}
	st1, _ := os.Stat(img1.Initramfs)
	kst1, _ := os.Stat(img1.Kernel)
	img2, err := images.Build(ctx, cache, spec)
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(img2.Initramfs)
	kst2, _ := os.Stat(img2.Kernel)
	if *img1 != *img2 || !os.SameFile(st1, st2) || !os.SameFile(kst1, kst2) || !st1.ModTime().Equal(st2.ModTime()) {
		t.Fatal("second Build of the same spec rebuilt")
	}
	spec.Init = []byte("#!/bin/sh\necho two\n")
	img3, err := images.Build(ctx, cache, spec)
	if err != nil {
		t.Fatal(err)
	}
	if img3.InitramfsDigest == img1.InitramfsDigest || img3.KernelDigest != img1.KernelDigest {
		t.Fatalf("changed init: digests %s -> %s, kernel %s -> %s", img1.InitramfsDigest, img3.InitramfsDigest, img1.KernelDigest, img3.KernelDigest)
	}
	// A missing kernel and a corrupt one are clear errors.
	bad := spec
	bad.Kernel = filepath.Join(t.TempDir(), "missing")
	if _, err := images.Build(ctx, cache, bad); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing kernel: err = %v", err)
	}
	bad.Kernel = filepath.Join(t.TempDir(), "corrupt")
	os.WriteFile(bad.Kernel, truncatedKernel(t), 0o644)
	if _, err := images.Build(ctx, cache, bad); !errors.Is(err, images.ErrBadKernel) {
		t.Errorf("corrupt kernel: err = %v", err)
	}
}

// One real boot: the kernel and initramfs come up under QEMU, the modules
// load, and the guest powers off so QEMU exits by itself.
func TestBootsUnderQEMU(t *testing.T) {
	img := imagestest.BuildImage(t, "#!/bin/sh\n"+
		"mount -t proc proc /proc\nmount -t sysfs sys /sys\n"+
		imagestest.LoadModules+"\n"+
		"echo modules: $(cut -d' ' -f1 /proc/modules | sort | tr '\\n' ' ')\n"+
		"echo uptime: $(cut -d' ' -f1 /proc/uptime)\n"+
		"echo castor-boot-ok\n"+
		"poweroff -f\n")
	vm := imagestest.Start(t, img, imagestest.Options{})
	if err := vm.Wait(60 * time.Second); err != nil {
		t.Fatalf("QEMU: %v\n%s", err, vm.Serial())
	}
	out := vm.Serial()
	if !strings.Contains(out, "castor-boot-ok") {
		t.Fatalf("guest did not finish init:\n%s", out)
	}
	for _, m := range []string{"virtiofs", "vmw_vsock_virtio_transport", "virtio_mmio", "fuse"} {
		if !strings.Contains(out, " "+m+" ") && !strings.Contains(out, ": "+m+" ") {
			t.Errorf("module %s not loaded:\n%s", m, out)
		}
	}
	if strings.Contains(out, "failed") {
		t.Errorf("a module failed to load:\n%s", out)
	}
	t.Logf("%s", lastLines(out, 3))
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
