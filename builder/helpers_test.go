package builder_test

import (
	"os/exec"
	"syscall"
	"testing"

	"github.com/castor-nix/castor/e2e/testenv"
)

// run runs a command and returns its combined output, failing the test if
// it fails.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	testenv.RequireBinary(t, name)
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func mkfifo(p string) error { return syscall.Mkfifo(p, 0o644) }
