package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// packages maps binaries to the Debian package that provides them, for
// skip messages.
var packages = map[string]string{
	"nix-store":          "nix-bin",
	"nix":                "nix-bin",
	"nix-instantiate":    "nix-bin",
	"qemu-system-x86_64": "qemu-system-x86",
	"fusermount3":        "fuse3",
	"busybox":            "busybox-static",
	"cloud-hypervisor":   "(not packaged in Debian 12; needs /dev/kvm too)",
}

// RequireBinary returns the path of name on PATH, or skips the test.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		pkg := packages[name]
		if pkg == "" {
			pkg = "its package"
		}
		t.Skipf("needs %s on PATH: install %s (.ci/run does)", name, pkg)
	}
	return p
}

// RequireRoot skips unless the test runs as root (mount namespaces, FUSE
// mounts over /nix/store).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount namespaces and FUSE mounts); CI runs as root")
	}
}

// RequireFUSE skips unless /dev/fuse is usable.
func RequireFUSE(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("needs /dev/fuse: %v", err)
	}
	f.Close()
}

// RequireKVM skips unless /dev/kvm can be opened and the CPU advertises
// hardware virtualisation (vmx or svm): some VMs expose /dev/kvm without
// nested virtualisation, and KVM guests hang there.
func RequireKVM(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("needs /dev/kvm (hardware virtualisation), absent here: %v", err)
	}
	f.Close()
	info, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(info), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			for _, fl := range strings.Fields(v) {
				if fl == "vmx" || fl == "svm" {
					return
				}
			}
			break
		}
	}
	t.Skip("needs KVM: /dev/kvm opens but the CPU advertises no vmx/svm (nested virtualisation is off), so KVM guests cannot run")
}

// NixConfig is the configuration every oracle run uses: no build users, no
// sandbox, no substituters (no network here), flakes-era commands on.
const NixConfig = "build-users-group =\nsandbox = false\nsubstituters =\nexperimental-features = nix-command"

// Nix runs Nix 2.8 commands against a throw-away local store under a
// temporary directory, as an oracle.
type Nix struct {
	t testing.TB
	// Root is the chroot store's directory: paths are named /nix/store/…
	// but live under Root/nix/store.
	Root string
	// mounted: commands run in a private mount namespace with Root/nix
	// bound over /nix, instead of with --store Root.
	mounted bool
}

// NewNix skips unless Nix is installed and returns a runner with a fresh
// store.
func NewNix(t testing.TB) *Nix {
	t.Helper()
	RequireBinary(t, "nix-store")
	return &Nix{t: t, Root: t.TempDir()}
}

// NewNixMounted is NewNix for tests that need Nix to behave exactly as
// with its own /nix/store: each command runs in a private mount namespace
// where Root/nix is bound over /nix (the host's /nix is untouched). A
// chroot store (--store DIR) differs in small ways: for instance, it
// resolves store paths in strings with a context to their real location
// under DIR before adding them, so builtins.path of such a path loses the
// references Nix keeps otherwise. Needs root and unshare(1).
func NewNixMounted(t testing.TB) *Nix {
	t.Helper()
	RequireBinary(t, "nix-store")
	RequireBinary(t, "unshare")
	RequireRoot(t)
	if fi, err := os.Stat("/nix"); err != nil || !fi.IsDir() {
		t.Skipf("needs a /nix directory to bind the throw-away store over: %v", err)
	}
	n := &Nix{t: t, Root: t.TempDir(), mounted: true}
	if err := os.MkdirAll(filepath.Join(n.Root, "nix"), 0o755); err != nil {
		t.Fatal(err)
	}
	return n
}

// Command returns the command that runs a Nix command (nix-store, nix,
// nix-instantiate…) against the throw-away store, for callers that need
// its stderr or a working directory.
func (n *Nix) Command(name string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if n.mounted {
		full := append([]string{"--mount", "--propagation", "private", "--", "sh", "-c", `mount --bind "$0" /nix && exec "$@"`,
			filepath.Join(n.Root, "nix"), name}, args...)
		cmd = exec.Command("unshare", full...)
	} else {
		cmd = exec.Command(name, append([]string{"--store", n.Root}, args...)...)
	}
	cmd.Env = n.Env()
	return cmd
}

// Env returns the environment for Nix commands.
func (n *Nix) Env() []string {
	return append(os.Environ(), "NIX_CONFIG="+NixConfig, "NIX_REMOTE=", "HOME="+n.Root)
}

// Run runs a Nix command (nix-store, nix, nix-instantiate…) with --store
// pointing at the throw-away store, and returns its stdout with the final
// newline trimmed. It fails the test on error, showing stderr.
func (n *Nix) Run(name string, args ...string) string {
	n.t.Helper()
	out, err := n.Output(nil, name, args...)
	if err != nil {
		n.t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return strings.TrimSuffix(string(out), "\n")
}

// Output runs a Nix command with stdin and returns stdout; the error
// includes stderr.
func (n *Nix) Output(stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := n.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, &CmdError{Err: err, Stderr: stderr.String()}
	}
	return out, nil
}

// RealPath maps /nix/store/… to where the throw-away store keeps it.
func (n *Nix) RealPath(storePath string) string {
	return filepath.Join(n.Root, storePath)
}

// CmdError is a failed command with its stderr.
type CmdError struct {
	Err    error
	Stderr string
}

func (e *CmdError) Error() string { return e.Err.Error() + ": " + strings.TrimSpace(e.Stderr) }
func (e *CmdError) Unwrap() error { return e.Err }
