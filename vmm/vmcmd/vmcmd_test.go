package vmcmd_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/images/imagestest"
	"github.com/castor-nix/castor/store/compose"
	"github.com/castor-nix/castor/vmm/vmcmd"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestParseMemory(t *testing.T) {
	for in, want := range map[string]int{"512M": 512, "512MiB": 512, "2G": 2048, "2gib": 2048, "1024": 1024, " 64m ": 64} {
		if got, err := vmcmd.ParseMemory(in); err != nil || got != want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "-1G", "32M", "0", "1.5G", "2T"} {
		if _, err := vmcmd.ParseMemory(in); err == nil {
			t.Errorf("ParseMemory(%q) accepted", in)
		}
	}
}

func memoryStore(t *testing.T) vmcmd.Store {
	svc, err := compose.Open(compose.Config{Store: "memory://"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return vmcmd.Store{Blobs: svc.Blobs, Directories: svc.Directories, PathInfos: svc.PathInfos}
}

// TestBadFlags: bad flags are errors before any VM boots.
func TestBadFlags(t *testing.T) {
	st := memoryStore(t)
	ctx := context.Background()
	for name, o := range map[string]vmcmd.Options{
		"memory":     {Memory: "lots"},
		"hypervisor": {Hypervisor: "xen"},
		"env":        {Env: []string{"NOEQUALS"}},
	} {
		code, err := vmcmd.Run(ctx, st, []string{"true"}, o, io.Discard, io.Discard)
		if err == nil || code == 0 {
			t.Errorf("%s: code %d, err %v", name, code, err)
		}
	}
	// Through cobra: the command's own status and castor's failures are
	// told apart.
	cmd := vmcmd.NewCommand(func(*cobra.Command) (vmcmd.Store, func() error, error) { return st, func() error { return nil }, nil })
	cmd.SetArgs([]string{"run", "--memory", "lots", "--", "true"})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	err := cmd.Execute()
	var es *vmcmd.ExitStatus
	if !errors.As(err, &es) || es.Err == nil || es.ExitCode() != 1 {
		t.Errorf("bad --memory through cobra: %v", err)
	}
}

// TestTimeout: a command that hangs is killed with its VM at --timeout;
// castor says so and exits 124; nothing of the VM is left.
func TestTimeout(t *testing.T) {
	testenv.RequireBinary(t, "qemu-system-x86_64")
	imagestest.BuildImage(t, "#!/bin/sh\n") // skips without kernel or busybox
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	var out, errb bytes.Buffer
	start := time.Now()
	code, err := vmcmd.Run(context.Background(), memoryStore(t), []string{"sh", "-c", "echo started; sleep 1000"},
		vmcmd.Options{Timeout: 4 * time.Second, Logger: quiet}, &out, &errb)
	if code != 124 || !errors.Is(err, vmcmd.ErrTimeout) {
		t.Fatalf("code %d, err %v (after %v)", code, err, time.Since(start))
	}
	if !strings.Contains(err.Error(), "timed out after 4s") {
		t.Errorf("message: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(tmp, "castor-vm-*"))
	if len(left) > 0 {
		t.Errorf("VM directories left: %v", left)
	}
}
