package sandbox_test

import (
	"context"
	"io"
	"testing"
)

// BenchmarkTrivialBuild measures a whole sandboxed build that does nearly
// nothing: namespaces, FUSE mount, root layout, exec, teardown and the
// output's NAR.
func BenchmarkTrivialBuild(b *testing.B) {
	e := newEnv(b, nil)
	build := shBuild(`echo hello > $out`)
	for b.Loop() {
		outs, err := e.exec.Run(context.Background(), build, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		if err := outs.WriteNAR(context.Background(), 0, io.Discard); err != nil {
			b.Fatal(err)
		}
		outs.Close()
	}
}

// BenchmarkTrivialBuildNetwork is the same with the host's network (no
// network namespace), as fixed-output builds run.
func BenchmarkTrivialBuildNetwork(b *testing.B) {
	e := newEnv(b, nil)
	build := shBuild(`echo hello > $out`)
	build.Constraints.NetworkAccess = true
	for b.Loop() {
		outs, err := e.exec.Run(context.Background(), build, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		outs.Close()
	}
}
