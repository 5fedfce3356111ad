package microvm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/castor-nix/castor/builder/realise"
	"github.com/castor-nix/castor/builder/sandbox"
	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/nixexport"
	pimemory "github.com/castor-nix/castor/store/pathinfo/memory"
)

// corpus is a Nix file of derivations instantiated by Nix 2.8 in a
// throw-away store, as builder/realise's tests do: its directory holds a
// static busybox next to the file, and "hello fetch\n" is served over
// file:// and http:// for fetches.
type corpus struct {
	nix   *testenv.Nix
	dir   string
	attrs map[string]string // attribute -> .drv path
}

func newCorpus(t testing.TB, srcDir, file string) *corpus {
	t.Helper()
	testenv.RequireBinary(t, "busybox")
	nix := testenv.NewNix(t)
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-a", srcDir+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("copying %s: %v\n%s", srcDir, err, out)
	}
	bb, err := os.ReadFile(sandbox.FindShell())
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "busybox/bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "busybox/bin/busybox"), bb, 0o755)
	os.Symlink("busybox", filepath.Join(dir, "busybox/bin/sh"))
	served := filepath.Join(dir, "served/hello.txt")
	os.MkdirAll(filepath.Dir(served), 0o755)
	os.WriteFile(served, []byte("hello fetch\n"), 0o644)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(filepath.Dir(served)))}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	args := []string{"--argstr", "fileURL", "file://" + served, "--argstr", "httpURL", "http://" + ln.Addr().String() + "/hello.txt"}
	c := &corpus{nix: nix, dir: dir}
	expr := filepath.Join(dir, file)
	nix.Run("nix-instantiate", append([]string{expr}, args...)...)
	out := nix.Run("nix-instantiate", append([]string{"--eval", "--strict", "--json", "-E",
		`{ fileURL, httpURL }: builtins.mapAttrs (n: v: v.drvPath) (import ` + expr + ` { inherit fileURL httpURL; })`}, args...)...)
	if err := json.Unmarshal([]byte(out), &c.attrs); err != nil {
		t.Fatalf("attributes: %v: %s", err, out)
	}
	return c
}

func (c *corpus) drvs(attrs ...string) []string {
	if len(attrs) == 0 {
		for k := range c.attrs {
			attrs = append(attrs, k)
		}
		slices.Sort(attrs)
	}
	var out []string
	for _, a := range attrs {
		out = append(out, c.attrs[a])
	}
	return out
}

// castorStore is a memory store holding the corpus's .drv closure, as
// `nix-store --export | castor store import-export` makes it.
type castorStore struct {
	st    realise.Store
	infos *pimemory.Service
	blobs *memory.BlobService
	dirs  *memory.DirectoryService
}

func (c *corpus) importInto(t testing.TB) *castorStore {
	t.Helper()
	closure := strings.Fields(c.nix.Run("nix-store", append([]string{"-qR"}, c.drvs()...)...))
	stream, err := c.nix.Output(nil, "nix-store", append([]string{"--export"}, closure...)...)
	if err != nil {
		t.Fatal(err)
	}
	blobs, dirs, infos := memory.NewBlobService(), memory.NewDirectoryService(), pimemory.New()
	if _, err := nixexport.Import(context.Background(), bytes.NewReader(stream),
		nixexport.Store{Blobs: blobs, Directories: dirs, PathInfos: infos}, nil); err != nil {
		t.Fatal(err)
	}
	return &castorStore{st: realise.Store{Blobs: blobs, Directories: dirs, PathInfos: infos}, infos: infos, blobs: blobs, dirs: dirs}
}

// lockedWriter logs builds' output through the test.
type lockedWriter struct {
	mu sync.Mutex
	t  testing.TB
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
