package derivation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	gonix "github.com/nix-community/go-nix/pkg/derivation"

	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/store/derivation"
)

var update = flag.Bool("update", false, "rewrite testdata/store and testdata/corpus.json from Nix 2.8")

// golden is where copies of the .drv files Nix wrote for corpus.nix live,
// laid out as a chroot store, so that the tests run without Nix too.
const golden = "testdata/store"

// instantiate has Nix 2.8 write corpus.nix's derivations into a throw-away
// store and returns attribute -> .drv path and the store's root.
func instantiate(t *testing.T) (map[string]string, string) {
	t.Helper()
	nix := testenv.NewNix(t)
	abs, err := filepath.Abs("testdata/corpus.nix")
	if err != nil {
		t.Fatal(err)
	}
	// --eval does not write .drv files (read-only mode): instantiate the
	// whole attribute set first, then ask for the mapping.
	nix.Run("nix-instantiate", abs)
	out := nix.Run("nix-instantiate", "--eval", "--strict", "--json", "-E",
		`builtins.mapAttrs (n: v: v.drvPath) (import `+abs+`)`)
	var attrs map[string]string
	if err := json.Unmarshal([]byte(out), &attrs); err != nil {
		t.Fatalf("nix-instantiate output %q: %v", out, err)
	}
	return attrs, nix.Root
}

// checkCorpus checks every .drv under root/nix/store: byte-exact round
// trip, its own path, and its output paths.
func checkCorpus(t *testing.T, root string, attrs map[string]string) {
	ctx := context.Background()
	entries, err := os.ReadDir(filepath.Join(root, "nix/store"))
	if err != nil {
		t.Fatal(err)
	}
	src := derivation.Dir(root)
	h := derivation.NewHasher(src)
	n := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".drv") {
			continue
		}
		n++
		drvPath := "/nix/store/" + e.Name()
		data, err := os.ReadFile(filepath.Join(root, drvPath))
		if err != nil {
			t.Fatal(err)
		}
		d, err := src.Derivation(ctx, drvPath)
		if err != nil {
			t.Errorf("%s: %v", drvPath, err)
			continue
		}
		if got := d.Bytes(); !bytes.Equal(got, data) {
			t.Errorf("%s: round trip differs:\nNix:    %s\ncastor: %s", drvPath, data, got)
		}
		if p, err := d.Path(); err != nil || p.Absolute() != drvPath {
			t.Errorf("%s: computed .drv path %s (%v)", drvPath, p.Absolute(), err)
		}
		if err := h.CheckOutputPaths(ctx, d); err != nil {
			t.Errorf("%s: %v", drvPath, err)
		}
		// Blank what derivationStrict fills in and fill it again.
		blank := d.Clone()
		for name, o := range blank.Outputs {
			o.Path = ""
			blank.Outputs[name] = o
			blank.Env[name] = ""
		}
		if err := h.FillOutputPaths(ctx, blank); err != nil {
			t.Errorf("%s: fill: %v", drvPath, err)
		} else if !bytes.Equal(blank.Bytes(), data) {
			t.Errorf("%s: filled-in derivation differs from Nix's:\n%s", drvPath, blank.Bytes())
		}
	}
	for attr, p := range attrs {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("attribute %s: %v", attr, err)
		}
	}
	if n < len(attrs) {
		t.Fatalf("found %d .drv files for %d attributes", n, len(attrs))
	}
	t.Logf("checked %d derivations", n)
}

