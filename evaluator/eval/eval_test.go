package eval

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"unsafe"
)

func evalString(t *testing.T, ev *Evaluator, src string) (string, error) {
	t.Helper()
	e, err := ev.ParseString(src, "«string»", "/", Scope{})
	if err != nil {
		return "", err
	}
	v, err := ev.Eval(e)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	err = ev.Print(&b, v, PrintOptions{Strict: true})
	return strings.TrimSuffix(b.String(), "\n"), err
}

func mustEval(t *testing.T, src, want string) {
	t.Helper()
	got, err := evalString(t, New(context.Background(), Options{}), src)
	if err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	if got != want {
		t.Fatalf("%s:\n got %s\nwant %s", src, got, want)
	}
}

// TestContextPropagation checks that string operations carry the contexts
// of their inputs (the store issues rely on it).
func TestContextPropagation(t *testing.T) {
	const p = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x"
	const d = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-y.drv"
	pre := `let s = builtins.appendContext "S" { "` + p + `" = { path = true; }; };
	            o = builtins.appendContext "O" { "` + d + `" = { outputs = [ "out" "dev" ]; allOutputs = true; }; };
	            ctx = x: builtins.attrNames (builtins.getContext x); in `
	for _, c := range []struct{ expr, want string }{
		{`ctx "${s}-${o}"`, `[ "` + p + `" "` + d + `" ]`},
		{`ctx (s + o)`, `[ "` + p + `" "` + d + `" ]`},
		{`ctx (builtins.substring 0 1 (s + o))`, `[ "` + p + `" "` + d + `" ]`},
		{`ctx (builtins.concatStringsSep o [ "a" s ])`, `[ "` + p + `" "` + d + `" ]`},
		{`ctx (builtins.replaceStrings [ "S" ] [ o ] s)`, `[ "` + p + `" "` + d + `" ]`},
		{`ctx (toString [ s o ])`, `[ "` + p + `" "` + d + `" ]`},
		{`ctx (builtins.toJSON { a = s; b = [ o ]; })`, `[ "` + p + `" "` + d + `" ]`},
		{`ctx (builtins.toXML { a = s; })`, `[ "` + p + `" ]`},
		{`ctx (builtins.baseNameOf s)`, `[ "` + p + `" ]`},
		{`ctx (builtins.dirOf s)`, `[ "` + p + `" ]`},
		{`ctx "${{ outPath = s; }}"`, `[ "` + p + `" ]`},
		{`ctx "${{ __toString = self: o; }}"`, `[ "` + d + `" ]`},
		{`ctx (builtins.unsafeDiscardStringContext (s + o))`, `[ ]`},
		{`builtins.getContext o`, `{ "` + d + `" = { allOutputs = true; outputs = [ "dev" "out" ]; }; }`},
		{`builtins.getContext (builtins.unsafeDiscardOutputDependency o)`, `{ "` + d + `" = { outputs = [ "dev" "out" ]; path = true; }; }`},
		{`builtins.hasContext (s + "x")`, `true`},
	} {
		mustEval(t, pre+c.expr, c.want)
	}
}

// TestThunkRetry checks that a thunk whose evaluation failed is not left
// blackholed: forcing it again fails again with the same error instead of
// reporting infinite recursion.
func TestThunkRetry(t *testing.T) {
	mustEval(t, `let x = throw "no"; in [ (builtins.tryEval x).success (builtins.tryEval x).success ]`, `[ false false ]`)
	_, err := evalString(t, New(context.Background(), Options{}), `let x = throw "no"; y = builtins.tryEval x; in builtins.seq y x`)
	if !errors.Is(err, ErrThrown) {
		t.Fatalf("got %v, want the thrown error", err)
	}
}

func TestDeepRecursion(t *testing.T) {
	EnsureStack()
	mustEval(t, `let f = n: if n == 0 then 0 else 1 + f (n - 1); in f 100000`, `100000`)
	mustEval(t, `builtins.foldl' (a: b: a + b) 0 (builtins.genList (x: x) 1000000)`, `499999500000`)
	// nixpkgs-style foldr (non-tail, curried) over 10^5 elements, and a
	// lazy left fold that builds a 10^5-deep chain of thunks.
	mustEval(t, `let foldr = f: z: l: if l == [] then z else f (builtins.head l) (foldr f z (builtins.tail l));
		in foldr (a: b: a + b) 0 (builtins.genList (x: x) 100000)`, `4999950000`)
	mustEval(t, `let foldl = op: nul: list: let len = builtins.length list;
		  go = n: if n == -1 then nul else op (go (n - 1)) (builtins.elemAt list n); in go (len - 1);
		in foldl (a: b: a + b) 0 (builtins.genList (x: x) 100000)`, `4999950000`)
	ev := New(context.Background(), Options{MaxDepth: 5000})
	_, err := evalString(t, ev, `let f = n: 1 + f (n + 1); in f 0`)
	if !errors.Is(err, ErrStackOverflow) {
		t.Fatalf("got %v, want stack overflow", err)
	}
	// The evaluator is still usable afterwards.
	if got, err := evalString(t, ev, `1 + 1`); err != nil || got != "2" {
		t.Fatalf("after overflow: %q %v", got, err)
	}
}

func TestCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ev := New(ctx, Options{})
	_, err := evalString(t, ev, `let f = n: if n == 0 then 0 else f (n - 1); in f 1000000`)
	if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want cancellation", err)
	}
}

// TestInternalErrorRecovered checks that a Go runtime panic inside the
// evaluator becomes an internal error with a position, not a crash.
func TestInternalErrorRecovered(t *testing.T) {
	var logs bytes.Buffer
	ev := New(context.Background(), Options{})
	ev.log = newTestLogger(&logs)
	e, err := ev.ParseString("let f = x: x; in f 1", "«string»", "/", Scope{})
	if err != nil {
		t.Fatal(err)
	}
	msg := "while testing"
	ev.frames = append(ev.frames, frame{kind: frMsg, pos: e.file.Pos(17), p: unsafe.Pointer(&msg)})
	func() {
		defer ev.recoverTo(&err)
		zero := len(msg) - len(msg)
		_ = 1 / zero // a Go runtime panic
	}()
	var ee *Error
	if !errors.As(err, &ee) || !errors.Is(err, ErrInternal) {
		t.Fatalf("got %v", err)
	}
	if got := ee.Format(false); !strings.HasPrefix(got, "error: internal error: runtime error: integer divide by zero") || !strings.Contains(got, "«string»:1:18") {
		t.Fatalf("report:\n%s", got)
	}
	if len(ev.frames) != 0 {
		t.Fatal("frames not unwound")
	}
}

func TestReplScope(t *testing.T) {
	ev := New(context.Background(), Options{})
	var sc Scope
	e, _ := ev.ParseString("1", "«string»", "/", sc)
	sc = sc.With("x", ev.Lazy(e))
	e, _ = ev.ParseString("x + 1", "«string»", "/", sc)
	sc2 := sc.With("x", ev.Lazy(e)) // refers to the previous x
	e, err := ev.ParseString("[ x ]", "«string»", "/", sc2)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := ev.Eval(e)
	if s := ev.ReplString(v, 5); s != "[ 2 ]" {
		t.Fatalf("got %s", s)
	}
	// The older scope is unchanged.
	e, _ = ev.ParseString("x", "«string»", "/", sc)
	v, _ = ev.Eval(e)
	if s := ev.ReplString(v, 5); s != "1" {
		t.Fatalf("old scope: %s", s)
	}
}

func newTestLogger(w *bytes.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// TestDeepValues checks the depth limit in the Go helpers that walk values:
// an infinitely nested value fails cleanly in deepSeq, printing, ==,
// toJSON and toString.
func TestDeepValues(t *testing.T) {
	for _, e := range []string{
		`let f = n: [ (f (n + 1)) ]; in builtins.deepSeq (f 0) 1`,
		`let f = n: { a = f (n + 1); }; in f 0`,
		`let f = n: [ (f (n + 1)) ]; in f 0 == f 0`,
		`let f = n: [ (f (n + 1)) ]; in f 0 < f 0`,
		`let f = n: [ (f (n + 1)) ]; in builtins.toJSON (f 0)`,
		`let f = n: [ (f (n + 1)) ]; in toString (f 0)`,
		`let f = n: [ (f (n + 1)) ]; in builtins.toXML (f 0)`,
	} {
		ev := New(context.Background(), Options{MaxDepth: 20000})
		_, err := evalString(t, ev, e)
		if !errors.Is(err, ErrStackOverflow) {
			t.Errorf("%s: got %v, want stack overflow", e, err)
		}
	}
	// A deep but finite value is fine.
	mustEval(t, `builtins.stringLength (builtins.toJSON (builtins.foldl' (acc: x: [ acc ]) [ ] (builtins.genList (x: x) 10000)))`, `20002`)
}

// TestModernBuiltins covers builtins added after Nix 2.8 (checked against
// `nix hash to-base32`/`to-sri` of Nix 2.8 for convertHash).
func TestModernBuiltins(t *testing.T) {
	mustEval(t, `builtins.convertHash { hash = "sha256-LCa0a2j/xo/5m0U8HTBBNBNCLXBkg7+g+YpeiGJm564="; toHashFormat = "nix32"; }`, `"1bp7cri8hplaz6hbz0v4f0nl44rl84q1sg25kgwqzipzd1mv89ic"`)
	mustEval(t, `builtins.convertHash { hash = "1bp7cri8hplaz6hbz0v4f0nl44rl84q1sg25kgwqzipzd1mv89ic"; hashAlgo = "sha256"; toHashFormat = "base16"; }`, `"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"`)
	mustEval(t, `[ (builtins.break 1) (builtins.traceVerbose "x" 2) ]`, `[ 1 2 ]`)
	var warn bytes.Buffer
	ev := New(context.Background(), Options{TraceOutput: &warn})
	if got, err := evalString(t, ev, `builtins.warn "careful" 3`); err != nil || got != "3" || warn.String() != "evaluation warning: careful\n" {
		t.Fatalf("warn: %q %v %q", got, err, warn.String())
	}
}
