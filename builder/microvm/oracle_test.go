package microvm_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/castor-nix/castor/builder/microvm"
	"github.com/castor-nix/castor/builder/realise"
	"github.com/castor-nix/castor/builder/sandbox"
	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo/pathinfotest"
)

// TestOracleCorpus realises builder/realise's reproducible corpus with
// the micro-VM executor under QEMU (two builds at a time, each in its own
// VM), with the namespace sandbox, and with Nix 2.8 (sandbox on), and
// compares every output: the micro-VM's NAR hash and size, references,
// deriver and content address against Nix's, and its NAR hash against
// the sandbox's.
func TestOracleCorpus(t *testing.T) {
	img := agentImage(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	c := newCorpus(t, "../realise/testdata", "corpus.nix")
	ctx := context.Background()

	vmStore := c.importInto(t)
	x, err := microvm.New(microvm.Options{Directories: vmStore.dirs, Blobs: vmStore.blobs, Image: img, MemoryMiB: 512, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	results, err := realise.New(vmStore.st, realise.Options{Executor: x, Jobs: 2, Output: &lockedWriter{t: t}}).Realise(ctx, c.drvs())
	if err != nil {
		t.Fatal(err)
	}
	var outPaths []string
	builds := 0
	for _, res := range results {
		if res.Built {
			builds++
		}
		for _, p := range res.Outputs {
			outPaths = append(outPaths, p.Absolute())
		}
	}
	slices.Sort(outPaths)
	checkNoLeftovers(t, tmp)

	// Nix 2.8, sandboxed, /bin/sh a static busybox.
	args := append([]string{"--realise"}, c.drvs()...)
	args = append(args, "--option", "sandbox", "true", "--option", "sandbox-paths",
		"/bin/sh="+sandbox.FindShell()+" "+filepath.Join(c.dir, "served"))
	if _, err := c.nix.Output(nil, "nix-store", args...); err != nil {
		t.Fatalf("Nix: %v", err)
	}
	js := c.nix.Run("nix", append([]string{"path-info", "--json"}, outPaths...)...)
	compared := pathinfotest.CompareNix(t, vmStore.infos, js, len(outPaths))
	t.Logf("%d outputs of %d derivations (%d realised, fetches included) equal to Nix 2.8's", compared, len(results), builds)

	// The namespace sandbox, over the same derivations (it needs root and
	// /dev/fuse, which CI has).
	t.Run("sandbox", func(t *testing.T) {
		testenv.RequireFUSE(t)
		sbStore := c.importInto(t)
		sx, err := sandbox.New(sandbox.Options{Directories: sbStore.dirs, Blobs: sbStore.blobs, ScratchDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := realise.New(sbStore.st, realise.Options{Executor: sx, Jobs: 2}).Realise(ctx, c.drvs()); err != nil {
			t.Fatal(err)
		}
		for _, p := range outPaths {
			sp, _ := nixpath.ParseAbsolute(p)
			vi, err1 := vmStore.infos.Get(ctx, sp.Digest)
			si, err2 := sbStore.infos.Get(ctx, sp.Digest)
			if err1 != nil || err2 != nil {
				t.Errorf("%s: micro-VM %v, sandbox %v", p, err1, err2)
				continue
			}
			if vi.NarSHA256 != si.NarSHA256 || vi.NarSize != si.NarSize {
				t.Errorf("%s: micro-VM NAR %s (%d bytes), sandbox %s (%d bytes)", p,
					nixpath.FormatSHA256(vi.NarSHA256), vi.NarSize, nixpath.FormatSHA256(si.NarSHA256), si.NarSize)
			}
		}
		t.Logf("the same %d outputs from the namespace sandbox", len(outPaths))
	})
}
