package realisecmd_test

import (
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

func TestReadStoreConfig(t *testing.T) {
	dir := t.TempDir()
	c, err := realisecmd.ReadStoreConfig(dir)
	if err != nil || c.Build.Builder != "" {
		t.Errorf("no file: %+v %v", c, err)
	}
	for content, want := range map[string]string{
		"[build]\nbuilder = \"microvm\"\n": "microvm",
		"[build]\nbuilder = \"sandbox\"\n": "sandbox",
		"# nothing\n":                      "",
	} {
		os.WriteFile(filepath.Join(dir, realisecmd.ConfigFile), []byte(content), 0o644)
		if c, err := realisecmd.ReadStoreConfig(dir); err != nil || c.Build.Builder != want {
			t.Errorf("%q: %+v %v", content, c, err)
		}
	}
	for content, wantErr := range map[string]string{
		"[build]\nbuilder = \"docker\"\n": `builder = "docker"`,
		"[build]\nbuildr = \"microvm\"\n": "unknown key build.buildr",
		"[build\n":                        "castor.toml",
	} {
		os.WriteFile(filepath.Join(dir, realisecmd.ConfigFile), []byte(content), 0o644)
		if _, err := realisecmd.ReadStoreConfig(dir); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: %v, want an error with %q", content, err, wantErr)
		}
	}
}

// TestBuilderChoice: the store's configured builder is used when
// --builder is not given (here micro-VMs, under QEMU: the builder sees
// the guest kernel's command line), the flag overrides it (the sandbox
// sees the host's), and an unknown builder is an error.
func TestBuilderChoice(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireBinary(t, "busybox")
	testenv.RequireBinary(t, "qemu-system-x86_64")
	nix := testenv.NewNix(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bb/bin"), 0o755)
	data, _ := os.ReadFile(sandbox.FindShell())
	os.WriteFile(filepath.Join(dir, "bb/bin/busybox"), data, 0o755)
	os.Symlink("busybox", filepath.Join(dir, "bb/bin/sh"))
	expr := filepath.Join(dir, "x.nix")
	os.WriteFile(expr, []byte(`derivation { name = "where"; system = "x86_64-linux"; builder = "${./bb}/bin/sh"; args = ["-c" "echo cmdline: $(cat /proc/cmdline); echo built > $out"]; }`), 0o644)
	drv := nix.Run("nix-instantiate", expr)
	stream, err := nix.Output(nil, "nix-store", append([]string{"--export"}, strings.Fields(nix.Run("nix-store", "-qR", drv))...)...)
	if err != nil {
		t.Fatal(err)
	}
	newStore := func(builder string) realisecmd.OpenFunc {
		st := realisecmd.Store{Blobs: memory.NewBlobService(), Directories: memory.NewDirectoryService(), PathInfos: pimemory.New()}
		st.Config.Build.Builder = builder
		open := func(*cobra.Command, bool) (realisecmd.Store, func() error, error) {
			return st, func() error { return nil }, nil
		}
		if _, _, err := run(t, realisecmd.NewImportExportCommand(open), stream); err != nil {
			t.Fatal(err)
		}
		return open
	}
	nix.Run("nix-store", "--realise", drv)
	want := nix.Run("nix-store", "-q", "--outputs", drv)

	out, logs, err := run(t, realisecmd.NewRealiseCommand(newStore("microvm")), nil, drv)
	if err != nil || strings.TrimSpace(out) != want {
		t.Fatalf("realise with the store's builder microvm: %q %v\n%s", out, err, logs)
	}
	if !strings.Contains(logs, "castor.skipmod=") {
		t.Errorf("the store's default builder (microvm) did not run the build; logs:\n%s", logs)
	}
	out, logs, err = run(t, realisecmd.NewRealiseCommand(newStore("microvm")), nil, "--builder", "sandbox", drv)
	if err != nil || strings.TrimSpace(out) != want {
		t.Fatalf("realise --builder sandbox: %q %v\n%s", out, err, logs)
	}
	if strings.Contains(logs, "castor.skipmod=") || !strings.Contains(logs, "cmdline:") {
		t.Errorf("--builder sandbox did not override the store's builder; logs:\n%s", logs)
	}
	if _, _, err := run(t, realisecmd.NewRealiseCommand(newStore("")), nil, "--builder", "docker", drv); err == nil || !strings.Contains(err.Error(), `--builder "docker"`) {
		t.Errorf("unknown builder: %v", err)
	}
	if _, _, err := run(t, realisecmd.NewRealiseCommand(newStore("")), nil, "--builder", "microvm", "--vm-memory", "lots", drv); err == nil || !strings.Contains(err.Error(), "--vm-memory") {
		t.Errorf("bad --vm-memory: %v", err)
	}
}
