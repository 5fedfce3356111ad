package drvtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/castor-nix/castor/builder/sandbox"
	"github.com/castor-nix/castor/e2e/testenv"
)

// buildDir copies testdata to a temporary directory with busybox/bin/sh
// next to build.nix.
func buildDir(t *testing.T) string {
	t.Helper()
	shell := sandbox.FindShell()
	if shell == "" {
		t.Skip("needs a static busybox (busybox-static) for the builders")
	}
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-a", "testdata/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("copying testdata: %v\n%s", err, out)
	}
	data, err := os.ReadFile(shell)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "busybox", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(bin, "sh")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBuild builds build.nix with castor build and with nix-build (both
// sandboxed, import from derivation included): both must print the same
// output paths, and every output must have Nix's NAR hash, size and
// references; -o must make nix-build's result links.
func TestBuild(t *testing.T) {
	nix := newNixNS(t)
	testenv.RequireFUSE(t)
	t.Setenv("NIX_PATH", "")
	dir := buildDir(t)

	c := newCastor()
	links := filepath.Join(t.TempDir(), "result")
	out, errOut, err := c.run(t, dir, "build", "build.nix", "-j", "2", "--scratch-dir", t.TempDir(), "-o", links)
	t.Logf("castor build:\n%s", errOut)
	if err != nil {
		t.Fatalf("castor build: %v", err)
	}
	nixOut, nixErr, err := nix.output(dir, "nix-build", "build.nix", "--no-out-link",
		"--option", "sandbox", "true", "--option", "sandbox-paths", "/bin/sh="+sandbox.FindShell())
	if err != nil {
		t.Fatalf("nix-build: %v\n%s", err, nixErr)
	}
	if out != nixOut {
		t.Fatalf("castor build printed\n%s\nnix-build printed\n%s", out, nixOut)
	}
	outputs := strings.Fields(out)
	if len(outputs) < 8 {
		t.Fatalf("only %d outputs built", len(outputs))
	}

	for _, n := range nix.pathInfos(false, outputs...) {
		info := c.pathInfo(t, n.Path)
		if info == nil {
			t.Errorf("%s: castor did not register it", n.Path)
			continue
		}
		compareNARAndRefs(t, info, n)
	}

	// What import from derivation read reached the build (castor's
	// output has the same NAR hash as this one).
	for _, p := range outputs {
		if strings.HasSuffix(p, "-uses") {
			b, err := os.ReadFile(nix.realPath(p))
			if err != nil || !strings.Contains(string(b), "42 made by a build") {
				t.Errorf("%s: %q, %v", p, b, err)
			}
		}
	}

	// Result links as nix-build names them.
	for i, p := range outputs {
		name := links
		if i > 0 {
			name += "-" + strconv.Itoa(i+1)
		}
		if strings.HasSuffix(p, "-dev") {
			name += "-dev"
		}
		if target, err := os.Readlink(name); err != nil || target != p {
			t.Errorf("result link %s: %q, %v; want %s", name, target, err, p)
		}
	}
}
