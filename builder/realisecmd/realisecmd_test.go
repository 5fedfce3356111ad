package realisecmd_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/castor-nix/castor/builder/realisecmd"
	"github.com/castor-nix/castor/builder/sandbox"
	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/store/castore/memory"
	pimemory "github.com/castor-nix/castor/store/pathinfo/memory"
)

// run runs one command over st, with stdin in, and returns stdout.
func run(t *testing.T, cmd *cobra.Command, in []byte, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetIn(bytes.NewReader(in))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// TestCommands goes the way a user does: nix-store --export | castor store
// import-export, castor realise, castor log, castor store export |
// nix-store --import.
func TestCommands(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireBinary(t, "busybox")
	nix := testenv.NewNix(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bb/bin"), 0o755)
	data, _ := os.ReadFile(sandbox.FindShell())
	os.WriteFile(filepath.Join(dir, "bb/bin/busybox"), data, 0o755)
	os.Symlink("busybox", filepath.Join(dir, "bb/bin/sh"))
	expr := filepath.Join(dir, "x.nix")
	os.WriteFile(expr, []byte(`let mk = name: s: derivation { inherit name; system = "x86_64-linux"; builder = "${./bb}/bin/sh"; args = ["-c" s]; }; in rec {
  a = mk "a" "echo building a; echo A > $out";
  b = mk "b" "echo building b; mkdir $out; cat ${a} > $out/a; ln -s ${a} $out/link";
}`), 0o644)
	drv := nix.Run("nix-instantiate", expr, "-A", "b")
	stream, err := nix.Output(nil, "nix-store", append([]string{"--export"}, strings.Fields(nix.Run("nix-store", "-qR", drv))...)...)
	if err != nil {
		t.Fatal(err)
	}

	st := realisecmd.Store{Blobs: memory.NewBlobService(), Directories: memory.NewDirectoryService(), PathInfos: pimemory.New(), LogDir: t.TempDir()}
	open := func(*cobra.Command, bool) (realisecmd.Store, func() error, error) {
		return st, func() error { return nil }, nil
	}

	out, _, err := run(t, realisecmd.NewImportExportCommand(open), stream)
	if err != nil || !strings.Contains(out, drv+"\n") {
		t.Fatalf("import-export: %v\n%s", err, out)
	}
	out, logs, err := run(t, realisecmd.NewRealiseCommand(open), nil, "-j", "2", drv)
	if err != nil {
		t.Fatalf("realise: %v\n%s", err, logs)
	}
	nix.Run("nix-store", "--realise", drv, "--option", "sandbox", "true")
	want := nix.Run("nix-store", "-q", "--outputs", drv)
	if strings.TrimSpace(out) != want {
		t.Errorf("realise printed %q, Nix's output is %q", out, want)
	}
	if !strings.Contains(logs, "a> building a\n") || !strings.Contains(logs, "b> building b\n") || !strings.Contains(logs, "[2 done, 0 running, 0 left]") {
		t.Errorf("logs:\n%s", logs)
	}
	for _, p := range []string{drv, want} {
		out, _, err = run(t, realisecmd.NewLogCommand(open), nil, p)
		if err != nil || out != "building b\n" {
			t.Errorf("log %s: %q %v", p, out, err)
		}
	}

	out, _, err = run(t, realisecmd.NewExportCommand(open), nil, want)
	if err != nil {
		t.Fatal(err)
	}
	nix2 := testenv.NewNix(t)
	// Its reference (a) must come along.
	aOut := nix.Run("nix-store", "-q", "--references", want)
	aExport, _, err := run(t, realisecmd.NewExportCommand(open), nil, aOut)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nix2.Output([]byte(aExport), "nix-store", "--import"); err != nil {
		t.Fatal(err)
	}
	if _, err := nix2.Output([]byte(out), "nix-store", "--import"); err != nil {
		t.Fatalf("nix-store --import of castor's export: %v", err)
	}
	if a, b := nix.Run("nix-store", "-q", "--hash", want), nix2.Run("nix-store", "-q", "--hash", want); a != b {
		t.Errorf("NAR hash: Nix built %s, castor's export imports as %s", a, b)
	}
	if d := nix2.Run("nix-store", "-q", "--deriver", want); d != drv {
		t.Errorf("deriver after import %s", d)
	}
}
