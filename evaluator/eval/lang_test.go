package eval

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// expectedFailures are the Nix 2.8 language tests this evaluator does not
// pass yet, each with the reason. The test fails if one of them passes, so
// the list can only shrink.
var expectedFailures = map[string]string{}

// langEnv is the environment Nix's tests/lang.sh runs the tests in.
func langEnv(k string) (string, bool) {
	switch k {
	case "TEST_VAR":
		return "foo", true
	case "NIX_PATH":
		return "lang/dir3:lang/dir4", true
	}
	return os.LookupEnv(k)
}

type langFlags struct {
	search   []string
	attrPath string
	args     [][3]string // kind ("arg" or "argstr"), name, value
}

func parseLangFlags(t *testing.T, s string) langFlags {
	var f langFlags
	fields := strings.Fields(s)
	for i := 0; i < len(fields); i++ {
		switch fields[i] {
		case "-I":
			f.search = append(f.search, fields[i+1])
			i++
		case "-A":
			f.attrPath = fields[i+1]
			i++
		case "--arg", "--argstr":
			f.args = append(f.args, [3]string{fields[i][2:], fields[i+1], fields[i+2]})
			i += 2
		default:
			t.Fatalf("unknown flag %q", fields[i])
		}
	}
	return f
}

// runLang evaluates lang/<name>.nix as tests/lang.sh does and returns the
// printed result.
func runLang(t *testing.T, name string, xml bool) (string, error) {
	var flags langFlags
	if b, err := os.ReadFile("lang/" + name + ".flags"); err == nil {
		flags = parseLangFlags(t, string(b))
	}
	var trace bytes.Buffer
	ev := New(context.Background(), Options{
		SearchPath:  append(append([]string(nil), flags.search...), "lang/dir3", "lang/dir4"),
		LookupEnv:   langEnv,
		TraceOutput: &trace,
	})
	e, err := ev.ParseFile("lang/" + name + ".nix")
	if err != nil {
		return "", err
	}
	v, err := ev.Eval(e)
	if err != nil {
		return "", err
	}
	var args AutoArgs
	for _, a := range flags.args {
		if a[0] == "argstr" {
			args.Add(ev, a[1], Str(a[2]))
			continue
		}
		cwd, _ := os.Getwd()
		ae, err := ev.ParseString(a[2], "«string»", cwd, Scope{})
		if err != nil {
			return "", err
		}
		args.Add(ev, a[1], ev.Lazy(ae))
	}
	if flags.attrPath != "" {
		if v, err = ev.SelectAttrPath(v, flags.attrPath, &args); err != nil {
			return "", err
		}
	}
	if !args.Empty() {
		if v, err = ev.AutoCall(v, &args); err != nil {
			return "", err
		}
	}
	var out bytes.Buffer
	err = ev.Print(&out, v, PrintOptions{Strict: true, XML: xml})
	return out.String(), err
}

func TestLang(t *testing.T) {
	t.Chdir("../testdata")
	files, err := filepath.Glob("lang/*.nix")
	if err != nil || len(files) == 0 {
		t.Fatal("no language tests found")
	}
	sort.Strings(files)
	seen := map[string]bool{}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".nix")
		switch {
		case strings.HasPrefix(name, "parse-okay-"), strings.HasPrefix(name, "parse-fail-"):
			seen[name] = true
			t.Run(name, func(t *testing.T) {
				ev := New(context.Background(), Options{})
				src, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				cwd, _ := os.Getwd()
				_, err = ev.ParseString(string(src), "«stdin»", cwd, Scope{})
				if strings.HasPrefix(name, "parse-okay-") {
					checkOutcome(t, name, err == nil, err, "")
				} else {
					checkOutcome(t, name, err != nil, nil, "parsed, want a parse error")
				}
			})
		case strings.HasPrefix(name, "eval-fail-"):
			seen[name] = true
			t.Run(name, func(t *testing.T) {
				_, err := runLang(t, name, false)
				ok := err != nil
				var msg string
				if !ok {
					msg = "evaluation succeeded, want failure"
				}
				checkOutcome(t, name, ok, nil, msg)
			})
		case strings.HasPrefix(name, "eval-okay-"):
			for _, xml := range []bool{false, true} {
				expFile := "lang/" + name + ".exp"
				if xml {
					expFile += ".xml"
				}
				exp, err := os.ReadFile(expFile)
				if err != nil {
					continue
				}
				seen[name] = true
				t.Run(filepath.Base(expFile), func(t *testing.T) {
					got, err := runLang(t, name, xml)
					msg := ""
					if err == nil && got != string(exp) {
						msg = "output differs:\n got: " + got + "\nwant: " + string(exp)
					}
					checkOutcome(t, name, err == nil && msg == "", err, msg)
				})
			}
		}
	}
	for name := range expectedFailures {
		if !seen[name] {
			t.Errorf("expected failure %s names no test", name)
		}
	}
}

func checkOutcome(t *testing.T, name string, ok bool, err error, msg string) {
	t.Helper()
	reason, expected := expectedFailures[name]
	switch {
	case ok && expected:
		t.Errorf("%s passes now: remove it from expectedFailures (%s)", name, reason)
	case !ok && expected:
		t.Skipf("expected failure: %s", reason)
	case !ok:
		if err != nil {
			if e, isEval := err.(*Error); isEval {
				t.Fatalf("%s", e.Format(true))
			}
			t.Fatal(err)
		}
		t.Fatal(msg)
	}
}
