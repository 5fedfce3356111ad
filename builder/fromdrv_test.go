package builder_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/castor-nix/castor/builder"
	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/store/derivation"
	"github.com/castor-nix/castor/store/nixpath"
)

// realiseSandboxed builds drvPath with Nix 2.8 and its sandbox on, /bin/sh
// being static busybox, and returns Nix's stdout and error.
func realiseSandboxed(nix *testenv.Nix, drvPath string, cores string) (string, error) {
	out, err := nix.Output(nil, "nix-store", "--realise", drvPath,
		"--option", "sandbox", "true",
		"--option", "sandbox-paths", "/bin/sh="+busybox(),
		"--option", "cores", cores)
	return strings.TrimSpace(string(out)), err
}

func busybox() string {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "/bin/busybox"
}

var shellName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseEnv0 parses `env -0` output, dropping what the shell adds.
func parseEnv0(b []byte) map[string]string {
	env := map[string]string{}
	for _, kv := range bytes.Split(bytes.TrimSuffix(b, []byte{0}), []byte{0}) {
		k, v, _ := strings.Cut(string(kv), "=")
		env[k] = v
	}
	delete(env, "SHLVL")
	return env
}

// TestEnvironmentAgainstNix builds derivations whose builders dump their
// environment and build directory with Nix 2.8 (sandbox on), and checks
// that FromDerivation gives the same environment and the same files, byte
// for byte.
func TestEnvironmentAgainstNix(t *testing.T) {
	testenv.RequireRoot(t) // Nix's sandbox
	testenv.RequireBinary(t, "busybox")
	nix := testenv.NewNix(t)
	t.Setenv("CASTOR_TEST_IMPURE", "impure value")
	os.Unsetenv("CASTOR_TEST_UNSET")
	ctx := context.Background()
	src := derivation.Dir(nix.Root)
	abs, _ := filepath.Abs("testdata/env.nix")

	for _, attr := range []string{"plain", "structured", "fixed"} {
		t.Run(attr, func(t *testing.T) {
			drvPath := nix.Run("nix-instantiate", abs, "-A", attr)
			drv, err := src.Derivation(ctx, drvPath)
			if err != nil {
				t.Fatal(err)
			}
			out, err := realiseSandboxed(nix, drvPath, "3")
			dumpDir := ""
			undo := func(b []byte) []byte { return b }
			switch {
			case attr == "fixed":
				// The wrong hash on purpose: find the output by its real
				// hash, which Nix prints and registers.
				m := regexp.MustCompile(`got:\s+(sha256-\S+)`).FindStringSubmatch(err.Error())
				if m == nil {
					t.Fatalf("expected a hash mismatch, got %v", err)
				}
				h, perr := nixpath.ParseHash(m[1], "")
				if perr != nil {
					t.Fatal(perr)
				}
				p, perr := nixpath.MakeFixedOutputPath(nixpath.Flat, h, drv.Name, nil, false)
				if perr != nil {
					t.Fatal(perr)
				}
				dumpDir = t.TempDir()
				// Nix rewrites the hash part of the path the builder saw
				// into that of the path it registers; undo that.
				undo = func(b []byte) []byte {
					want, _ := nixpath.ParseAbsolute(drv.Outputs["out"].Path)
					return bytes.ReplaceAll(b, []byte(p.HashPart()), []byte(want.HashPart()))
				}
				run(t, "tar", "-xf", nix.RealPath(p.Absolute()), "-C", dumpDir)
			case err != nil:
				t.Fatal(err)
			default:
				dumpDir = nix.RealPath(strings.Fields(out)[len(strings.Fields(out))-1])
				if attr == "structured" {
					dumpDir = nix.RealPath(drv.Outputs["out"].Path)
				}
			}
			envDump, err := os.ReadFile(filepath.Join(dumpDir, "env"))
			if err != nil {
				t.Fatal(err)
			}
			nixEnv := parseEnv0(undo(envDump))

			b, err := builder.FromDerivation(drv, nil, builder.Options{Cores: 3, LookupEnv: os.LookupEnv})
			if err != nil {
				t.Fatal(err)
			}
			ours := map[string]string{}
			for _, e := range b.Env {
				// The shell does not pass on names that are not
				// identifiers.
				if shellName.MatchString(e.Key) {
					ours[e.Key] = e.Value
				}
			}
			if attr == "structured" {
				// Nix 2.8 points these at its host-side build directory.
				for _, k := range []string{"NIX_ATTRS_JSON_FILE", "NIX_ATTRS_SH_FILE"} {
					if !strings.HasSuffix(nixEnv[k], filepath.Base(ours[k])) {
						t.Errorf("%s: Nix %q, castor %q", k, nixEnv[k], ours[k])
					}
					delete(nixEnv, k)
					delete(ours, k)
				}
			}
			for k, v := range nixEnv {
				if ov, ok := ours[k]; !ok || ov != v {
					t.Errorf("%s: Nix has %q, castor %q (present: %v)", k, v, ov, ok)
				}
			}
			for k, v := range ours {
				if _, ok := nixEnv[k]; !ok {
					t.Errorf("%s=%q: castor has it, Nix does not", k, v)
				}
			}

			files, err := os.ReadDir(filepath.Join(dumpDir, "files"))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range files {
				names = append(names, "build/"+f.Name())
				nixData, _ := os.ReadFile(filepath.Join(dumpDir, "files", f.Name()))
				i := slices.IndexFunc(b.AdditionalFiles, func(a builder.AdditionalFile) bool { return a.Path == "build/"+f.Name() })
				if i < 0 {
					t.Errorf("Nix wrote %s, castor does not", f.Name())
					continue
				}
				if !bytes.Equal(b.AdditionalFiles[i].Contents, nixData) {
					t.Errorf("%s differs:\nNix:    %q\ncastor: %q", f.Name(), nixData, b.AdditionalFiles[i].Contents)
				}
			}
			if len(names) != len(b.AdditionalFiles) {
				t.Errorf("Nix wrote %v; castor has %d additional files", names, len(b.AdditionalFiles))
			}
			if got := b.Constraints.NetworkAccess; got != (attr == "fixed") {
				t.Errorf("network access %v", got)
			}
		})
	}
}

