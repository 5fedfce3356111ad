package eval

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// The benchmark cases are shared with bench/eval/run.sh, which compares
// them with nix-instantiate.
func benchCase(b *testing.B, name string) {
	path, _ := filepath.Abs(filepath.Join("../../bench/eval/cases", name+".nix"))
	b.ReportAllocs()
	for b.Loop() {
		ev := New(context.Background(), Options{})
		e, err := ev.ParseFile(path)
		if err != nil {
			b.Fatal(err)
		}
		v, err := ev.Eval(e)
		if err == nil {
			err = ev.Print(io.Discard, v, PrintOptions{Strict: true})
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFib27(b *testing.B)    { benchCase(b, "fib") }
func BenchmarkListSort(b *testing.B) { benchCase(b, "list-sort") }
func BenchmarkAttrs(b *testing.B)    { benchCase(b, "attrs") }
func BenchmarkStrings(b *testing.B)  { benchCase(b, "strings") }
func BenchmarkFoldl(b *testing.B)    { benchCase(b, "foldl") }
func BenchmarkStartup(b *testing.B)  { benchCase(b, "startup") }

// BenchmarkDeepRecursion is 10^5-deep non-tail recursion.
func BenchmarkDeepRecursion(b *testing.B) {
	EnsureStack()
	b.ReportAllocs()
	for b.Loop() {
		ev := New(context.Background(), Options{})
		e, err := ev.ParseString("let f = n: if n == 0 then 0 else 1 + f (n - 1); in f 100000", "«string»", "/", Scope{})
		if err != nil {
			b.Fatal(err)
		}
		v, err := ev.Eval(e)
		if err != nil || !strings.HasPrefix(ev.String(v), "100000") {
			b.Fatal(err, ev.String(v))
		}
	}
}
