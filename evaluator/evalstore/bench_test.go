package evalstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/castor-nix/castor/evaluator/eval"
	"github.com/castor-nix/castor/evaluator/evalio"
	"github.com/castor-nix/castor/evaluator/evalstore"
	"github.com/castor-nix/castor/store/compose"
)

// chainExpr is n derivations, each with a toFile source and depending on
// the one before: the cost of instantiation (hash modulo, ATerm, writing
// the .drv and the source) per derivation.
func chainExpr(n int) string {
	return fmt.Sprintf(`let
  mk = i: prev: derivation {
    name = "d${toString i}";
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-c" "echo ${toString i} > $out" ];
    inherit prev;
    src = builtins.toFile "s${toString i}" "contents ${toString i}\n";
  };
in (builtins.foldl' (acc: i: mk i acc) null (builtins.genList (i: i) %d)).drvPath`, n)
}

func benchInstantiate(b *testing.B, n int, store func(b *testing.B) evalio.Store) {
	eval.EnsureStack()
	for b.Loop() {
		b.StopTimer()
		st := store(b)
		b.StartTimer()
		ev := eval.New(context.Background(), eval.Options{Store: st})
		e, err := ev.ParseString(chainExpr(n), "«string»", "/", eval.Scope{})
		if err != nil {
			b.Fatal(err)
		}
		v, err := ev.Eval(e)
		if err != nil {
			b.Fatal(err)
		}
		if err := ev.ForceDeep(v); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/drv")
}

// BenchmarkInstantiate instantiates a chain of 1000 derivations without a
// store (paths computed only), into a memory store and into the local
// on-disk store (bbolt metadata, chunked blobs).
func BenchmarkInstantiate(b *testing.B) {
	const n = 1000
	b.Run("host", func(b *testing.B) {
		benchInstantiate(b, n, func(*testing.B) evalio.Store { return evalio.NewHost() })
	})
	b.Run("memory", func(b *testing.B) {
		benchInstantiate(b, n, func(*testing.B) evalio.Store { return newStore() })
	})
	b.Run("disk", func(b *testing.B) {
		benchInstantiate(b, n, func(b *testing.B) evalio.Store {
			svc, err := compose.Open(compose.Config{Store: "file://" + b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { svc.Close() })
			return &evalstore.Store{Blobs: svc.Blobs, Directories: svc.Directories, PathInfos: svc.PathInfos}
		})
	})
}
