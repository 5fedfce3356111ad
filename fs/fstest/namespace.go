package fstest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/castor-nix/castor/e2e/testenv"
)

// envInNamespace marks the re-executed test binary; its value is the
// mount namespace it was started from.
const envInNamespace = "CASTOR_FSTEST_MOUNTNS"

// envConns names a file where the tests record the FUSE connections they
// mount, so that Main can abort them if the test binary gets stuck.
const envConns = "CASTOR_FSTEST_CONNS"

// Main runs the tests of a package that mounts, from its TestMain:
//
//	func TestMain(m *testing.M) { fstest.Main(m) }
//
// As root with unshare(1) available it re-executes the test binary under
// `unshare --mount --propagation private`, so every mount the tests make
// lives and dies with that namespace. Otherwise it runs the tests as they
// are, and RequireFUSE skips the ones that mount.
//
// A process that serves FUSE to itself can deadlock when it dies: its
// threads wait, unkillably, for answers only the dead server could give.
// Main watches for that (and for go test's timeout signals) and aborts
// the connections the tests recorded (see RecordConnection), so a crash
// fails the run instead of hanging it.
func Main(m *testing.M) {
	if os.Getenv(envInNamespace) == "" && os.Geteuid() == 0 {
		if unshare, err := exec.LookPath("unshare"); err == nil {
			os.Exit(runInNamespace(unshare))
		}
	}
	os.Exit(m.Run())
}

func runInNamespace(unshare string) int {
	conns, err := os.CreateTemp("", "fstest-conns-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fstest:", err)
		return 2
	}
	conns.Close()
	defer os.Remove(conns.Name())

	args := append([]string{"--mount", "--propagation", "private", os.Args[0]}, os.Args[1:]...)
	cmd := exec.Command(unshare, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	parent, _ := os.Readlink("/proc/self/ns/mnt")
	cmd.Env = append(os.Environ(), envInNamespace+"="+parent, envConns+"="+conns.Name())
	// If we are killed outright, the namespace and its mounts go too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "fstest: running the tests in a private mount namespace: %v\n", err)
		return 2
	}
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case sig := <-sigs:
				// Let the tests dump their goroutines, then make sure
				// nothing stays stuck on a connection.
				cmd.Process.Signal(sig)
				time.Sleep(2 * time.Second)
				abortConnections(unshare, conns.Name())
				cmd.Process.Kill()
			case <-tick.C:
				if exitedButStuck(cmd.Process.Pid) {
					fmt.Fprintln(os.Stderr, "fstest: the test process died with threads stuck on its own FUSE mounts; aborting them")
					abortConnections(unshare, conns.Name())
				}
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		if exit.ExitCode() < 0 {
			return 2 // killed by a signal
		}
		return exit.ExitCode()
	}
	fmt.Fprintf(os.Stderr, "fstest: %v\n", err)
	return 2
}

// RecordConnection notes the FUSE connection serving mountpoint, so that
// Main can abort it if the test process gets stuck (see Main). Mount calls
// it.
func RecordConnection(mountpoint string) {
	path := os.Getenv(envConns)
	if path == "" {
		return
	}
	var st syscall.Stat_t
	if err := syscall.Stat(mountpoint, &st); err != nil {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer f.Close()
	// fusectl names a connection by its device number, which for these
	// anonymous devices (major 0) is the minor.
	fmt.Fprintf(f, "%d\n", st.Dev&0xff|(st.Dev>>12)&^0xff)
}

// exitedButStuck reports whether process pid is dying but cannot finish:
// its main thread exited while others live on (an unreapable zombie), or
// a thread has SIGKILL pending while in uninterruptible sleep.
func exitedButStuck(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE …; comm may contain spaces and parentheses.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
		return true
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	for _, t := range tasks {
		st, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		var state string
		var pending uint64
		for _, line := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(line, "State:"); ok {
				state = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "SigPnd:"); ok {
				pending, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			}
		}
		if strings.HasPrefix(state, "D") && pending&(1<<(syscall.SIGKILL-1)) != 0 {
			return true
		}
	}
	return false
}

// abortConnections aborts the recorded connections through fusectl,
// mounted for the purpose in a throw-away namespace.
func abortConnections(unshare, list string) {
	b, err := os.ReadFile(list)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return
	}
	ids := strings.Fields(string(b))
	script := `mountpoint -q /sys/fs/fuse/connections || mount -t fusectl fusectl /sys/fs/fuse/connections || exit 1
for c; do [ -e /sys/fs/fuse/connections/$c/abort ] && echo 1 > /sys/fs/fuse/connections/$c/abort; done; exit 0`
	out, err := exec.Command(unshare, append([]string{"--mount", "sh", "-c", script, "sh"}, ids...)...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "fstest: aborting FUSE connections %v: %v\n%s", ids, err, out)
	}
}

// InPrivateNamespace reports whether this process runs in a mount
// namespace other than the one Main started from, or than PID 1's.
func InPrivateNamespace() bool {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return false
	}
	if parent := os.Getenv(envInNamespace); parent != "" && parent != self {
		return true
	}
	// PID 1's namespace is not readable everywhere (not here, in a VM
	// whose init hides it).
	init, err := os.Readlink("/proc/1/ns/mnt")
	return err == nil && self != init
}

// RequireFUSE skips the test unless it can mount FUSE filesystems safely:
// root, /dev/fuse (testenv.RequireFUSE, the project's one skip helper),
// and a private mount namespace (see Main). CI has all three, so there
// nothing is skipped.
func RequireFUSE(tb testing.TB) {
	tb.Helper()
	testenv.RequireFUSE(tb)
	testenv.RequireBinary(tb, "unshare")
	if !InPrivateNamespace() {
		tb.Skip("needs a private mount namespace for its FUSE mounts: run the package's tests through fstest.Main")
	}
}

// StoreMountpoint returns /nix/store ready to be mounted over, inside
// this process's private mount namespace (RequireFUSE first). Where the
// host has no /nix/store it mounts a tmpfs on /nix in the namespace to
// hold one; only when even /nix is missing does it create that one empty
// directory on the host, as Nix would on first use.
func StoreMountpoint(tb testing.TB) string {
	tb.Helper()
	RequireFUSE(tb)
	const store = "/nix/store"
	if fi, err := os.Stat(store); err == nil && fi.IsDir() {
		return store
	}
	if err := os.MkdirAll("/nix", 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", "/nix", "tmpfs", 0, "mode=0755"); err != nil {
		tb.Fatalf("tmpfs on /nix in the private namespace: %v", err)
	}
	tb.Cleanup(func() { syscall.Unmount("/nix", syscall.MNT_DETACH) })
	if err := os.Mkdir(store, 0o755); err != nil {
		tb.Fatal(err)
	}
	return store
}
