package eval

import (
	"regexp"
	"strconv"
	"unsafe"

	"github.com/castor-nix/castor/evaluator/syntax"
)

// DrvInfo is a derivation found in a value by Derivations, as
// nix-instantiate and nix-build see it (Nix's DrvInfo). Its attributes
// are evaluated when asked for.
type DrvInfo struct {
	ev    *Evaluator
	attrs Value
	// AttrPath is where the derivation was found ("" for the value
	// itself, "a.b" or "list.0" below it).
	AttrPath string
	// Name is the derivation's name attribute.
	Name string
}

// DrvPath evaluates the derivation's drvPath (instantiating it).
func (d *DrvInfo) DrvPath() (p string, err error) {
	ev := d.ev
	defer ev.recoverTo(&err)
	a := lookupAttr(d.attrs.attrs(), symDrvPath)
	if a == nil {
		return "", nil
	}
	var ctx ctxBuilder
	return ev.coerceToPath(a.Pos, a.Val, &ctx), nil
}

// OutputName evaluates the derivation's outputName: the output a
// derivation value stands for ("" if it has none).
func (d *DrvInfo) OutputName() (name string, err error) {
	ev := d.ev
	defer ev.recoverTo(&err)
	a := lookupAttr(d.attrs.attrs(), symOutputName)
	if a == nil {
		return "", nil
	}
	return ev.forceStringNoCtx(a.Val, a.Pos), nil
}

// drvAttrName is the attribute names Derivations looks into.
var drvAttrName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9\-_+]*$`)

// Derivations is Nix's getDerivations: the derivations a value stands
// for. A derivation is itself; a function is called with args first (as
// autoCallFunction does); a set yields the derivations among its
// attributes, in name order, and looks into attributes that are sets
// with recurseForDerivations = true; a list yields its elements'. Each
// derivation is reported once, however often it is reachable. Anything
// else is a type error.
func (ev *Evaluator) Derivations(v Value, args *AutoArgs) (out []*DrvInfo, err error) {
	defer ev.recoverTo(&err)
	done := map[unsafe.Pointer]bool{}
	ev.getDerivations(v, "", args, &out, done)
	return out, nil
}

// getDerivation adds v if it is a derivation, and reports whether it was
// not one (so the caller may look inside).
func (ev *Evaluator) getDerivation(v Value, attrPath string, out *[]*DrvInfo, done map[unsafe.Pointer]bool) bool {
	v = ev.force(v)
	if !ev.isDerivation(v) {
		return true
	}
	if done[v.p] {
		return false
	}
	done[v.p] = true
	a := lookupAttr(v.attrs(), symName)
	if a == nil {
		ev.throw(ErrType, syntax.NoPos, "derivation name missing")
	}
	*out = append(*out, &DrvInfo{ev: ev, attrs: v, AttrPath: attrPath, Name: ev.forceStringNoCtx(a.Val, syntax.NoPos)})
	return false
}

func joinAttrPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func (ev *Evaluator) getDerivations(in Value, prefix string, args *AutoArgs, out *[]*DrvInfo, done map[unsafe.Pointer]bool) {
	v := ev.force(ev.autoCall(in, args))
	if !ev.getDerivation(v, prefix, out, done) {
		return
	}
	switch v.k {
	case kAttrs:
		// A set seen before (rec { x.d = …; y = x; }) is not looked into
		// again.
		if done[v.p] && v.p != nil {
			return
		}
		done[v.p] = true
		recurse := ev.intern("recurseForDerivations")
		for _, a := range ev.sortedAttrs(v) {
			name := ev.syms.name(a.Name)
			if !drvAttrName.MatchString(name) {
				continue
			}
			p := joinAttrPath(prefix, name)
			if !ev.getDerivation(a.Val, p, out, done) {
				continue
			}
			w := ev.force(a.Val)
			if w.k != kAttrs {
				continue
			}
			if r := lookupAttr(w.attrs(), recurse); r != nil && ev.forceBool(r.Val, r.Pos) {
				ev.getDerivations(w, p, args, out, done)
			}
		}
	case kList:
		for i, e := range v.list() {
			p := joinAttrPath(prefix, strconv.Itoa(i))
			if ev.getDerivation(e, p, out, done) {
				ev.getDerivations(e, p, args, out, done)
			}
		}
	default:
		ev.throw(ErrType, syntax.NoPos, "expression does not evaluate to a derivation (or a set or list of those)")
	}
}
