package eval

import (
	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/castor-nix/castor/evaluator/syntax"
	"github.com/castor-nix/castor/store/nixpath"
)

// Builtins that Nix added after 2.8 and that need no store; nixpkgs uses
// them when they exist (builtins ? warn, …).
func init() {
	// Nix 2.9: a breakpoint for the debugger; without one, the identity.
	def1("break", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value { return ev.force(a) })
	// Nix 2.10: traced only with --trace-verbose, which castor lacks.
	def2("traceVerbose", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value { return ev.force(b) })
	// Nix 2.23: print a warning and return the second argument.
	def2("warn", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value {
		msg := ev.forceString(a, pos).str()
		ev.traceOut.Write([]byte("evaluation warning: " + msg + "\n"))
		return ev.force(b)
	})
	// Nix 2.19: convert a hash between encodings.
	def1("convertHash", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		args := ev.forceAttrs(a, pos)
		hashStr := ev.forceStringNoCtx(ev.getAttrFor(args, "convertHash", ev.intern("hash"), pos), pos)
		algo := ""
		if at := lookupAttr(args.attrs(), ev.intern("hashAlgo")); at != nil {
			algo = ev.forceStringNoCtx(at.Val, at.Pos)
		}
		format := ev.forceStringNoCtx(ev.getAttrFor(args, "convertHash", ev.intern("toHashFormat"), pos), pos)
		h, err := nixpath.ParseHash(hashStr, algo)
		if err != nil {
			ev.throw(ErrEval, pos, "invalid hash '%s' for 'builtins.convertHash': %v", hashStr, err)
		}
		var enc nixhash.Encoding
		switch format {
		case "base16":
			enc = nixhash.Base16
		case "nix32", "base32":
			enc = nixhash.NixBase32
		case "base64":
			enc = nixhash.Base64
		case "sri":
			enc = nixhash.SRI
		default:
			ev.throw(ErrEval, pos, "unknown hash format '%s', expect 'base16', 'base32', 'base64', or 'sri'", format)
		}
		return Str(h.Format(enc, false))
	})
}