// TestNixCorpus compares against Nix 2.8 itself.
func TestNixCorpus(t *testing.T) {
	attrs, root := instantiate(t)
	checkCorpus(t, root, attrs)
	if *update {
		os.RemoveAll(golden)
		if err := os.MkdirAll(filepath.Join(golden, "nix/store"), 0o755); err != nil {
			t.Fatal(err)
		}
		entries, _ := os.ReadDir(filepath.Join(root, "nix/store"))
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".drv") {
				data, err := os.ReadFile(filepath.Join(root, "nix/store", e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(golden, "nix/store", e.Name()), data, 0o644); err != nil {
					t.Fatal(err)
				}
				seed := filepath.Join("testdata/fuzz/FuzzParse", strings.TrimSuffix(e.Name(), ".drv"))
				os.MkdirAll(filepath.Dir(seed), 0o755)
				if err := os.WriteFile(seed, []byte("go test fuzz v1\n[]byte("+strconv.Quote(string(data))+")\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		js, _ := json.MarshalIndent(attrs, "", "  ")
		if err := os.WriteFile("testdata/corpus.json", append(js, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGoldenCorpus checks the copies of Nix's .drv files (no Nix needed).
func TestGoldenCorpus(t *testing.T) {
	js, err := os.ReadFile("testdata/corpus.json")
	if err != nil {
		t.Fatal(err)
	}
	var attrs map[string]string
	if err := json.Unmarshal(js, &attrs); err != nil {
		t.Fatal(err)
	}
	checkCorpus(t, golden, attrs)
}

func loadGolden(t *testing.T, attr string) (*derivation.Derivation, string) {
	t.Helper()
	js, err := os.ReadFile("testdata/corpus.json")
	if err != nil {
		t.Fatal(err)
	}
	var attrs map[string]string
	if err := json.Unmarshal(js, &attrs); err != nil {
		t.Fatal(err)
	}
	p := attrs[attr]
	d, err := derivation.Dir(golden).Derivation(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return d, p
}

func TestDecodedFields(t *testing.T) {
	d, _ := loadGolden(t, "escapes")
	want := []string{"-c", "echo \"quoted\" \\ backslash\ttab\nnewline\rcr > $out", ""}
	if !slices.Equal(d.Args, want) {
		t.Errorf("args = %q, want %q", d.Args, want)
	}
	if d.Env["we\"ird key"] != `value with "quotes"` || d.Env["unicode"] != "héllo wörld ✓" {
		t.Errorf("env = %q", d.Env)
	}
	if k, _ := d.Kind(); k != derivation.InputAddressed || d.IsFixedOutput() {
		t.Errorf("kind %v", k)
	}

	s, _ := loadGolden(t, "structured")
	attrs, ok, err := s.StructuredAttrs()
	if !ok || err != nil || attrs["name"] != "structured" || s.Name != "structured" {
		t.Errorf("structured attrs %v %v %v, name %q", attrs, ok, err, s.Name)
	}
	if names := s.OutputNames(); !slices.Equal(names, []string{"doc", "out"}) {
		t.Errorf("outputs %v", names)
	}

	f, _ := loadGolden(t, "recSha1")
	ca, err := f.Outputs["out"].ContentAddress()
	if err != nil || ca.String() != "fixed:r:sha1:0mdqa9w1p6cmli6976v4wi0sw9r4p5pr" && !strings.HasPrefix(ca.String(), "fixed:r:sha1:") {
		t.Errorf("content address %v %v", ca, err)
	}
	if !f.IsFixedOutput() {
		t.Error("recSha1 not fixed-output")
	}
	fe, _ := loadGolden(t, "fetch")
	if !fe.IsBuiltin() || fe.Builder != "builtin:fetchurl" {
		t.Errorf("fetch builder %q", fe.Builder)
	}
}

// TestMirrorsMerge pins the case where go-nix and Nix disagree: two input
// derivations with the same fixed output hash modulo.
func TestMirrorsMerge(t *testing.T) {
	d, _ := loadGolden(t, "usesMirrors")
	if len(d.InputDerivations) != 2 {
		t.Fatalf("want 2 input derivations, have %v", d.InputDerivations)
	}
	h := derivation.NewHasher(derivation.Dir(golden))
	if err := h.CheckOutputPaths(context.Background(), d); err != nil {
		t.Fatal(err)
	}
}

// TestGoNix records why go-nix's derivation package is not used: it
// keeps escapes in arguments, so a builder would get them verbatim.
func TestGoNix(t *testing.T) {
	d, p := loadGolden(t, "escapes")
	data, err := os.ReadFile(filepath.Join(golden, p))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gonix.ReadDerivation(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("go-nix cannot read it: %v", err)
	}
	if slices.Equal(g.Arguments, d.Args) {
		t.Skip("go-nix now decodes arguments like Nix; reconsider using it")
	}
	t.Logf("go-nix argument: %q; Nix passes the builder %q", g.Arguments[1], d.Args[1])
}

func TestRejects(t *testing.T) {
	d, p := loadGolden(t, "chain2")
	good, err := os.ReadFile(filepath.Join(golden, p))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := derivation.Parse(good); err != nil {
		t.Fatalf("golden: %v", err)
	}
	s := string(good)
	cases := map[string]string{
		"empty":           "",
		"prefix":          strings.Replace(s, "Derive(", "Derivation(", 1),
		"trailing":        s + "\n",
		"truncated":       s[:len(s)-2],
		"bad escape":      strings.Replace(s, `"-c"`, `"\-c"`, 1),
		"raw newline":     strings.Replace(s, `"-c"`, "\"-\nc\"", 1),
		"bad output path": strings.Replace(s, d.Outputs["out"].Path, "/nix/store/not-a-path", 1),
		"backslash raw":   strings.Replace(s, `"x86_64-linux"`, `"x86\\64"`, 1),
		"no outputs":      "Derive([]" + s[strings.Index(s, "],[")+1:],
		"unsorted srcs":   strings.Replace(s, `],[],"x86_64-linux"`, `],["/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-z","/nix/store/00000000000000000000000000000000-z"],"x86_64-linux"`, 1),
		"dup outputs":     strings.Replace(s, `Derive([`, `Derive([("out","","",""),`, 1),
		"fixed bad hash":  strings.Replace(s, `-chain2","",""`, `-chain2","sha256","abc"`, 1),
	}
	// An env entry out of order: swap two entries.
	cases["env order"] = strings.Replace(s, `("builder","/bin/sh"),("dev"`, `("dev"`, 1)
	cases["env order"] = strings.Replace(cases["env order"], `("name"`, `("builder","/bin/sh"),("name"`, 1)
	for name, in := range cases {
		if in == s {
			t.Errorf("%s: case did not change the input", name)
			continue
		}
		_, err := derivation.Parse([]byte(in))
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if !errors.Is(err, derivation.ErrInvalid) {
			t.Errorf("%s: error %v does not wrap ErrInvalid", name, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`Derive([("out","/nix/store/cs8lc35w38vi1iw587p6r8wiwklh7qms-simple","","")],[],[],"x86_64-linux","/bin/sh",["-c","echo \"q\" \\ \t\n"],[("name","simple"),("out","/nix/store/cs8lc35w38vi1iw587p6r8wiwklh7qms-simple")])`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := derivation.Parse(data)
		if err != nil {
			if !errors.Is(err, derivation.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if got := d.Bytes(); !bytes.Equal(got, data) {
			t.Fatalf("round trip:\nin:  %q\nout: %q", data, got)
		}
		if _, err := d.Path(); err != nil {
			t.Fatalf("valid derivation without a path: %v", err)
		}
	})
}
