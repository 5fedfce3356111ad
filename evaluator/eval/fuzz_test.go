package eval

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// guard runs f and turns a panic that is not an evaluation *Error into a
// test failure.
func guard(t *testing.T, ev *Evaluator, f func() Value) {
	t.Helper()
	var err error
	func() {
		defer ev.recoverTo(&err)
		f()
	}()
	var e *Error
	if err != nil && (!errors.As(err, &e) || e.Kind == ErrInternal) {
		t.Fatalf("unexpected failure: %v", err)
	}
}

func FuzzFromJSON(f *testing.F) {
	for _, s := range []string{`{"a": [1, 2.5e3, "x\u00e9\ud83d\ude00", null, true, false], "b": {}}`, `[]`, `"\u0000"`, `-0`, `1e400`, `18446744073709551615`, `{"a":1,"a":2}`, `[1,]`, `"\ud800"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ev := New(context.Background(), Options{})
		guard(t, ev, func() Value {
			v := ev.fromJSON(s, 0)
			ev.forceDeep(v)
			var ctx ctxBuilder
			ev.appendJSON(nil, v, true, 0, &ctx)
			return v
		})
	})
}

func FuzzFromTOML(f *testing.F) {
	for _, s := range []string{"a = 1\n[b]\nc = \"x\"\n", "[[a]]\nb = 1\n[[a]]\n", "a = 1979-05-27", "a = nan\nb = -inf", "a.b.c = 'x'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ev := New(context.Background(), Options{})
		guard(t, ev, func() Value { return ev.fromTOML(s, 0) })
	})
}

// FuzzRegex checks that any pattern either is rejected as invalid or
// compiles and runs both match and split without panicking.
func FuzzRegex(f *testing.F) {
	for _, s := range []string{"(a|ab)(c|bcd)(d*)", "[[:alpha:]]+", "a**", "[]a-]", "^a$", "\\.", "x{2,3}", "(a*)*", "[a", "\\d", "é."} {
		f.Add(s, "abcd aé")
	}
	f.Fuzz(func(t *testing.T, re, s string) {
		ev := New(context.Background(), Options{})
		r, err := ev.compileRegex(re)
		if err != nil {
			return
		}
		r.matchFull(s)
		for _, m := range r.findAll(s) {
			if m[0] < 0 || m[1] > len(s) || m[0] > m[1] {
				t.Fatalf("bad match %v in %q", m, s)
			}
		}
	})
}

// FuzzEval evaluates arbitrary source text: whatever happens must be an
// evaluation error, never a Go panic (an internal error) or a crash.
// Inputs that could ask for unbounded time or memory (huge numbers,
// genList, long inputs) are skipped.
func FuzzEval(f *testing.F) {
	for _, s := range []string{
		"let x = 1; in x + 1", "rec { a = b; b = 1; }", "with { a = 1; }; a", "({ a, ... }@x: x) { a = 1; }",
		"builtins.sort (a: b: a < b) [ 3 1 2 ]", "\"${toString 1.5}\"", "builtins.tryEval (throw \"x\")",
		"builtins.match \"(a*)b\" \"aab\"", "builtins.fromJSON \"[1, {\\\"a\\\": null}]\"", "let f = x: f x; in f 1",
		"{ a.b = 1; a.c = 2; }", "builtins.toXML { a = x: x; }", "''\n  a ${\"b\"}\n''", "[ 1 ] ++ [ 2 ] == [ 1 2 ]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > 300 || strings.Contains(src, "genList") || strings.Contains(src, "replicate") || strings.Contains(src, "import") || strings.Contains(src, "readFile") || strings.Contains(src, "readDir") || strings.Contains(src, "<") {
			return
		}
		digits := 0
		for i := 0; i < len(src); i++ {
			if src[i] >= '0' && src[i] <= '9' {
				if digits++; digits > 4 {
					return
				}
			} else {
				digits = 0
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ev := New(ctx, Options{MaxDepth: 20000, TraceOutput: io.Discard})
		e, err := ev.ParseString(src, "«fuzz»", "/nonexistent", Scope{})
		if err == nil {
			var v Value
			if v, err = ev.Eval(e); err == nil {
				err = ev.Print(io.Discard, v, PrintOptions{Strict: true})
			}
		}
		if errors.Is(err, ErrInternal) {
			t.Fatalf("%q: %v", src, err)
		}
	})
}