func TestFromDerivationShape(t *testing.T) {
	d, err := derivation.Parse([]byte(`Derive([("dev","/nix/store/3397qmq3n19sjnh2wjg8avv536284bys-multi-bin","",""),("out","/nix/store/fbbr2jq7ri5g2ic7fd46dy37vgdyxmyc-multi","","")],[],[],"x86_64-linux","/bin/sh",["-c","x"],[("name","multi")])`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := builder.FromDerivation(d, nil, builder.Options{Cores: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"nix/store/3397qmq3n19sjnh2wjg8avv536284bys-multi-bin", "nix/store/fbbr2jq7ri5g2ic7fd46dy37vgdyxmyc-multi"}; !slices.Equal(b.Outputs, want) {
		t.Errorf("outputs %v", b.Outputs)
	}
	if !slices.Equal(b.Command, []string{"/bin/sh", "-c", "x"}) || b.WorkingDir != "build" || b.InputsDir != "nix/store" {
		t.Errorf("command %v, dir %s, inputs %s", b.Command, b.WorkingDir, b.InputsDir)
	}
	if !slices.Equal(b.RefscanNeedles, []string{"3397qmq3n19sjnh2wjg8avv536284bys", "fbbr2jq7ri5g2ic7fd46dy37vgdyxmyc"}) {
		t.Errorf("needles %v", b.RefscanNeedles)
	}
	if v, _ := b.Getenv("NIX_BUILD_CORES"); v != "1" {
		t.Errorf("cores %q", v)
	}
	if b.Constraints.NetworkAccess || !b.Constraints.ProvideBinSh {
		t.Errorf("constraints %+v", b.Constraints)
	}

	fetch, err := derivation.Parse([]byte(`Derive([("out","/nix/store/53ig02hv6412nx42f15vfw57i1l3d28i-fixed","sha256","2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")],[],[],"builtin","builtin:fetchurl",[],[("name","fixed")])`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := builder.FromDerivation(fetch, nil, builder.Options{}); err == nil {
		t.Error("built-in builder accepted")
	}
}
