package vmm_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/images"
	"github.com/castor-nix/castor/images/imagestest"
	"github.com/castor-nix/castor/vmm"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func qemuConfig(img *images.Image) vmm.Config {
	return vmm.Config{
		Hypervisor: vmm.QEMU,
		Kernel:     img.Kernel,
		Initramfs:  img.Initramfs,
		Logger:     quiet,
	}
}

// processGone reports whether pid no longer exists (reaped).
func processGone(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

// checkGone asserts the machine left no process and no working directory.
func checkGone(t *testing.T, m *vmm.Machine, pid int) {
	t.Helper()
	if pid != 0 && !processGone(pid) {
		t.Errorf("VMM process %d still exists", pid)
	}
	if d := m.WorkDir(); d != "" {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			entries, _ := os.ReadDir(d)
			t.Errorf("working directory %s left behind (%d entries)", d, len(entries))
		}
	}
}

// TestQEMULifecycle creates a VM (QEMU runs, paused: nothing on the
// console), starts it, streams its console, and waits for the guest to
// power off; nothing is left behind.
func TestQEMULifecycle(t *testing.T) {
	img := imagestest.BuildImage(t, "#!/bin/sh\nmount -t proc proc /proc\necho GUEST-SAYS-HELLO $(cat /proc/cmdline | grep -o castor.test=[a-z]*)\npoweroff -f\n")
	cfg := qemuConfig(img)
	cfg.KernelArgs = "castor.test=lifecycle"
	var live bytes.Buffer
	cfg.Console = &live
	m, err := vmm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// A step of the caller's own, between castor's.
	m.Handlers.Create = m.Handlers.Create.AppendAfter(vmm.StepQEMUArgs, vmm.Handler{Name: "test.name", Fn: func(ctx context.Context, m *vmm.Machine) error {
		m.AddArgs("-name", "castor-lifecycle-test")
		return nil
	}})
	ctx := context.Background()
	if err := m.Create(ctx); err != nil {
		t.Fatal(err)
	}
	pid := m.PID()
	if pid == 0 || processGone(pid) {
		t.Fatalf("no QEMU process after Create")
	}
	if got := strings.Join(m.Args(), " "); !strings.Contains(got, "-S") || !strings.Contains(got, "microvm") || !strings.Contains(got, "-name castor-lifecycle-test") {
		t.Errorf("QEMU arguments %q lack -S or microvm", got)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := m.Wait(wctx); err != nil {
		t.Fatalf("Wait: %v\nconsole:\n%s", err, m.Console())
	}
	if !strings.Contains(string(m.Console()), "GUEST-SAYS-HELLO castor.test=lifecycle") {
		t.Errorf("console lacks the guest's line:\n%s", m.Console())
	}
	if !bytes.Equal(live.Bytes(), m.Console()) {
		t.Errorf("live console (%d bytes) differs from the kept tail (%d bytes)", live.Len(), len(m.Console()))
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	checkGone(t, m, pid)
}

// TestMissingKernel: a kernel that is not there is a configuration error
// before anything starts, and nothing is left.
func TestMissingKernel(t *testing.T) {
	dir := t.TempDir()
	initrd := dir + "/initrd"
	os.WriteFile(initrd, []byte("x"), 0o644)
	m, err := vmm.New(vmm.Config{Hypervisor: vmm.QEMU, Kernel: dir + "/no-such-vmlinux", Initramfs: initrd, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	err = m.Create(context.Background())
	if !errors.Is(err, vmm.ErrConfig) || !strings.Contains(err.Error(), "no-such-vmlinux") {
		t.Fatalf("Create with a missing kernel: %v", err)
	}
	if m.PID() != 0 {
		t.Error("a VMM was started")
	}
	if err := m.Start(context.Background()); !errors.Is(err, vmm.ErrState) {
		t.Errorf("Start after a failed Create: %v", err)
	}
	checkGone(t, m, 0)
}

// TestFailingStepCleansUp: a step that fails after the working directory
// and a vsock backend exist leaves neither behind.
func TestFailingStepCleansUp(t *testing.T) {
	testenv.RequireBinary(t, "qemu-system-x86_64")
	dir := t.TempDir()
	for _, f := range []string{"vmlinux", "initrd"} {
		os.WriteFile(dir+"/"+f, []byte("x"), 0o644)
	}
	m, err := vmm.New(vmm.Config{Hypervisor: vmm.QEMU, Kernel: dir + "/vmlinux", Initramfs: dir + "/initrd", Vsock: &vmm.Vsock{}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var sock string
	boom := errors.New("boom")
	m.Handlers.Create = m.Handlers.Create.AppendAfter(vmm.StepQEMUVsock, vmm.Handler{Name: "test.fail", Fn: func(ctx context.Context, m *vmm.Machine) error {
		sock = m.VsockSocket()
		if _, err := os.Stat(sock); err != nil {
			t.Errorf("vsock socket not there before the failing step: %v", err)
		}
		return boom
	}})
	if err := m.Create(context.Background()); !errors.Is(err, boom) || !strings.Contains(err.Error(), "test.fail") {
		t.Fatalf("Create: %v", err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("vsock socket %s left behind", sock)
	}
	checkGone(t, m, 0)
}

// TestQEMUStopEscalates: a guest that ignores the power-down request is
// stopped anyway (QMP quit after the grace period); Wait with a short
// context returns the context's error and leaves the VM running; a
// stopped VM's Wait is nil.
func TestQEMUStopEscalates(t *testing.T) {
	img := imagestest.BuildImage(t, "#!/bin/sh\nmount -t proc proc /proc\necho GUEST-READY\nwhile true; do sleep 1; done\n")
	cfg := qemuConfig(img)
	cfg.StopGrace = 500 * time.Millisecond
	m, err := vmm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	if err := m.Create(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := m.PID()
	waitConsole(t, m, "GUEST-READY")
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := m.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a running VM: %v", err)
	}
	if processGone(pid) {
		t.Fatal("Wait's context ending killed the VM")
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if !processGone(pid) {
		t.Error("QEMU still runs after Stop")
	}
	if err := m.Wait(ctx); err != nil {
		t.Errorf("Wait after Stop: %v", err)
	}
	m.Close()
	checkGone(t, m, pid)
}

// TestQEMUDiesMidBoot: QEMU killed from outside while the guest boots
// (with castor's virtio-fs and vsock backends attached) is reported as the
// VMM's unexpected exit, and Close leaves no process, socket or
// directory.
func TestQEMUDiesMidBoot(t *testing.T) {
	img := imagestest.BuildImage(t, "#!/bin/sh\nwhile true; do sleep 1; done\n")
	cfg := qemuConfig(img)
	cfg.Vsock = &vmm.Vsock{}
	cfg.FS = []vmm.FS{{Tag: "store", NewFS: func(ctx context.Context) (fuse.RawFileSystem, error) {
		return fuse.NewDefaultRawFileSystem(), nil
	}}}
	m, err := vmm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	if err := m.Create(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := m.PID()
	sock := m.VsockSocket()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("vsock socket: %v", err)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	err = m.Wait(ctx)
	if !errors.Is(err, vmm.ErrVMMExited) || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Wait after QEMU was killed: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("vsock socket %s left behind", sock)
	}
	checkGone(t, m, pid)
}

// waitConsole waits until the console shows s (a guard against a hung
// guest, not a timing assertion).
func waitConsole(t *testing.T, m *vmm.Machine, s string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(string(m.Console()), s) {
		select {
		case <-m.Exited():
			t.Fatalf("the VM exited before showing %q: %v\n%s", s, m.Wait(context.Background()), m.Console())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("console did not show %q:\n%s", s, m.Console())
		}
	}
}
