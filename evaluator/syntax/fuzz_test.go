package syntax

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that the parser never panics or loops and that what it
// accepts prints (Show) without panicking; rejected input must come back
// as an *Error with a position inside the file.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../testdata/lang/*.nix")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{"", "''\n  a\n ''", "./a/${b}c", "~/x", "<a/b>", "x:x", "a.b or c", "{ a.b.c = 1; a.d = 2; }", "\"$${\"", "1.e5", "rec { inherit (a) b; }"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		fs := NewFileSet()
		file := fs.AddFile("«fuzz»", "", src)
		n, err := Parse(file, Options{BaseDir: "/base", Home: "/home"})
		if err != nil {
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if e.Pos < file.Base() || int(e.Pos) > int(file.Base())+len(src) {
				t.Fatalf("error position %d outside the file", e.Pos)
			}
			return
		}
		_ = Show(n)
	})
}
