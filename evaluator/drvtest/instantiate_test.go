package drvtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// gcWarning is what nix-instantiate says about GC roots, which castor
// has no use for.
const gcWarning = "warning: you did not specify '--add-root'; the result might be removed by the garbage collector\n"

// describe is evaluated with --read-write-mode --strict --json by both:
// every attribute's drvPath and output paths (a raw derivationStrict
// result as it is).
const describe = `builtins.mapAttrs (n: v:
  if v ? type then {
    inherit (v) drvPath outPath outputName;
    outputs = builtins.listToAttrs (map (o: { name = o; value = v.${o}.outPath; }) (v.outputs or [ "out" ]));
  } else v) (import ./corpus.nix)`

func testdata(t *testing.T) string {
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestInstantiateCorpus instantiates corpus.nix with castor (into a memory
// store) and with Nix, and compares what the commands print, and then
// every path in the closure of every .drv: the .drv bytes, and for every
// path its references, NAR hash and size and content address.
func TestInstantiateCorpus(t *testing.T) {
	nix := newNixNS(t)
	t.Setenv("NIX_PATH", "")
	dir := testdata(t)

	nixOut, nixErr, err := nix.output(dir, "nix-instantiate", "corpus.nix")
	if err != nil {
		t.Fatalf("nix-instantiate: %v\n%s", err, nixErr)
	}
	c := newCastor()
	out, errOut, err := c.run(t, dir, "instantiate", "corpus.nix")
	if err != nil {
		t.Fatalf("castor instantiate: %v\n%s", err, errOut)
	}
	if out != nixOut {
		t.Errorf("castor instantiate printed\n%s\nnix-instantiate printed\n%s", out, nixOut)
	}
	if want := strings.Replace(nixErr, gcWarning, "", 1); errOut != want {
		t.Errorf("castor instantiate said on stderr\n%s\nnix-instantiate said\n%s", errOut, want)
	}

	nixJSON := nix.run(dir, "nix-instantiate", "--eval", "--read-write-mode", "--strict", "--json", "-E", describe)
	js, errOut, err := c.run(t, dir, "eval", "--read-write-mode", "--strict", "--json", "-E", describe)
	if err != nil {
		t.Fatalf("castor eval: %v\n%s", err, errOut)
	}
	if js != nixJSON {
		t.Errorf("castor eval --json:\n%s\nNix:\n%s", js, nixJSON)
	}

	var drvs []string
	for _, l := range strings.Fields(nixOut) {
		drvs = append(drvs, strings.Split(l, "!")[0])
	}
	compareClosure(t, nix, c, drvs)
}

// compareClosure checks every path in the closure of roots: castor must
// have it, with Nix's references, NAR hash, size and content address,
// and .drv files must be byte-identical.
func compareClosure(t *testing.T, nix *nixNS, c *castor, roots []string) {
	t.Helper()
	infos := nix.pathInfos(true, roots...)
	ndrv := 0
	for _, n := range infos {
		info := c.pathInfo(t, n.Path)
		if info == nil {
			t.Errorf("%s: not in castor's store", n.Path)
			continue
		}
		compareNARAndRefs(t, info, n)
		ca := ""
		if info.CA != nil {
			ca = info.CA.String()
		}
		if ca != n.CA {
			t.Errorf("%s: content address %q, Nix %q", n.Path, ca, n.CA)
		}
		if !strings.HasSuffix(n.Path, ".drv") {
			continue
		}
		ndrv++
		want, err := os.ReadFile(nix.realPath(n.Path))
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.st.Blobs.OpenBlob(context.Background(), info.Node.Digest)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs (%v):\ncastor: %s\nNix:    %s", n.Path, err, got, want)
		}
	}
	t.Logf("compared %d store paths, %d of them .drv files", len(infos), ndrv)
	if ndrv == 0 {
		t.Fatal("no derivations compared")
	}
}

// divergentErrors are errors castor reports with Nix's message but not
// Nix's position, with the reason; their first line is compared.
var divergentErrors = map[string]string{
	// Nix points at the attribute set passed to derivationStrict; castor's
	// sets do not record where they were written.
	"noName": "position of the attribute set",
}

// TestErrors evaluates each attribute of errors.nix with castor eval and
// nix-instantiate --eval, with and without --show-trace: the reports must
// be byte-identical (and what does not fail must print the same).
func TestErrors(t *testing.T) {
	nix := newNixNS(t)
	t.Setenv("NIX_PATH", "")
	dir := testdata(t)
	var names []string
	if err := json.Unmarshal([]byte(nix.run(dir, "nix-instantiate", "--eval", "--json", "-E", "builtins.attrNames (import ./errors.nix)")), &names); err != nil {
		t.Fatal(err)
	}
	type report struct{ out, err string }
	expr := func(name string) string {
		return "let v = (import ./errors.nix)." + name + "; in v.drvPath or v"
	}
	// Nix first, two at a time (one process each).
	want := make(map[string]report)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan bool, 2)
	for _, name := range names {
		for _, trace := range []string{"", "--show-trace"} {
			wg.Add(1)
			sem <- true
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				args := []string{"--eval", "-E", expr(name)}
				if trace != "" {
					args = append(args, trace)
				}
				out, stderr, _ := nix.output(dir, "nix-instantiate", args...)
				mu.Lock()
				want[name+trace] = report{out, stderr}
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	c := newCastor()
	for _, name := range names {
		for _, trace := range []string{"", "--show-trace"} {
			args := []string{"-E", expr(name)}
			if trace != "" {
				args = append(args, trace)
			}
			out, stderr, err := c.run(t, dir, "eval", args...)
			w := want[name+trace]
			if out != w.out {
				t.Errorf("%s %s: castor printed %q, Nix %q", name, trace, out, w.out)
			}
			if (err == nil) != (w.err == "") {
				t.Errorf("%s %s: castor: %v %q; Nix: %q", name, trace, err, stderr, w.err)
				continue
			}
			if reason, ok := divergentErrors[name]; ok {
				first := func(s string) string { return strings.SplitN(s, "\n", 2)[0] }
				if first(stderr) != first(w.err) {
					t.Errorf("%s %s (compared up to %s):\ncastor: %s\nNix:    %s", name, trace, reason, first(stderr), first(w.err))
				}
				continue
			}
			if stderr != w.err {
				t.Errorf("%s %s:\ncastor:\n%s\nNix:\n%s", name, trace, stderr, w.err)
			}
		}
	}
}

// TestValues prints derivation values (their attributes, contexts,
// positions, equality, JSON and XML forms) with castor eval --strict and
// nix-instantiate --eval --strict, in read-only mode: the output and the
// warnings must be identical.
func TestValues(t *testing.T) {
	nix := newNixNS(t)
	t.Setenv("NIX_PATH", "")
	dir := testdata(t)
	for _, args := range [][]string{{"--strict", "values.nix"}, {"--strict", "--xml", "values.nix", "-A", "multi"}} {
		nixOut, nixErr, err := nix.output(dir, "nix-instantiate", append([]string{"--eval"}, args...)...)
		if err != nil {
			t.Fatalf("nix-instantiate: %v\n%s", err, nixErr)
		}
		out, errOut, err := newCastor().run(t, dir, "eval", args...)
		if err != nil {
			t.Fatalf("castor eval: %v\n%s", err, errOut)
		}
		if out != nixOut || errOut != nixErr {
			t.Errorf("%v: castor printed\n%s%s\nNix printed\n%s%s", args, out, errOut, nixOut, nixErr)
		}
	}
}

// TestInstantiateCommand runs castor instantiate and nix-instantiate with
// the same command lines (attribute paths, automatic arguments, values
// that are not derivations, nested sets and lists): stdout and stderr
// must be identical but for Nix's warning about GC roots.
func TestInstantiateCommand(t *testing.T) {
	nix := newNixNS(t)
	t.Setenv("NIX_PATH", "")
	dir := testdata(t)
	for _, args := range [][]string{
		{"corpus.nix", "-A", "a", "-A", "multi", "-A", "multiDev", "-A", "multi.lib"},
		{"corpus.nix", "-A", "deps.all.1"},
		{"-E", "(import ./corpus.nix).multi.all"},
		{"-E", "{ a = { recurseForDerivations = true; b = (import ./corpus.nix).a; c.d = (import ./corpus.nix).chain1; }; e = null; f = (import ./corpus.nix).a; \"g h\" = (import ./corpus.nix).chain2; }"},
		{"-E", "[ (import ./corpus.nix).chain2 [ (import ./corpus.nix).chain3 ] ]"},
		{"--arg", "x", "(import ./corpus.nix).chain1", "--argstr", "y", "z", "-E", "{ x, y, ... }: [ x ]"},
		{"-E", "{ x }: x"},
		{"-E", "1"},
		{"-E", "[ 1 ]"},
		{"-E", "{ a = 1; }"},
		{"corpus.nix", "-A", "nope"},
		{"-E", "{ type = \"derivation\"; }"},
		{"-E", "(import ./corpus.nix).a", "-E", "(import ./corpus.nix).chain1"},
	} {
		nixOut, nixErr, nixRunErr := nix.output(dir, "nix-instantiate", args...)
		out, errOut, err := newCastor().run(t, dir, "instantiate", args...)
		if out != nixOut || errOut != strings.Replace(nixErr, gcWarning, "", 1) || (err == nil) != (nixRunErr == nil) {
			t.Errorf("%q:\ncastor (%v):\n%s%s\nNix (%v):\n%s%s", args, err, out, errOut, nixRunErr, nixOut, nixErr)
		}
	}
}
