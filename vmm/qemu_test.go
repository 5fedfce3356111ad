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
	ctx := context.Background()
	if err := m.Create(ctx); err != nil {
		t.Fatal(err)
	}
	pid := m.PID()
	if pid == 0 || processGone(pid) {
		t.Fatalf("no QEMU process after Create")
	}
	if got := strings.Join(m.Args(), " "); !strings.Contains(got, "-S") || !strings.Contains(got, "microvm") {
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
