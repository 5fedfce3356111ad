package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/castor-nix/castor/e2e/testenv"
)

// TestVMRun adds two trees to a store with `castor store add`, then runs
// `castor vm run` on that store: inside the VM every file of both store
// paths hashes as on the host, a store path the store lacks is not there,
// the command's output comes back on stdout and stderr and castor exits
// with the command's status.
func TestVMRun(t *testing.T) {
	testenv.RequireBinary(t, "qemu-system-x86_64")
	testenv.RequireBinary(t, "busybox")
	if _, err := os.Stat("/boot"); err != nil {
		t.Skip("needs Debian's cloud kernel in /boot")
	}
	s := newStore(t)
	var paths, want []string
	for i, files := range []map[string]string{
		{"bin/tool": "#!/bin/sh\necho tool\n", "share/doc/README": "docs\n", "empty": ""},
		{"data/big": strings.Repeat("castor ", 200000), "data/sub/small": "small\n"},
	} {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("tree%d", i))
		for rel, content := range files {
			p := filepath.Join(dir, rel)
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte(content), 0o644)
		}
		p := s.ok("store", "add", dir)
		paths = append(paths, p)
		var lines []string
		for rel, content := range files {
			sum := sha256.Sum256([]byte(content))
			lines = append(lines, hex.EncodeToString(sum[:])+"  "+p+"/"+rel)
		}
		sort.Slice(lines, func(a, b int) bool { return lines[a][66:] < lines[b][66:] })
		want = append(want, lines...)
	}
	script := "for p in " + strings.Join(paths, " ") + "; do find $p -type f | sort | xargs sha256sum; done; " +
		"cat /nix/store/00000000000000000000000000000000-absent/x; echo to-stderr >&2; exit 3"
	r := s.run(nil, "vm", "run", "--memory", "256M", "--", "sh", "-c", script)
	if r.code != 3 {
		t.Fatalf("castor vm run exited %d, want the command's 3\nstderr:\n%s", r.code, r.stderr)
	}
	if got := strings.TrimSpace(string(r.stdout)); got != strings.Join(want, "\n") {
		t.Errorf("hashes in the VM:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if !strings.Contains(string(r.stderr), "No such file or directory") || !strings.Contains(string(r.stderr), "to-stderr") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
}
