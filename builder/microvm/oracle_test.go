package microvm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"github.com/castor-nix/castor/builder/microvm"
	"github.com/castor-nix/castor/builder/realise"
	"github.com/castor-nix/castor/builder/sandbox"
	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/store/nixpath"
)

type nixPathInfo struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"`
	NarSize    uint64   `json:"narSize"`
	References []string `json:"references"`
	Deriver    string   `json:"deriver"`
	CA         string   `json:"ca"`
}

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
	var nixInfos []nixPathInfo
	if err := json.Unmarshal([]byte(js), &nixInfos); err != nil {
		t.Fatal(err)
	}
	if len(nixInfos) != len(outPaths) {
		t.Fatalf("Nix knows %d of the %d outputs castor built", len(nixInfos), len(outPaths))
	}
	for _, n := range nixInfos {
		sp, err := nixpath.ParseAbsolute(n.Path)
		if err != nil {
			t.Fatal(err)
		}
		info, err := vmStore.infos.Get(ctx, sp.Digest)
		if err != nil {
			t.Errorf("%s: not registered: %v", n.Path, err)
			continue
		}
		if h, err := nixpath.ParseHash(n.NarHash, ""); err != nil || !bytes.Equal(h.Digest(), info.NarSHA256[:]) {
			t.Errorf("%s: NAR hash micro-VM %s, Nix %s (%v)", n.Path, nixpath.FormatSHA256(info.NarSHA256), n.NarHash, err)
		}
		if info.NarSize != n.NarSize {
			t.Errorf("%s: NAR size micro-VM %d, Nix %d", n.Path, info.NarSize, n.NarSize)
		}
		var refs []string
		for _, r := range info.References {
			refs = append(refs, r.Absolute())
		}
		slices.Sort(n.References)
		if !slices.Equal(refs, n.References) && !(len(refs) == 0 && len(n.References) == 0) {
			t.Errorf("%s: references micro-VM %v, Nix %v", n.Path, refs, n.References)
		}
		deriver := ""
		if info.Deriver != nil {
			deriver = info.Deriver.Absolute()
		}
		if deriver != n.Deriver {
			t.Errorf("%s: deriver micro-VM %s, Nix %s", n.Path, deriver, n.Deriver)
		}
		ca := ""
		if info.CA != nil {
			ca = info.CA.String()
		}
		if ca != n.CA {
			t.Errorf("%s: content address micro-VM %q, Nix %q", n.Path, ca, n.CA)
		}
	}
	t.Logf("%d outputs of %d derivations (%d realised, fetches included) equal to Nix 2.8's", len(nixInfos), len(results), builds)

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
