package difftest

import (
	"bufio"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/evaluator/eval"
)

var (
	flagN    = flag.Int("difftest.n", 0, "number of generated expressions (default 300, 60 with -short)")
	flagSeed = flag.Uint64("difftest.seed", 1, "first seed of the generated expressions")
	flagDep  = flag.Int("difftest.depth", 4, "maximum depth of generated expressions")
)

func newNix(t testing.TB) *Nix {
	bin := testenv.RequireBinary(t, "nix-instantiate")
	dir, _ := filepath.Abs("testdata")
	return &Nix{Bin: bin, Dir: dir}
}

type corpusEntry struct {
	line   int
	expr   string
	anyMsg bool // only the failure is compared, not the message
}

// readCorpus reads testdata/corpus.nix: one expression per line; blank
// lines and lines starting with # are skipped; a leading "!" means the
// expression must fail but the message may differ from Nix's.
func readCorpus(t *testing.T) []corpusEntry {
	f, err := os.Open("testdata/corpus.nix")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []corpusEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		start := n
		for strings.HasSuffix(l, " \\") && sc.Scan() {
			n++
			l = strings.TrimSuffix(l, " \\") + "\n" + sc.Text()
		}
		e := corpusEntry{line: start, expr: l}
		if strings.HasPrefix(l, "!") {
			e.anyMsg, e.expr = true, strings.TrimSpace(l[1:])
		}
		out = append(out, e)
	}
	return out
}

// TestCorpus compares every corpus expression's printed value (or error
// message) with Nix 2.8's.
func TestCorpus(t *testing.T) {
	nix := newNix(t)
	entries := readCorpus(t)
	exprs := make([]string, len(entries))
	for i, e := range entries {
		exprs[i] = e.expr
	}
	ctx := context.Background()
	want, err := nix.EvalAll(ctx, exprs)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		got := Castor(ctx, e.expr, nix.Dir)
		w := want[i]
		switch {
		case e.anyMsg:
			if got.Err == "" || w.Err == "" {
				t.Errorf("corpus.nix:%d: %s\n castor: %s\n    nix: %s\n(both must fail)", e.line, e.expr, got, w)
			}
		case got != w:
			t.Errorf("corpus.nix:%d: %s\n castor: %s\n    nix: %s", e.line, e.expr, got, w)
		}
	}
}

// compareGenerated evaluates generated expressions with both evaluators:
// printed values must be identical, and either both fail or neither.
func compareGenerated(t *testing.T, nix *Nix, seeds []uint64, depth int) {
	ctx := context.Background()
	exprs := make([]string, len(seeds))
	for i, s := range seeds {
		exprs[i] = NewGenerator(s).Expr(depth)
	}
	want, err := nix.EvalAll(ctx, exprs)
	if err != nil {
		t.Fatal(err)
	}
	fails := 0
	for i, e := range exprs {
		got := Castor(ctx, e, nix.Dir)
		w := want[i]
		if got.Out != w.Out || (got.Err == "") != (w.Err == "") {
			t.Errorf("seed %d: %s\n castor: %s\n    nix: %s", seeds[i], e, got, w)
			if fails++; fails > 20 {
				t.Fatal("too many differences")
			}
		}
	}
}

func TestGenerated(t *testing.T) {
	nix := newNix(t)
	n := *flagN
	if n == 0 {
		n = 300
		if testing.Short() {
			n = 60
		}
	}
	const batch = 500
	for start := 0; start < n; start += batch {
		var seeds []uint64
		for i := start; i < n && i < start+batch; i++ {
			seeds = append(seeds, *flagSeed+uint64(i))
		}
		compareGenerated(t, nix, seeds, *flagDep)
	}
}

// FuzzDifferential lets the fuzzer choose generator seeds.
func FuzzDifferential(f *testing.F) {
	f.Add(uint64(1))
	f.Add(uint64(42))
	f.Fuzz(func(t *testing.T, seed uint64) {
		compareGenerated(t, newNix(t), []uint64{seed}, 5)
	})
}

// TestGeneratorDeterministic guards the reproducibility of reported seeds.
func TestGeneratorDeterministic(t *testing.T) {
	for s := uint64(0); s < 20; s++ {
		if a, b := NewGenerator(s).Expr(4), NewGenerator(s).Expr(4); a != b {
			t.Fatalf("seed %d: %q != %q", s, a, b)
		}
	}
}

