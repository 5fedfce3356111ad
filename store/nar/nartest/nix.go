package nartest

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/castor-nix/castor/e2e/testenv"
)

// nixConfig lets Nix 2.8 run as root without a nixbld group or daemon.
const nixConfig = testenv.NixConfig

// NeedNix skips the test when Nix's command-line tools are not installed,
// through the project's one skip helper. CI installs them (Debian's
// nix-bin), so there the oracle tests run.
func NeedNix(t testing.TB) {
	t.Helper()
	testenv.RequireBinary(t, "nix-store")
	testenv.RequireBinary(t, "nix")
}

func nixCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "NIX_CONFIG="+nixConfig)
	return cmd
}

func run(t testing.TB, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := nixCmd(args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// NixDump returns `nix-store --dump path`: the NAR of path as Nix writes it.
func NixDump(t testing.TB, path string) []byte {
	t.Helper()
	return run(t, nil, "nix-store", "--dump", path)
}

// NixRestore unpacks nar at dst (which must not exist) with
// `nix-store --restore`.
func NixRestore(t testing.TB, nar []byte, dst string) {
	t.Helper()
	run(t, nar, "nix-store", "--restore", dst)
}

// NixHashPath returns the SHA-256 `nix hash path` reports for path: the
// hash of its NAR.
func NixHashPath(t testing.TB, path string) [32]byte {
	t.Helper()
	out := strings.TrimSpace(string(run(t, nil, "nix", "hash", "path", "--type", "sha256", "--base16", path)))
	b, err := hex.DecodeString(out)
	if err != nil || len(b) != 32 {
		t.Fatalf("nix hash path %s: unexpected output %q", path, out)
	}
	return [32]byte(b)
}

// NixRestoreError runs `nix-store --restore` on nar into dst and returns
// whether Nix accepted it, with its error output.
func NixRestoreError(nar []byte, dst string) (ok bool, stderr string) {
	cmd := nixCmd("nix-store", "--restore", dst)
	cmd.Stdin = bytes.NewReader(nar)
	var e bytes.Buffer
	cmd.Stderr = &e
	err := cmd.Run()
	return err == nil, e.String()
}
