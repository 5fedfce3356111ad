package realise_test

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/castor-nix/castor/store/pathinfo/pathinfotest"
	"maps"
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

// corpus is corpus.nix instantiated by Nix in a throw-away store, with
// the file and HTTP servers its fetches use.
type corpus struct {
	nix   *testenv.Nix
	dir   string
	attrs map[string]string // attribute -> .drv path
	args  []string          // --argstr … for nix-instantiate
}

func copyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatal(err)
	}
}

// newCorpus lays out testdata with a static busybox next to corpus.nix,
// serves "hello fetch\n" over file:// and http:// and instantiates every
// attribute with Nix.
func newCorpus(t testing.TB, file string) *corpus {
	t.Helper()
	testenv.RequireBinary(t, "busybox")
	nix := testenv.NewNix(t)
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-a", "testdata/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("copying testdata: %v\n%s", err, out)
	}
	copyFile(t, sandbox.FindShell(), filepath.Join(dir, "busybox/bin/busybox"), 0o755)
	if err := os.Symlink("busybox", filepath.Join(dir, "busybox/bin/sh")); err != nil {
		t.Fatal(err)
	}
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
	c := &corpus{nix: nix, dir: dir, args: []string{
		"--argstr", "fileURL", "file://" + served,
		"--argstr", "httpURL", "http://" + ln.Addr().String() + "/hello.txt",
	}}
	expr := filepath.Join(dir, file)
	nix.Run("nix-instantiate", append([]string{expr}, c.args...)...)
	out := nix.Run("nix-instantiate", append([]string{"--eval", "--strict", "--json", "-E",
		`{ fileURL, httpURL }: builtins.mapAttrs (n: v: v.drvPath) (import ` + expr + ` { inherit fileURL httpURL; })`}, c.args...)...)
	if err := json.Unmarshal([]byte(out), &c.attrs); err != nil {
		t.Fatalf("attributes: %v: %s", err, out)
	}
	return c
}

func (c *corpus) drvs() []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(c.attrs)) {
		out = append(out, c.attrs[k])
	}
	return out
}

// castor is a memory store with the corpus's .drv closure imported from
// Nix, as `nix-store --export | castor store import-export` does.
type castor struct {
	st    realise.Store
	infos *pimemory.Service
	exec  *sandbox.Executor
}

func (c *corpus) importInto(t testing.TB) *castor {
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
	x, err := sandbox.New(sandbox.Options{Directories: dirs, Blobs: blobs, ScratchDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return &castor{st: realise.Store{Blobs: blobs, Directories: dirs, PathInfos: infos}, infos: infos, exec: x}
}

// nixRealise builds with Nix 2.8, sandbox on, /bin/sh a static busybox.
func (c *corpus) nixRealise(t testing.TB, drvs ...string) {
	t.Helper()
	args := append([]string{"--realise"}, drvs...)
	// Nix runs builtin:fetchurl inside its sandbox: the file:// source
	// must be visible there.
	args = append(args, "--option", "sandbox", "true", "--option", "sandbox-paths",
		"/bin/sh="+sandbox.FindShell()+" "+filepath.Join(c.dir, "served"))
	if _, err := c.nix.Output(nil, "nix-store", args...); err != nil {
		t.Fatalf("Nix: %v", err)
	}
}

// lockedWriter lets builds' output be logged by the test.
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

// TestOracleCorpus realises corpus.nix with castor's sandbox and with Nix
// 2.8's, and compares every output: path, NAR hash and size, references,
// deriver and content address.
func TestOracleCorpus(t *testing.T) {
	testenv.RequireFUSE(t)
	c := newCorpus(t, "corpus.nix")
	cs := c.importInto(t)
	logs := &realise.MemoryLogs{}
	r := realise.New(cs.st, realise.Options{Executor: cs.exec, Jobs: 2, Logs: logs, Output: &lockedWriter{t: t}})
	results, err := r.Realise(context.Background(), c.drvs())
	if err != nil {
		t.Fatal(err)
	}
	c.nixRealise(t, c.drvs()...)

	var outPaths []string
	for _, res := range results {
		for _, p := range res.Outputs {
			outPaths = append(outPaths, p.Absolute())
		}
	}
	js := c.nix.Run("nix", append([]string{"path-info", "--json"}, outPaths...)...)
	compared := pathinfotest.CompareNix(t, cs.infos, js, len(outPaths))
	t.Logf("compared %d outputs of %d derivations", compared, len(results))

	// Logs are kept.
	rc, err := logs.Open(c.attrs["hello"])
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()

	// A second run builds nothing.
	again, err := r.Realise(context.Background(), c.drvs())
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range again {
		if res.Built {
			t.Errorf("%s built again", res.DrvPath)
		}
	}
}