// TestErrorFormat compares complete error reports (message, position,
// source excerpt and --show-trace trace) with Nix's for the files in
// testdata/errors.
func TestErrorFormat(t *testing.T) {
	nix := newNix(t)
	files, _ := filepath.Glob("testdata/errors/*.nix")
	if len(files) == 0 {
		t.Fatal("no error cases")
	}
	for _, f := range files {
		abs, _ := filepath.Abs(f)
		for _, showTrace := range []bool{false, true} {
			args := []string{"--eval", "--strict", "--readonly-mode"}
			if showTrace {
				args = append(args, "--show-trace")
			}
			cmd := exec.Command(nix.Bin, append(args, abs)...)
			cmd.Env = append(os.Environ(), "NIX_REMOTE=dummy://")
			want, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("%s: nix succeeded", f)
			}
			got := castorError(t, abs, showTrace)
			if got != string(want) {
				t.Errorf("%s (show-trace %v):\ncastor:\n%s\nnix:\n%s", f, showTrace, got, want)
			}
		}
	}
}

func castorError(t *testing.T, path string, showTrace bool) string {
	return castorFileError(context.Background(), path, showTrace)
}

// TestOutputModes compares the lazy printer (<CODE> for what was not
// evaluated), --json and --xml with Nix's on expressions of the corpus
// kind.
func TestOutputModes(t *testing.T) {
	nix := newNix(t)
	ctx := context.Background()
	exprs := []string{
		`{ a = 1 + 1; b = [ 1 (1 + 1) ]; c = x: x; d = builtins.add; e = builtins.add 1; f = 1.0; g = "s"; h = ./x; i = null; }`,
		`let x = 1 + 1; in builtins.seq x { inherit x; y = x; z = [ x ]; }`,
		`let a = { x = 1; }; in [ a a ]`,
		`rec { a = 1; b = a; c = { d = b; }; }`,
		`{ a.b.c = 1; } // { a = 2; }`,
		`builtins.map (x: x) [ 1 2 ]`,
		`{ "a b" = 1; "$x" = 2; }`,
	}
	want, err := nix.EvalAllMode(ctx, exprs)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range exprs {
		if got := CastorMode(ctx, e, nix.Dir, eval.PrintOptions{}); got != want[i] {
			t.Errorf("lazy %s\n castor: %s\n    nix: %s", e, got, want[i])
		}
	}
	run := func(e string, args ...string) string {
		cmd := exec.Command(nix.Bin, append(append([]string{"--eval", "--readonly-mode", "--strict"}, args...), "-E", e)...)
		cmd.Dir = nix.Dir
		cmd.Env = append(os.Environ(), "NIX_REMOTE=dummy://")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", e, err)
		}
		return string(out)
	}
	// JSON ends without a newline, so one run per expression.
	for _, e := range exprs {
		if strings.Contains(e, "x: x") || strings.Contains(e, "builtins.add") {
			continue // functions have no JSON form
		}
		want := run(e, "--json")
		if got := CastorMode(ctx, e, nix.Dir, eval.PrintOptions{Strict: true, JSON: true}); got.Out != want {
			t.Errorf("json %s\n castor: %s\n    nix: %s", e, got, want)
		}
	}
	// XML spans lines: one run per expression, with and without locations.
	xmlExprs := append(exprs[1:], `{ f = { a, b ? 1, ... }@args: a; g = x: x; l = [ 1.5 true "x" ]; }`)
	for _, e := range xmlExprs {
		for _, loc := range []bool{true, false} {
			args := []string{"--xml"}
			if !loc {
				args = append(args, "--no-location")
			}
			want := run(e, args...)
			got := CastorMode(ctx, e, nix.Dir, eval.PrintOptions{Strict: true, XML: true, Location: loc})
			if got.Out+"\n" != want {
				t.Errorf("xml (locations %v) %s\ncastor:\n%s\nnix:\n%s", loc, e, got, want)
			}
		}
	}
}

// TestLangFailMessages checks that Nix's eval-fail and parse-fail language
// tests fail for the same reason in castor: the first line of the error
// must match (for syntax errors, without bison's "expecting" list).
func TestLangFailMessages(t *testing.T) {
	nix := newNix(t)
	dir, _ := filepath.Abs("../testdata")
	files, _ := filepath.Glob(filepath.Join(dir, "lang", "eval-fail-*.nix"))
	parseFails, _ := filepath.Glob(filepath.Join(dir, "lang", "parse-fail-*.nix"))
	if len(files) == 0 || len(parseFails) == 0 {
		t.Fatal("no eval-fail or parse-fail tests")
	}
	for _, f := range append(files, parseFails...) {
		cmd := exec.Command(nix.Bin, "--eval", "--strict", "--readonly-mode", f)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "NIX_REMOTE=dummy://", "NIX_PATH=lang/dir3:lang/dir4", "TEST_VAR=foo")
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("%s: nix succeeded", f)
		}
		want := firstErrorLine(string(out))
		got := firstErrorLine(castorFileError(context.Background(), f, false))
		if got != want {
			t.Errorf("%s:\n castor: %s\n    nix: %s", filepath.Base(f), got, want)
		}
	}
}
