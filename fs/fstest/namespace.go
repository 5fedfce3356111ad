package fstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// envInNamespace marks the re-executed test binary; its value is the
// mount namespace it was started from.
const envInNamespace = "CASTOR_FSTEST_MOUNTNS"

// Main runs the tests of a package that mounts, from its TestMain:
//
//	func TestMain(m *testing.M) { fstest.Main(m) }
//
// As root with unshare(1) available it re-executes the test binary under
// `unshare --mount --propagation private`, so every mount the tests make
// lives and dies with that namespace. Otherwise it runs the tests as they
// are, and RequireFUSE skips the ones that mount.
func Main(m *testing.M) {
	if os.Getenv(envInNamespace) == "" && os.Geteuid() == 0 {
		if unshare, err := exec.LookPath("unshare"); err == nil {
			args := append([]string{"--mount", "--propagation", "private", os.Args[0]}, os.Args[1:]...)
			cmd := exec.Command(unshare, args...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
			parent, _ := os.Readlink("/proc/self/ns/mnt")
			cmd.Env = append(os.Environ(), envInNamespace+"="+parent)
			// If go test kills us (timeout), the namespace and its
			// mounts go too.
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			err := cmd.Run()
			var exit *exec.ExitError
			switch {
			case err == nil:
				os.Exit(0)
			case errors.As(err, &exit):
				os.Exit(exit.ExitCode())
			default:
				fmt.Fprintf(os.Stderr, "fstest: running the tests in a private mount namespace: %v\n", err)
				os.Exit(2)
			}
		}
	}
	os.Exit(m.Run())
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
// root, /dev/fuse, and a private mount namespace (see Main). CI has all
// three, so there nothing is skipped.
func RequireFUSE(tb testing.TB) {
	tb.Helper()
	if reason := fuseMissing(); reason != "" {
		tb.Skipf("skipping: needs a real FUSE mount: %s", reason)
	}
}

func fuseMissing() string {
	switch {
	case os.Geteuid() != 0:
		return "not root"
	case !exists("/dev/fuse"):
		return "no /dev/fuse"
	case !InPrivateNamespace():
		return "not in a private mount namespace (run the package through fstest.Main, with unshare(1) installed)"
	}
	return ""
}

// RequireBinary skips the test unless the named program is installed.
func RequireBinary(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		tb.Skipf("skipping: needs %s, which is not installed", name)
	}
	return p
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
