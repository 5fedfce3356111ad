package fstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/castor-nix/castor/e2e/testenv"
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
