package imagestest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/images"
	"github.com/castor-nix/castor/vmm"
)

// KernelArgs are the kernel command line castor's own TCG VMs boot with
// (a fast, quiet boot; tsc_early_khz avoids microvm's PIT calibration
// hang).
const KernelArgs = vmm.DefaultKernelArgs + " " + vmm.TCGKernelArgs

// LoadModules is the init-script line that loads the image's modules.
const LoadModules = `for m in $(cat ` + images.ModuleList + `); do insmod $m || echo "insmod $m failed"; done`

// CacheDir is where test images are cached across test runs (by content
// digest, so a stale entry is never reused).
func CacheDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "castor-test-images")
}

// BuildImage builds (or finds cached) Debian's kernel and an initramfs with
// the given /init script plus extra files, skipping the test when the
// kernel, busybox or QEMU are missing.
func BuildImage(t testing.TB, initScript string, extra ...images.Entry) *images.Image {
	t.Helper()
	testenv.RequireBinary(t, "qemu-system-x86_64")
	testenv.RequireBinary(t, "busybox")
	spec, err := images.DefaultSpec([]byte(initScript))
	if err != nil {
		t.Skipf("needs Debian's cloud kernel and busybox-static (install linux-image-cloud-amd64 busybox-static; .ci/run does): %v", err)
	}
	spec.Files = extra
	img, err := images.Build(context.Background(), CacheDir(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Options for a VM.
type Options struct {
	MemoryMiB int      // default 512
	Args      []string // extra QEMU arguments (devices)
	Append    string   // extra kernel arguments
}

// VM is a running QEMU.
type VM struct {
	Cmd    *exec.Cmd
	serial *SyncBuffer
	done   chan struct{}
	err    error
}

// Start boots img. The serial console (kernel log and init's output) is
// collected; t.Cleanup kills QEMU if it still runs and logs the console
// when the test failed.
func Start(t testing.TB, img *images.Image, o Options) *VM {
	t.Helper()
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 512
	}
	args := []string{
		"-machine", "microvm,memory-backend=mem,rtc=on",
		"-accel", "tcg",
		"-cpu", vmm.TCGCPU,
		"-m", fmt.Sprintf("%dM", o.MemoryMiB),
		"-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", o.MemoryMiB),
		"-global", "virtio-mmio.force-legacy=false",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio",
		"-kernel", img.Kernel,
		"-initrd", img.Initramfs,
		"-append", strings.TrimSpace(KernelArgs + " " + o.Append),
	}
	args = append(args, o.Args...)
	vm := &VM{serial: &SyncBuffer{}, done: make(chan struct{})}
	vm.Cmd = exec.Command("qemu-system-x86_64", args...)
	vm.Cmd.Stdout = vm.serial
	vm.Cmd.Stderr = vm.serial
	if err := vm.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		vm.err = vm.Cmd.Wait()
		close(vm.done)
	}()
	t.Cleanup(func() {
		select {
		case <-vm.done:
		default:
			vm.Cmd.Process.Kill()
			<-vm.done
		}
		if t.Failed() {
			t.Logf("serial console:\n%s", vm.Serial())
		}
	})
	return vm
}

// Serial returns the console output so far.
func (vm *VM) Serial() string { return vm.serial.String() }

// Wait waits for QEMU to exit, up to timeout (a guard against a hung
// guest, not a timing assertion: it kills QEMU and reports the hang).
func (vm *VM) Wait(timeout time.Duration) error {
	select {
	case <-vm.done:
		return vm.err
	case <-time.After(timeout):
		vm.Cmd.Process.Kill()
		<-vm.done
		return fmt.Errorf("QEMU still running after %v: killed", timeout)
	}
}

// WaitSerial waits until the console shows s or QEMU exits.
func (vm *VM) WaitSerial(s string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(vm.Serial(), s) {
			return nil
		}
		select {
		case <-vm.done:
			if strings.Contains(vm.Serial(), s) {
				return nil
			}
			return fmt.Errorf("QEMU exited (%v) before the console showed %q", vm.err, s)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("console did not show %q within %v", s, timeout)
		}
	}
}

// SyncBuffer is a bytes.Buffer safe for a writer goroutine (a VM's
// console, a build's log) and a reader at once.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
