package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// castorBin is the binary under test, built by TestMain.
var castorBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "castor-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	castorBin = filepath.Join(dir, "castor")
	build := exec.Command("go", "build", "-o", castorBin, "github.com/castor-nix/castor/cmd/castor")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building castor:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// store is one castor store directory used through the binary.
type store struct {
	t    testing.TB
	home string
}

func newStore(t testing.TB) *store {
	return &store{t: t, home: t.TempDir()}
}

// result is a finished castor invocation.
type result struct {
	stdout, stderr []byte
	code           int
}

// run runs castor with CASTOR_HOME set to the store and returns what it
// printed and its exit status; it fails the test only if castor could not
// be started.
func (s *store) run(stdin []byte, args ...string) result {
	s.t.Helper()
	cmd := exec.Command(castorBin, args...)
	cmd.Env = append(os.Environ(), "CASTOR_HOME="+s.home)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			s.t.Fatalf("castor %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return result{stdout: out.Bytes(), stderr: errb.Bytes(), code: code}
}

// ok runs castor and fails the test unless it exits 0; it returns stdout
// with the final newline trimmed.
func (s *store) ok(args ...string) string {
	s.t.Helper()
	r := s.run(nil, args...)
	if r.code != 0 {
		s.t.Fatalf("castor %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return strings.TrimSuffix(string(r.stdout), "\n")
}
