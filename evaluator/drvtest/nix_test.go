package drvtest

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/castor-nix/castor/builder/realisecmd"
	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/evaluator/cli"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
	pimemory "github.com/castor-nix/castor/store/pathinfo/memory"
	"github.com/castor-nix/castor/store/pathinfo/pathinfotest"
)

// nixNS runs Nix 2.8 with a throw-away /nix bound over the host's in a
// private mount namespace (testenv.NewNixMounted): a store that behaves
// as /nix/store does.
type nixNS struct {
	*testenv.Nix
	t testing.TB
}

func newNixNS(t testing.TB) *nixNS {
	t.Helper()
	testenv.RequireBinary(t, "nix-instantiate")
	return &nixNS{Nix: testenv.NewNixMounted(t), t: t}
}

// output runs a Nix command in dir and returns its stdout and stderr.
func (n *nixNS) output(dir string, name string, args ...string) (string, string, error) {
	cmd := n.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(cmd.Env, "NIX_PATH=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// run runs a Nix command that must succeed and returns its stdout.
func (n *nixNS) run(dir string, name string, args ...string) string {
	n.t.Helper()
	out, stderr, err := n.output(dir, name, args...)
	if err != nil {
		n.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return out
}

// realPath is where the namespace's /nix/store/… lives on the host.
func (n *nixNS) realPath(storePath string) string { return n.RealPath(storePath) }

type nixPathInfo = pathinfotest.NixPathInfo

// compareNARAndRefs checks castor's info against Nix's: NAR hash and
// size, and references.
func compareNARAndRefs(t *testing.T, info *pathinfo.PathInfo, n nixPathInfo) {
	t.Helper()
	h, err := nixpath.ParseHash(n.NarHash, "")
	if err != nil || !bytes.Equal(h.Digest(), info.NarSHA256[:]) || info.NarSize != n.NarSize {
		t.Errorf("%s: NAR %d %s, Nix %d %s", n.Path, info.NarSize, nixpath.FormatSHA256(info.NarSHA256), n.NarSize, n.NarHash)
	}
	var refs []string
	for _, r := range info.References {
		refs = append(refs, r.Absolute())
	}
	slices.Sort(n.References)
	if !slices.Equal(refs, n.References) {
		t.Errorf("%s: references %v, Nix %v", n.Path, refs, n.References)
	}
}

// pathInfos is `nix path-info --json` of paths (and their closures with
// recursive).
func (n *nixNS) pathInfos(recursive bool, paths ...string) []nixPathInfo {
	n.t.Helper()
	// --derivation: a .drv is itself, not the outputs to build.
	args := []string{"path-info", "--json", "--derivation"}
	if recursive {
		args = append(args, "-r")
	}
	var infos []nixPathInfo
	if err := json.Unmarshal([]byte(n.run("", "nix", append(args, paths...)...)), &infos); err != nil {
		n.t.Fatal(err)
	}
	return infos
}

// castor is a memory store the commands run against.
type castor struct {
	st realisecmd.Store
}

func newCastor() *castor {
	return &castor{st: realisecmd.Store{Blobs: memory.NewBlobService(), Directories: memory.NewDirectoryService(), PathInfos: pimemory.New()}}
}

func (c *castor) open(*cobra.Command, bool) (realisecmd.Store, func() error, error) {
	return c.st, func() error { return nil }, nil
}

// run runs a castor command (instantiate, build, eval) in dir and returns
// stdout, stderr and the error.
func (c *castor) run(t testing.TB, dir string, command string, args ...string) (string, string, error) {
	t.Helper()
	var cmd *cobra.Command
	switch command {
	case "instantiate":
		cmd = cli.NewInstantiateCommand(c.open)
	case "build":
		cmd = cli.NewBuildCommand(c.open)
	case "eval":
		cmd = cli.NewEvalCommand(c.open)
	default:
		t.Fatalf("unknown command %s", command)
	}
	if dir != "" {
		t.Chdir(dir)
	}
	var stdout, stderr bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(""))
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.ExecuteContext(context.Background())
	return stdout.String(), stderr.String(), err
}

func (c *castor) pathInfo(t testing.TB, p string) *pathinfo.PathInfo {
	t.Helper()
	sp, err := nixpath.ParseAbsolute(p)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.st.PathInfos.Get(context.Background(), sp.Digest)
	if err != nil {
		return nil
	}
	return info
}
