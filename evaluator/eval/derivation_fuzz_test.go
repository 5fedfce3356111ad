package eval

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/castor-nix/castor/evaluator/evalio"
	"github.com/castor-nix/castor/store/derivation"
)

// FuzzDerivation gives derivationStrict arbitrary extra attributes (a Nix
// expression for a set). Whatever happens must be an evaluation error,
// never an internal one; a derivation that is made must be one
// store/derivation reads back byte for byte, with the path the store
// computed for it and the output paths its Hasher computes.
func FuzzDerivation(f *testing.F) {
	for _, s := range []string{
		`{ }`, `{ outputs = [ "out" "dev" ]; x = [ 1 null true 2.5 ]; }`, `{ outputs = "a  b"; }`,
		`{ outputHash = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="; outputHashMode = "recursive"; }`,
		`{ outputHash = ""; outputHashAlgo = "md5"; }`, `{ __structuredAttrs = true; a.b = [ { } "\n" ]; }`,
		`{ __ignoreNulls = true; n = null; args = [ "a\"b" ]; }`, `{ d = builtins.toFile "t" "x"; e = "${builtins.toFile "u" "y"}/z"; }`,
		`{ dep = derivation { name = "d"; system = "s"; builder = "b"; outputs = [ "out" "lib" ]; }; }`,
		`{ dep = (derivation { name = "d"; system = "s"; builder = "b"; }).drvPath; }`, `{ name = "é"; }`, `{ "a b" = "\t"; }`,
		`{ p = builtins.placeholder "out"; q = builtins.appendContext "" { }; }`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, attrs string) {
		if len(attrs) > 300 || strings.ContainsAny(attrs, "<") || strings.Contains(attrs, "genList") || strings.Contains(attrs, "import") ||
			strings.Contains(attrs, "read") || strings.Contains(attrs, "path") || strings.Contains(attrs, "filterSource") {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		host := evalio.NewHost()
		ev := New(ctx, Options{Store: host, MaxDepth: 20000, TraceOutput: io.Discard})
		e, err := ev.ParseString(`derivationStrict ({ name = "x"; system = "s"; builder = "b"; } // (`+attrs+"\n))", "«fuzz»", "/nonexistent", Scope{})
		if err != nil {
			return
		}
		v, err := ev.Eval(e)
		if err == nil {
			err = ev.ForceDeep(v)
		}
		if errors.Is(err, ErrInternal) {
			t.Fatalf("%q: %v", attrs, err)
		}
		if err != nil {
			return
		}
		a := lookupAttr(v.attrs(), symDrvPath)
		drvPath := a.Val.str()
		b, err := host.ReadFile(ctx, drvPath)
		if err != nil {
			t.Fatalf("%s not readable: %v", drvPath, err)
		}
		d, err := derivation.Load(drvPath, b)
		if err != nil {
			t.Fatalf("%q: the .drv does not parse: %v\n%s", attrs, err, b)
		}
		if !bytes.Equal(d.Bytes(), b) {
			t.Fatalf("%q: the .drv does not round-trip:\n%s\n%s", attrs, b, d.Bytes())
		}
		if p, err := d.Path(); err != nil || p.Absolute() != drvPath {
			t.Fatalf("%q: .drv at %s, its path is %v (%v)", attrs, drvPath, p, err)
		}
		if err := ev.drvHasher().CheckOutputPaths(ctx, d); err != nil {
			t.Fatalf("%q: %v", attrs, err)
		}
	})
}
