package sandbox_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/castor-nix/castor/builder"
	"github.com/castor-nix/castor/builder/sandbox"
)

func TestTimeoutAndLogLimit(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	x := builder.Limit(e.exec, builder.Limits{Timeout: 300 * time.Millisecond})
	var log bytes.Buffer
	_, err := x.Run(ctx, shBuild(`echo start; while :; do :; done`), &log)
	if !errors.Is(err, builder.ErrTimeout) {
		t.Errorf("endless build: %v", err)
	}
	x = builder.Limit(e.exec, builder.Limits{MaxLogBytes: 1000})
	log.Reset()
	_, err = x.Run(ctx, shBuild(`while :; do echo 0123456789abcdef; done`), &log)
	if !errors.Is(err, builder.ErrLogLimit) || log.Len() != 1000 {
		t.Errorf("chatty build: %v, %d bytes of log kept", err, log.Len())
	}
	cctx, cancel := context.WithCancel(ctx)
	sw := &syncWriter{w: new(bytes.Buffer)}
	go func() {
		// Cancel once the build runs.
		for !strings.Contains(sw.String(), "running") {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	_, err = e.exec.Run(cctx, shBuild(`echo running; sleep 1000`), sw)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled build: %v", err)
	}
}

// TestKilledExecutorLeavesNothing kills a process running a build (this
// test binary, re-executed) and checks that no process of the build and no
// mount of it survive.
func TestKilledExecutorLeavesNothing(t *testing.T) {
	if os.Getenv("CASTOR_SANDBOX_KILL_CHILD") == "1" {
		e := newEnv(t, func(o *sandbox.Options) { o.ScratchDir = os.Getenv("CASTOR_SANDBOX_KILL_SCRATCH") })
		os.Stdout.WriteString("child ready\n")
		e.exec.Run(context.Background(), shBuild(`sleep 98764 & echo started; sleep 98765`), os.Stdout)
		return
	}
	newEnv(t, nil) // skips where the child would
	scratch := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledExecutorLeavesNothing$", "-test.v")
	cmd.Env = append(os.Environ(), "CASTOR_SANDBOX_KILL_CHILD=1", "CASTOR_SANDBOX_KILL_SCRATCH="+scratch, "TMPDIR="+scratch)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "started" {
	}
	if sc.Text() != "started" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("the child's build never started")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	// The kernel tears the namespaces down once the helper is gone; give
	// it a moment, then nothing may be left.
	deadline := time.Now().Add(20 * time.Second)
	for {
		procs, mounts := leftovers(t, scratch)
		if len(procs) == 0 && len(mounts) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: processes %v, mounts %v", procs, mounts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Only files are left, and the next executor removes them.
	if left, _ := filepath.Glob(filepath.Join(scratch, "castor-build-*")); len(left) == 0 {
		t.Error("expected the killed build's scratch directory")
	}
	newEnv(t, func(o *sandbox.Options) { o.ScratchDir = scratch })
	if left, _ := filepath.Glob(filepath.Join(scratch, "castor-build-*")); len(left) != 0 {
		t.Errorf("not cleaned up: %v", left)
	}
}

// leftovers lists processes running the test's sleeps and mounts (in any
// mount namespace) under scratch or of the castor filesystem.
func leftovers(t *testing.T, scratch string) (procs, mounts []string) {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmdline, _ := os.ReadFile(filepath.Join(d, "cmdline"))
		if bytes.Contains(cmdline, []byte("9876")) {
			procs = append(procs, d+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
		mi, _ := os.ReadFile(filepath.Join(d, "mountinfo"))
		for _, line := range strings.Split(string(mi), "\n") {
			if strings.Contains(line, scratch) || strings.Contains(line, "fuse.castor") {
				mounts = append(mounts, d+": "+line)
			}
		}
	}
	return procs, mounts
}

// TestStaleScratchRemoved checks that a new executor removes the scratch
// directories a killed one left, and only those.
func TestStaleScratchRemoved(t *testing.T) {
	scratch := t.TempDir()
	stale := filepath.Join(scratch, "castor-build-1")
	live := filepath.Join(scratch, "castor-build-2")
	for _, d := range []string{stale, live} {
		os.MkdirAll(filepath.Join(d, "root"), 0o755)
		os.WriteFile(filepath.Join(d, ".lock"), nil, 0o600)
	}
	f, err := os.Open(filepath.Join(live, ".lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	newEnv(t, func(o *sandbox.Options) { o.ScratchDir = scratch })
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale directory still there: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("directory in use removed: %v", err)
	}
}
