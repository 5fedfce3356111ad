package microvm_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/castor-nix/castor/builder"
	"github.com/castor-nix/castor/builder/microvm"
	"github.com/castor-nix/castor/builder/realise"
	"github.com/castor-nix/castor/images/imagestest"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/derivation"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/vmm"
)

// qemuChildren lists QEMU processes that are children of this test.
func qemuChildren() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "qemu-system") {
			continue
		}
		if f := strings.Fields(s[i+1:]); len(f) > 1 && f[1] == me {
			pid, _ := strconv.Atoi(e.Name())
			pids = append(pids, pid)
		}
	}
	return pids
}

// checkNoLeftovers: no VM process, and no VM working directory (sockets)
// under tmp.
func checkNoLeftovers(t *testing.T, tmp string) {
	t.Helper()
	if pids := qemuChildren(); len(pids) > 0 {
		t.Errorf("QEMU processes left: %v", pids)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "castor-vm-*")); len(left) > 0 {
		t.Errorf("VM working directories left: %v", left)
	}
}

// TestRealiseFailures realises failures.nix with the micro-VM executor
// under QEMU: a failing builder, one that hangs past the timeout, one
// that fills its scratch space and one whose VM's kernel panics are each
// reported with the tail of their log; none of them has anything
// registered, the build that works does, and no VM, socket or directory
// is left.
func TestRealiseFailures(t *testing.T) {
	img := agentImage(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	c := newCorpus(t, "testdata", "failures.nix")
	cs := c.importInto(t)
	x, err := microvm.New(microvm.Options{
		Directories: cs.dirs, Blobs: cs.blobs, Image: img, Logger: quiet,
		MemoryMiB: 512, ScratchMiB: 64,
		// Running out of memory panics the kernel (instead of the OOM
		// killer picking the builder): the way to make a build panic
		// its VM's kernel.
		KernelArgs: "sysctl.vm.panic_on_oom=1",
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &realise.MemoryLogs{}
	ctx := context.Background()
	// The hanging build with a timeout of its own (long enough for a
	// loaded machine to boot a VM), alongside the others.
	hangErr := make(chan error, 1)
	go func() {
		hr := realise.New(cs.st, realise.Options{Executor: builder.Limit(x, builder.Limits{Timeout: 20 * time.Second}), Logs: logs, Output: &lockedWriter{t: t}})
		_, err := hr.Realise(ctx, c.drvs("hangs"))
		hangErr <- err
	}()
	r := realise.New(cs.st, realise.Options{Executor: builder.Limit(x, builder.Limits{Timeout: 5 * time.Minute}), Jobs: 2, KeepGoing: true, Logs: logs, Output: &lockedWriter{t: t}})
	results, err := r.Realise(ctx, c.drvs("fine", "fails", "fillsScratch", "panics"))
	herr := <-hangErr
	if err == nil || herr == nil {
		t.Fatalf("no error: %v / %v", err, herr)
	}
	err = errors.Join(err, herr)
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{
		"builder for '" + c.attrs["fails"] + "' failed with exit code 3;",
		"> log line 20\n", "> to stderr\n",
		"building '" + c.attrs["hangs"] + "': build timed out after 20s",
		"> about to hang\n",
		"builder for '" + c.attrs["fillsScratch"] + "' failed with exit code 1",
		"No space left on device",
		"building '" + c.attrs["panics"] + "': micro-VM: the guest reset (reboot or kernel panic): Kernel panic - not syncing",
		"> castor: the build's VM failed: the guest reset",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q", want)
		}
	}
	if !errors.Is(err, builder.ErrTimeout) || !errors.Is(err, vmm.ErrGuestReset) {
		t.Errorf("error does not unwrap to ErrTimeout and ErrGuestReset")
	}
	built := map[string]bool{}
	for _, res := range results {
		built[res.DrvPath] = true
	}
	for attr, ok := range map[string]bool{"fine": true, "fails": false, "hangs": false, "fillsScratch": false, "panics": false} {
		if built[c.attrs[attr]] != ok {
			t.Errorf("%s: realised %v, want %v", attr, built[c.attrs[attr]], ok)
		}
		drv, err := derivation.Dir(c.nix.Root).Derivation(ctx, c.attrs[attr])
		if err != nil {
			t.Fatal(err)
		}
		for name, o := range drv.Outputs {
			sp, _ := nixpath.ParseAbsolute(o.Path)
			if _, gerr := cs.infos.Get(ctx, sp.Digest); (gerr == nil) != ok {
				t.Errorf("%s: output %s registered: %v, want %v", attr, name, gerr == nil, ok)
			}
		}
	}
	// The panic's console lines are in the kept log, and its last line
	// (what the error's log tail shows) says what happened.
	rc, err := logs.Open(c.attrs["panics"])
	if err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(rc)
	rc.Close()
	lines := strings.Split(strings.TrimSpace(string(all)), "\n")
	if !strings.Contains(string(all), "eating all memory") || !strings.Contains(string(all), "Kernel panic - not syncing: Out of memory") || !strings.Contains(lines[len(lines)-1], "castor: the build's VM failed: the guest reset") {
		t.Errorf("the panicking build's log:\n%s", all)
	}
	checkNoLeftovers(t, tmp)
}

// TestExecutorErrors: a missing builder program is reported as Nix
// reports it; an output the builder did not create is ErrNoOutput; an
// input the store lacks is an error before any VM boots; a cancelled
// build's VM is killed; nothing is left.
func TestExecutorErrors(t *testing.T) {
	e := newEnv(t, nil)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx := context.Background()

	b := shBuild("true")
	b.Command = []string{"/nonexistent/builder"}
	var log bytes.Buffer
	_, err := e.exec.Run(ctx, b, &log)
	var exit *builder.ExitError
	if !errors.As(err, &exit) || exit.Code != 1 || !strings.Contains(log.String(), "executing '/nonexistent/builder': no such file or directory") {
		t.Errorf("missing builder: %v, log %q", err, log.String())
	}

	outs, err := e.exec.Run(ctx, shBuild("echo no output"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := outs.WriteNAR(ctx, 0, io.Discard); !errors.Is(err, builder.ErrNoOutput) {
		t.Errorf("missing output: %v", err)
	}
	outs.Close()

	b = shBuild("true")
	b.Inputs = []castore.NamedNode{{Name: dataName, Node: castore.Node{Kind: castore.KindDirectory, Digest: castore.Sum([]byte("absent")), Size: 1}}}
	if _, err := e.exec.Run(ctx, b, io.Discard); !errors.Is(err, castore.ErrNotFound) || !strings.Contains(err.Error(), dataName) {
		t.Errorf("input directory missing from the store: %v", err)
	}
	b.Inputs = []castore.NamedNode{{Name: dataName, Node: castore.Node{Kind: castore.KindFile, Digest: castore.Sum([]byte("absent")), Size: 6}}}
	if _, err := e.exec.Run(ctx, b, io.Discard); !errors.Is(err, castore.ErrNotFound) || !strings.Contains(err.Error(), "blob") {
		t.Errorf("input file missing from the store: %v", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	sw := &imagestest.SyncBuffer{}
	go func() {
		for !strings.Contains(sw.String(), "running") {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
	}()
	if _, err := e.exec.Run(cctx, shBuild("echo running; sleep 1000"), sw); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled build: %v", err)
	}
	checkNoLeftovers(t, tmp)
}
