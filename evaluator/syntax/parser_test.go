package syntax

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func parseString(t *testing.T, src string) (Node, error) {
	t.Helper()
	fs := NewFileSet()
	f := fs.AddFile("«string»", "", []byte(src))
	return Parse(f, Options{BaseDir: "/base", Home: "/home/u"})
}

// TestLangParse parses every file of Nix's language tests: all must parse
// except the parse-fail ones that fail in the parser proper (the others
// fail at variable resolution, checked in package eval).
func TestLangParse(t *testing.T) {
	files, _ := filepath.Glob("../testdata/lang/*.nix")
	if len(files) == 0 {
		t.Fatal("no test files")
	}
	compileFails := map[string]bool{
		"parse-fail-undef-var.nix": true, "parse-fail-regression-20060610.nix": true,
	}
	// Nix's lexer rejects this one while reading the file, before evaluation.
	lexFails := map[string]bool{"eval-fail-path-slash.nix": true}
	for _, path := range files {
		name := filepath.Base(path)
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		fs := NewFileSet()
		f := fs.AddFile(path, path, src)
		_, err = Parse(f, Options{BaseDir: filepath.Dir(path)})
		wantFail := strings.HasPrefix(name, "parse-fail-") && !compileFails[name] || lexFails[name]
		if wantFail && err == nil {
			t.Errorf("%s: parsed, want error", name)
		}
		if !wantFail && err != nil {
			t.Errorf("%s: %v at %s", name, err, fs.Position(err.(*Error).Pos))
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ src, msg string }{
		{"99999999999999999999", "invalid integer '99999999999999999999'"},
		{"1.0e400", "invalid float '1.0e400'"},
		{"{ a = 1; a = 2; }", "attribute 'a' already defined at (string):1:3"},
		{"./a/", "path has a trailing slash"},
		{"f {a}: a", "syntax error, unexpected '}'"},
		{"({b, a}@b: 1)", "duplicate formal function argument 'b'"},
		{"let ${x} = 1; in 2", "dynamic attributes not allowed in let"},
		{"{ inherit ${x}; }", "dynamic attributes not allowed in inherit"},
		{"a ? b ? c", "syntax error, unexpected '?'"},
		{"1 == 2 == 3", "syntax error, unexpected EQ"},
		{"\"abc", "syntax error, unexpected end of file"},
	} {
		_, err := parseString(t, c.src)
		if err == nil || !strings.HasPrefix(err.Error(), c.msg) {
			t.Errorf("%q: got %v, want %q", c.src, err, c.msg)
		}
	}
}
