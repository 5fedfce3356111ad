package agentvm_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/castor-nix/castor/e2e/testenv"
	castorfs "github.com/castor-nix/castor/fs"
	"github.com/castor-nix/castor/images"
	"github.com/castor-nix/castor/images/agent"
	"github.com/castor-nix/castor/vmm"
	"github.com/castor-nix/castor/vmm/agentvm"
)

// vmLeftovers lists QEMU processes that are children of this test and
// castor-vm-* working directories in dir.
func qemuChildren() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	me := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "qemu-system") {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(me) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func checkNoLeftovers(t *testing.T, workRoot string) {
	t.Helper()
	if pids := qemuChildren(); len(pids) > 0 {
		t.Errorf("QEMU processes left: %v", pids)
	}
	left, _ := filepath.Glob(filepath.Join(workRoot, "castor-vm-*"))
	if len(left) > 0 {
		t.Errorf("VM working directories left: %v", left)
	}
}

// TestCorruptInitramfs: an initramfs the kernel cannot unpack ends in a
// kernel panic (no init); Boot says so, with the panic line, and leaves
// nothing behind.
func TestCorruptInitramfs(t *testing.T) {
	img := agentImage(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	bad := filepath.Join(tmp, "initramfs.cpio")
	good, err := os.ReadFile(img.Initramfs)
	if err != nil {
		t.Fatal(err)
	}
	// A cpio whose headers are garbage after the first few entries.
	corrupt := append([]byte(nil), good[:4096]...)
	corrupt = append(corrupt, bytes.Repeat([]byte("not a cpio header "), 1000)...)
	os.WriteFile(bad, corrupt, 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err = agentvm.Boot(ctx, agentvm.Options{Image: &images.Image{Kernel: img.Kernel, Initramfs: bad}, Logger: quiet})
	if !errors.Is(err, vmm.ErrGuestReset) || !strings.Contains(err.Error(), "Kernel panic") {
		t.Fatalf("Boot with a corrupt initramfs: %v", err)
	}
	t.Logf("reported: %v", firstLine(err.Error()))
	checkNoLeftovers(t, tmp)
}

// TestMissingKernelBoot: a kernel path that does not exist is an error
// before any VM starts.
func TestMissingKernelBoot(t *testing.T) {
	testenv.RequireBinary(t, "busybox")
	tmp := t.TempDir()
	_, err := agentvm.Boot(context.Background(), agentvm.Options{Kernel: filepath.Join(tmp, "vmlinuz-none"), CacheDir: tmp, Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "vmlinuz-none") {
		t.Fatalf("Boot with a missing kernel: %v", err)
	}
	checkNoLeftovers(t, tmp)
}

// TestQEMUKilledDuringBoot: the VMM dying while the guest boots (killed
// from outside) makes Boot fail with the VMM's exit, and nothing is left.
func TestQEMUKilledDuringBoot(t *testing.T) {
	img := agentImage(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	killed := make(chan int, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			if pids := qemuChildren(); len(pids) > 0 {
				time.Sleep(500 * time.Millisecond) // well into the boot
				syscall.Kill(pids[0], syscall.SIGKILL)
				killed <- pids[0]
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm, err := agentvm.Boot(ctx, agentvm.Options{Image: img, Logger: quiet, FS: []vmm.FS{{Tag: "store", NewFS: func(context.Context) (fuse.RawFileSystem, error) {
		return fuse.NewDefaultRawFileSystem(), nil
	}}}})
	if err == nil {
		vm.Close()
		t.Skip("the guest's agent connected before QEMU could be killed")
	}
	pid := <-killed
	if !errors.Is(err, vmm.ErrVMMExited) || !strings.Contains(err.Error(), "signal: killed") {
		t.Fatalf("Boot with QEMU (pid %d) killed: %v", pid, err)
	}
	t.Logf("reported: %v", firstLine(err.Error()))
	checkNoLeftovers(t, tmp)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// TestCloudHypervisorAgentVM boots the agent under real Cloud Hypervisor
// (KVM and its binary needed; skipped elsewhere) and runs a command
// against a store served over castor's virtio-fs, through Cloud
// Hypervisor's own hybrid vsock.
func TestCloudHypervisorAgentVM(t *testing.T) {
	testenv.RequireKVM(t)
	testenv.RequireBinary(t, "cloud-hypervisor")
	img := agentImage(t)
	trees := storeTrees()
	roots, dirs, blobs := serveStore(t, trees)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm, err := agentvm.Boot(ctx, agentvm.Options{
		Image: img, Hypervisor: vmm.CloudHypervisor, Logger: quiet,
		FS: []vmm.FS{{Tag: "store", NewFS: func(ctx context.Context) (fuse.RawFileSystem, error) {
			return castorfs.New(roots, dirs, blobs, castorfs.Options{Logger: quiet})
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if err := vm.Setup(ctx, &agent.Setup{Steps: []agent.Step{{Mount: &agent.Mount{Type: "virtiofs", Source: "store", Target: "/nix/store", ReadOnly: true}}}}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ex, err := vm.Run(ctx, &agent.Run{Command: []string{"/bin/cat", "/nix/store/0c9b3pm5hhw9dgr0v6c3gkvdjqlb9ps4-hello-2.12/share/doc/README"}, UID: 1000, GID: 100}, &out, io.Discard)
	if err != nil || ex.Code != 0 || out.String() != "read me\n" {
		t.Fatalf("cat under Cloud Hypervisor: %+v %v %q", ex, err, out.String())
	}
	if err := vm.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// TestFilesystemThatFailsToOpen: castor's virtio-fs backend failing to
// make the VM's filesystem stops QEMU at start-up; the error says which
// backend failed and why.
func TestFilesystemThatFailsToOpen(t *testing.T) {
	img := agentImage(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := agentvm.Boot(ctx, agentvm.Options{Image: img, Logger: quiet, FS: []vmm.FS{{Tag: "store", NewFS: func(context.Context) (fuse.RawFileSystem, error) {
		return nil, errors.New("the store's database is locked")
	}}}})
	if !errors.Is(err, vmm.ErrVMMExited) || !strings.Contains(err.Error(), "the store's database is locked") {
		t.Fatalf("Boot: %v", err)
	}
	t.Logf("reported: %v", firstLine(err.Error()))
	checkNoLeftovers(t, tmp)
}
