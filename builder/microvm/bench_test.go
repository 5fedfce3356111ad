package microvm_test

import (
	"context"
	"io"
	"testing"

	"github.com/castor-nix/castor/builder"
	"github.com/castor-nix/castor/builder/sandbox"
	"github.com/castor-nix/castor/e2e/testenv"
)

// BenchmarkTrivialBuild runs a trivial build (echo to $out) and streams
// its output NAR, once per iteration, with the micro-VM executor and with
// the namespace sandbox: the difference is the micro-VM's per-build cost.
func BenchmarkTrivialBuild(b *testing.B) {
	run := func(b *testing.B, x builder.Executor) {
		ctx := context.Background()
		for i := 0; i < b.N; i++ {
			outs, err := x.Run(ctx, shBuild("echo hello > $out"), io.Discard)
			if err != nil {
				b.Fatal(err)
			}
			if err := outs.WriteNAR(ctx, 0, io.Discard); err != nil {
				b.Fatal(err)
			}
			outs.Close()
		}
	}
	b.Run("microvm", func(b *testing.B) {
		run(b, newEnv(b, nil).exec)
	})
	b.Run("sandbox", func(b *testing.B) {
		testenv.RequireFUSE(b)
		e := newEnv(b, nil)
		x, err := sandbox.New(sandbox.Options{Directories: e.dirs, Blobs: e.blobs, ScratchDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		run(b, x)
	})
}
