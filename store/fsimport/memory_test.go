package fsimport_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/fsimport"
	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/nar/nartest"
)

// TestImportBigFileMemory imports one big (sparse) file in a child process
// and checks the child's peak RSS: contents are never held whole, only the
// workers' fixed buffers. 1 GiB normally, 256 MiB with -short: the bound
// does not depend on the size (4 GiB measured 12 MiB peak RSS, as 1 GiB).
func TestImportBigFileMemory(t *testing.T) {
	if path := os.Getenv("FSIMPORT_RSS_CHILD"); path != "" {
		// The child: import and print the NAR hash.
		_, size, sum, err := fsimport.Import(context.Background(), path, nartest.DiscardBlobs{}, memory.NewDirectoryService(), nil)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("%d %x\n", size, sum)
		return
	}
	if raceEnabled {
		t.Skip("peak RSS is not meaningful under the race detector; the normal test run checks it")
	}
	size := int64(1 << 30)
	if testing.Short() {
		size = 256 << 20
	}
	p := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	// A sparse file: reads return zeros without touching the disk.
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestImportBigFileMemory$")
	cmd.Env = append(os.Environ(), "FSIMPORT_RSS_CHILD="+p)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var gotSize uint64
	var gotSum string
	if _, err := fmt.Sscanf(string(out), "%d %s", &gotSize, &gotSum); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	// The expected NAR hash, from the NAR writer over a stream of zeros.
	h := sha256.New()
	nw := nar.NewWriter(h)
	nw.WriteHeader(&nar.Header{Path: "/", Type: nar.TypeRegular, Size: size})
	if _, err := io.CopyN(nw, zeros{}, size); err != nil {
		t.Fatal(err)
	}
	nw.Close()
	if want := fmt.Sprintf("%x", h.Sum(nil)); gotSum != want {
		t.Fatalf("NAR sha256 %s, want %s", gotSum, want)
	}
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB
	t.Logf("import of a %d MiB file: peak RSS %d MiB", size>>20, rss>>10)
	if limit := int64(64 << 10); rss > limit {
		t.Fatalf("peak RSS %s KiB exceeds %d KiB", strconv.FormatInt(rss, 10), limit)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
