package eval

import (
	"strconv"
	"strings"

	"github.com/castor-nix/castor/evaluator/syntax"
)

// Lazy returns e as an unevaluated value (a thunk), as --arg values are.
func (ev *Evaluator) Lazy(e *Expr) Value {
	return thunkValue(&Thunk{code: e.c, env: ev.baseEnv})
}

// AutoArgs are the --arg/--argstr arguments of nix-instantiate.
type AutoArgs struct {
	attrs []Attr
}

// Add binds name to v (replacing an earlier binding).
func (a *AutoArgs) Add(ev *Evaluator, name string, v Value) {
	s := ev.intern(name)
	for i := range a.attrs {
		if a.attrs[i].Name == s {
			a.attrs[i].Val = v
			return
		}
	}
	a.attrs = append(a.attrs, Attr{Name: s, Val: v})
	sortAttrs(a.attrs)
}

// Empty reports whether there are no arguments.
func (a *AutoArgs) Empty() bool { return a == nil || len(a.attrs) == 0 }

// AutoCall is Nix's autoCallFunction: a function with a pattern is called
// with the arguments it accepts (all of them with ...); anything else is
// returned as it is.
func (ev *Evaluator) AutoCall(v Value, args *AutoArgs) (out Value, err error) {
	defer ev.recoverTo(&err)
	return ev.autoCall(v, args), nil
}

func (ev *Evaluator) autoCall(v Value, args *AutoArgs) Value {
	v = ev.force(v)
	if v.k == kAttrs {
		if f := lookupAttr(v.attrs(), symFunctor); f != nil {
			r := ev.call(ev.force(f.Val), v, syntax.NoPos)
			return ev.autoCall(r, args)
		}
	}
	if v.k != kLambda || !v.closure().lam.pattern {
		return v
	}
	lam := v.closure().lam
	var as []Attr
	if args != nil {
		if lam.ellipsis {
			as = append(as, args.attrs...)
		} else {
			for _, fm := range lam.formals {
				if a := lookupAttr(args.attrs, fm.name); a != nil {
					as = append(as, *a)
				} else if fm.def == nil {
					ev.missingAutoArg(fm)
				}
			}
		}
	} else {
		for _, fm := range lam.formals {
			if fm.def == nil {
				ev.missingAutoArg(fm)
			}
		}
	}
	sortAttrs(as)
	return ev.call(v, attrsValue(as), syntax.NoPos)
}

func (ev *Evaluator) missingAutoArg(fm formalCode) {
	// Nix 2.8's words, blank line and manual link included.
	ev.throw(ErrEval, fm.pos, "cannot evaluate a function that has an argument without a value ('%s')\n\n"+
		"Nix attempted to evaluate a function as a top level expression; in\n"+
		"this case it must have its arguments supplied either by default\n"+
		"values, or passed explicitly with '--arg' or '--argstr'. See\n"+
		"https://nixos.org/manual/nix/stable/#ss-functions.",
		ev.syms.name(fm.name))
}

// SelectAttrPath follows an attribute path such as "a.b.0.c" (numbers
// index lists) from v, auto-calling functions on the way, as -A does.
func (ev *Evaluator) SelectAttrPath(v Value, path string, args *AutoArgs) (out Value, err error) {
	defer ev.recoverTo(&err)
	for _, comp := range splitAttrPath(path) {
		v = ev.autoCall(v, args)
		v = ev.force(v)
		if n, err := strconv.Atoi(comp); err == nil {
			if v.k != kList {
				ev.throw(ErrType, syntax.NoPos, "the expression selected by the selection path '%s' should be a list but is %s", path, showType(v))
			}
			if n < 0 || n >= int(v.n) {
				ev.throw(ErrEval, syntax.NoPos, "list index %d in selection path '%s' is out of range", n, path)
			}
			v = v.list()[n]
			continue
		}
		if v.k != kAttrs {
			ev.throw(ErrType, syntax.NoPos, "the expression selected by the selection path '%s' should be a set but is %s", path, showType(v))
		}
		a := lookupAttr(v.attrs(), ev.intern(comp))
		if a == nil {
			ev.throw(ErrEval, syntax.NoPos, "attribute '%s' in selection path '%s' not found", comp, path)
		}
		v = a.Val
	}
	return ev.force(v), nil
}

// splitAttrPath splits an attribute path at dots, honouring double quotes
// ("a.\"b.c\"" is two components).
func splitAttrPath(s string) []string {
	var out []string
	var cur strings.Builder
	have := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '.':
			out = append(out, cur.String())
			cur.Reset()
			have = false
		case '"':
			have = true
			for i++; i < len(s) && s[i] != '"'; i++ {
				cur.WriteByte(s[i])
			}
		default:
			have = true
			cur.WriteByte(c)
		}
	}
	if have || cur.Len() > 0 || len(out) > 0 {
		out = append(out, cur.String())
	}
	return out
}

// ValueString returns the bytes of a string or path value.
func (v Value) String() string {
	switch v.k {
	case kString, kPath:
		return v.str()
	}
	return "<" + v.typeOf() + ">"
}

// Type returns the type name builtins.typeOf gives v ("thunk" if v was
// not forced).
func (v Value) Type() string { return v.typeOf() }
