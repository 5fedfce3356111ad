package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func runCmd(t *testing.T, cmd *cobra.Command, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.SetArgs(append([]string{}, args...))
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SilenceErrors = true
	cmd.SilenceUsage = true
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

func TestEvalCommand(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f.nix"), []byte("{ x ? 1, y }: { a = x + y; b.c = [ y ]; s = \"${toString y}\"; }\n"), 0o644)
	f := filepath.Join(dir, "f.nix")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-E", "1 + 1"}, "2\n"},
		{[]string{"-E", "{ a = 1 + 1; }"}, "{ a = <CODE>; }\n"},
		{[]string{"--strict", "-E", "{ a = 1 + 1; }"}, "{ a = 2; }\n"},
		{[]string{"--json", "--strict", "-E", "{ a = [ 1 \"x\" ]; }"}, "{\"a\":[1,\"x\"]}"},
		{[]string{"--xml", "--no-location", "-E", "1"}, "<?xml version='1.0' encoding='utf-8'?>\n<expr>\n  <int value=\"1\" />\n</expr>\n"},
		{[]string{"--strict", "--arg", "y", "2", f}, "{ a = 3; b = { c = [ 2 ]; }; s = \"2\"; }\n"},
		{[]string{"--strict", "--argstr", "y", "q", "-A", "s", f}, "\"q\"\n"},
		{[]string{"--strict", "--arg", "y", "5", "-A", "b.c", f}, "[ 5 ]\n"},
		{[]string{"--strict", "--arg", "y", "5", "-A", "b.c.0", f}, "5\n"},
		{[]string{"--parse", "-E", "a: a.b or 1"}, "(a: (a).b or (1))\n"},
	} {
		out, errOut, err := runCmd(t, NewEvalCommand(nil), "", c.args...)
		if err != nil {
			t.Errorf("%v: %v\n%s", c.args, err, errOut)
			continue
		}
		if out != c.want {
			t.Errorf("%v: got %q, want %q", c.args, out, c.want)
		}
	}
}

func TestEvalStdin(t *testing.T) {
	out, _, err := runCmd(t, NewEvalCommand(nil), "[ 1 2 ]", "--strict", "-")
	if err != nil || out != "[ 1 2 ]\n" {
		t.Fatalf("got %q, %v", out, err)
	}
}

// TestEvalErrors checks that bad input gives a Nix-style error on stderr and
// a non-zero exit status, never a Go panic trace.
func TestEvalErrors(t *testing.T) {
	for _, c := range []struct {
		expr, msg string
	}{
		{"1 +", "error: syntax error, unexpected end of file"},
		{"1 + \"a\"", "error: cannot add a string to an integer"},
		{"{ a = 1; }.b", "error: attribute 'b' missing"},
		{"let x = x; in x", "error: infinite recursion encountered"},
		{"let f = n: if n == 0 then 0 else 1 + f (n - 1); in f (-1)", "error: stack overflow (possible infinite recursion)"},
		{"99999999999999999999", "error: invalid integer '99999999999999999999'"},
		{"9223372036854775807 + 1", "error: integer overflow in adding 9223372036854775807 + 1"},
		{"1 / 0", "error: division by zero"},
		{"undefinedVar", "error: undefined variable 'undefinedVar'"},
		{"throw \"boom\"", "error: boom"},
		{"builtins.head []", "error: list index 0 is out of bounds"},
	} {
		out, errOut, err := runCmd(t, NewEvalCommand(nil), "", "--strict", "-E", c.expr)
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Code != 1 {
			t.Errorf("%s: err = %v, want exit status 1 (stdout %q)", c.expr, err, out)
		}
		if !strings.HasPrefix(errOut, c.msg) {
			t.Errorf("%s: stderr %q, want prefix %q", c.expr, errOut, c.msg)
		}
		if strings.Contains(errOut, "goroutine") || strings.Contains(errOut, "panic") {
			t.Errorf("%s: Go panic leaked: %s", c.expr, errOut)
		}
	}
}

func TestEvalErrorExcerpt(t *testing.T) {
	_, errOut, _ := runCmd(t, NewEvalCommand(nil), "", "-E", "let\n  x = 1;\nin x.a")
	want := `error: value is an integer while a set was expected

       at «string»:3:4:

            2|   x = 1;
            3| in x.a
             |    ^
`
	if errOut != want {
		t.Errorf("got\n%s\nwant\n%s", errOut, want)
	}
}

func TestRepl(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "lib.nix")
	os.WriteFile(lib, []byte("{ double = x: x * 2; name = \"lib\"; }"), 0o644)
	session := strings.Join([]string{
		"x = 20",
		"y = x + 1",
		"x = x * 2",
		"[ x y ]",
		":t y",
		":l " + lib,
		"double y",
		"{ a = 1; b = { c = 2; }; }",
		":p { a = 1; b = { c = 2; }; }",
		"let z = 1;",
		"in z + 1",
		"undefinedThing",
		"name",
		":q",
		"1",
	}, "\n")
	out, errOut, err := runCmd(t, NewReplCommand(), session)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"[ 40 21 ]",
		"an integer",
		"Added 2 variables.",
		"42",
		"{ a = 1; b = { ... }; }",
		"{ a = 1; b = { c = 2; }; }",
		"2",
		"\"lib\"",
		"",
	}, "\n")
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	if !strings.Contains(errOut, "undefined variable 'undefinedThing'") {
		t.Errorf("stderr: %s", errOut)
	}
}

// TestInstantiateArgs checks the parsing of instantiate's and build's
// command lines, global flags included.
func TestInstantiateArgs(t *testing.T) {
	root := &cobra.Command{Use: "castor"}
	var store string
	root.PersistentFlags().StringVar(&store, "store", "", "")
	cmd := &cobra.Command{Use: "build"}
	root.AddCommand(cmd)
	o, err := parseInstArgs(cmd, []string{"--store=memory://", "-A", "a.b", "--arg", "x", "1", "-I", "p=/q", "f.nix",
		"-j", "3", "--builder", "microvm", "--vm-cpus", "2", "--timeout", "1m", "-o", "res", "-K", "--sandbox-path", "/a", "--sandbox-path", "/b"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if store != "memory://" || o.attrPaths[0] != "a.b" || o.args[0].name != "x" || o.search[0] != "p=/q" || o.files[0] != "f.nix" ||
		o.realise.Jobs != 3 || o.realise.Builder != "microvm" || o.realise.VMCPUs != 2 || o.realise.Timeout.Minutes() != 1 ||
		o.outLink != "res" || !o.realise.KeepFailed || len(o.realise.SandboxPath) != 2 {
		t.Fatalf("parsed %+v (store %q)", o, store)
	}
	for _, bad := range [][]string{{"-j"}, {"-j", "x"}, {"--nope"}, {"--readonly-mode"}, {"--timeout", "soon"}} {
		if _, err := parseInstArgs(cmd, bad, true); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if o, err := parseInstArgs(cmd, []string{"--readonly-mode", "-E", "x"}, false); err != nil || !o.readOnly || !o.exprMode {
		t.Errorf("instantiate --readonly-mode: %+v, %v", o, err)
	}
	if _, err := parseInstArgs(cmd, []string{"-o", "x"}, false); err == nil {
		t.Error("instantiate accepted -o")
	}
}
