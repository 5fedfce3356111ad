package e2e

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/fs/fstest"
	"github.com/castor-nix/castor/store/nar/nartest"
)

// mounted is a `castor mount` running in a private mount namespace of its
// own; the test reaches that namespace through /proc/PID/root.
type mounted struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *lockedBuffer
	waited chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// mountStore starts `castor mount ARGS… /nix/store` for store s under
// unshare, with /nix/store made available in its namespace, and waits
// until it logs that the mount is ready.
func mountStore(t *testing.T, s *store, args ...string) *mounted {
	t.Helper()
	testenv.RequireFUSE(t)
	unshare := testenv.RequireBinary(t, "unshare")
	// In the namespace: keep the host's /nix/store if there is one
	// (mounting over it there leaves the host's alone), else make one
	// on a tmpfs over /nix (or over a new, empty /nix).
	script := `[ -d /nix/store ] || { mkdir -p /nix && mount -t tmpfs tmpfs /nix && mkdir /nix/store; } || exit 111
exec "$@"`
	full := append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", castorBin, "mount"}, args...)
	full = append(full, "/nix/store")
	cmd := exec.Command(unshare, full...)
	cmd.Env = append(os.Environ(), "CASTOR_HOME="+s.home)
	m := &mounted{t: t, cmd: cmd, stderr: &lockedBuffer{}, waited: make(chan error, 1)}
	pr, pw := io.Pipe()
	cmd.Stderr = io.MultiWriter(m.stderr, pw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		pw.Close()
		m.waited <- err
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-m.waited
		}
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		found := false
		for sc.Scan() {
			if !found && strings.Contains(sc.Text(), "mounted, ready") {
				found = true
				ready <- true
			}
		}
		if !found {
			ready <- false
		}
	}()
	if !<-ready {
		err := <-m.waited
		t.Fatalf("castor mount exited before it was ready: %v\n%s", err, m.stderr)
	}
	return m
}

// path returns where the mount's /nix/store/… is seen from outside its
// namespace.
func (m *mounted) path(storePath string) string {
	return filepath.Join("/proc", strconv.Itoa(m.cmd.Process.Pid), "root", storePath)
}

// stop sends sig and waits for a clean exit.
func (m *mounted) stop(sig os.Signal) {
	m.t.Helper()
	m.cmd.Process.Signal(sig)
	select {
	case err := <-m.waited:
		if err != nil {
			m.t.Fatalf("castor mount after %v: %v\n%s", sig, err, m.stderr)
		}
	case <-time.After(time.Minute):
		m.t.Fatalf("castor mount still running a minute after %v\n%s", sig, m.stderr)
	}
}

// TestMountAgainstNix adds trees with castor, mounts the store with the
// castor binary over /nix/store (in a private namespace) and compares each
// store path under the mount with Nix's copy of the same tree: modes,
// sizes, symlink targets, a hash of every file, and nix hash path. Then
// it stops the mount with SIGTERM.
func TestMountAgainstNix(t *testing.T) {
	nix := testenv.NewNix(t)
	s := newStore(t)
	var paths []string
	for seed := range uint64(3) {
		tree := filepath.Join(t.TempDir(), "tree")
		nartest.GenTree(t, tree, 40+seed, nartest.TreeOptions{Entries: 100, LargeFiles: seed == 0})
		p := s.ok("store", "add", tree)
		if want := nix.Run("nix-store", "--add", tree); p != want {
			t.Fatalf("castor store add = %s, nix-store --add = %s", p, want)
		}
		paths = append(paths, p)
	}
	m := mountStore(t, s, "--list-root")
	for _, p := range paths {
		want, err := fstest.Manifest(nix.RealPath(p))
		if err != nil {
			t.Fatal(err)
		}
		got, err := fstest.Manifest(m.path(p))
		if err != nil {
			t.Fatalf("walking the mount: %v\n%s", err, m.stderr)
		}
		if d := fstest.DiffManifests(want, got); len(d) > 0 {
			t.Errorf("%s under the mount differs from Nix's copy in %d paths:\n%s", p, len(d), strings.Join(d[:min(len(d), 10)], "\n"))
		}
		if got, want := nartest.NixHashPath(t, m.path(p)), nartest.NixHashPath(t, nix.RealPath(p)); got != want {
			t.Errorf("nix hash path of %s under the mount: %x, Nix's copy: %x", p, got, want)
		}
	}
	ents, err := os.ReadDir(m.path("/nix/store"))
	if err != nil || len(ents) != len(paths) {
		t.Errorf("--list-root: %d entries, %v; want %d", len(ents), err, len(paths))
	}
	for _, bad := range []string{"/nix/store/00000000000000000000000000000000-missing", "/nix/store/garbage"} {
		if _, err := os.Lstat(m.path(bad)); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("%s: %v, want ENOENT", bad, err)
		}
	}
	if err := os.WriteFile(m.path(paths[0]+"/new"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("writing into the mount: %v, want EROFS", err)
	}
	m.stop(syscall.SIGTERM)
	if !strings.Contains(m.stderr.String(), "unmounted") {
		t.Errorf("no unmount logged:\n%s", m.stderr)
	}
}

// TestMountRefusesListing: without --list-root the mountpoint cannot be
// listed, but paths resolve; SIGINT stops it cleanly.
func TestMountRefusesListing(t *testing.T) {
	s := newStore(t)
	tree := filepath.Join(t.TempDir(), "t")
	os.MkdirAll(filepath.Join(tree, "bin"), 0o755)
	os.WriteFile(filepath.Join(tree, "bin", "hello"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	p := s.ok("store", "add", tree)
	m := mountStore(t, s)
	if _, err := os.ReadDir(m.path("/nix/store")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("listing without --list-root: %v, want EPERM", err)
	}
	b, err := os.ReadFile(m.path(p + "/bin/hello"))
	if err != nil || string(b) != "#!/bin/sh\necho hi\n" {
		t.Errorf("reading through the mount: %q, %v", b, err)
	}
	m.stop(os.Interrupt)
}
