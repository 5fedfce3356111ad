package e2e

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/castor-nix/castor/store/nar/nartest"
)

// TestCrashSafety kills `castor store add` and `castor store import-nar`
// with SIGKILL at random points, over and over, on one store. After every
// kill the store must verify: no PathInfo may point at a tree that is not
// all there. At the end the adds are finished and their NARs compared.
func TestCrashSafety(t *testing.T) {
	s := newStore(t)
	tmp := t.TempDir()
	var trees []string
	for i := range 3 {
		tree := filepath.Join(tmp, "tree"+string(rune('a'+i)))
		nartest.GenTree(t, tree, uint64(100+i), nartest.TreeOptions{Entries: 150, LargeFiles: true})
		// Add a few MiB so the add takes long enough to be killed midway.
		big := make([]byte, 6<<20)
		rng := rand.New(rand.NewPCG(uint64(i), 1))
		for j := range big {
			big[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(tree, "big"), big, 0o644); err != nil {
			t.Fatal(err)
		}
		trees = append(trees, tree)
	}

	// Calibrate: how long does a full add take on a fresh store?
	cal := newStore(t)
	start := time.Now()
	cal.ok("store", "add", trees[0])
	full := time.Since(start)
	narOf := cal.run(nil, "store", "dump", cal.ok("store", "add", trees[0])).stdout

	rng := rand.New(rand.NewPCG(42, 42))
	iterations := 24
	if testing.Short() {
		iterations = 6
	}
	killed := 0
	for i := range iterations {
		delay := time.Duration(rng.Int64N(int64(full) * 9 / 10))
		var cmd *exec.Cmd
		if i%3 == 2 {
			cmd = exec.Command(castorBin, "store", "import-nar", "--name", "imported")
			cmd.Stdin = bytes.NewReader(narOf)
		} else {
			// New contents every time, so every add has work to do.
			tree := trees[i%len(trees)]
			fresh := make([]byte, 1<<20)
			for j := range fresh {
				fresh[j] = byte(rng.Uint32())
			}
			if err := os.WriteFile(filepath.Join(tree, "fresh"), fresh, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd = exec.Command(castorBin, "store", "add", tree)
		}
		cmd.Env = append(os.Environ(), "CASTOR_HOME="+s.home)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			killed++
		}
		out := s.run(nil, "store", "verify")
		if out.code != 0 {
			t.Fatalf("iteration %d (killed after %v): store damaged:\n%s%s", i, delay, out.stdout, out.stderr)
		}
	}
	t.Logf("%d runs, killed %d (a full add takes %v)", iterations, killed, full)
	if killed == 0 {
		t.Fatal("no run was killed before it finished: the test checked nothing")
	}

	// Finish every add; the results must be whole and right.
	for _, tree := range trees {
		os.Remove(filepath.Join(tree, "fresh"))
		p := s.ok("store", "add", tree)
		if tree == trees[0] {
			if got := s.run(nil, "store", "dump", p).stdout; !bytes.Equal(got, narOf) {
				t.Fatal("NAR after crashes differs from a clean store's")
			}
		}
	}
	if out := s.ok("store", "verify"); !strings.Contains(out, " 0 damaged") {
		t.Fatal(out)
	}
}
