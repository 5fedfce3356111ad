package eval

import (
	"sort"

	"github.com/castor-nix/castor/evaluator/syntax"
)

// builtinDef describes one builtin function.
type builtinDef struct {
	name string
	// global: bound as `name` in the global scope (like import, map);
	// otherwise bound as `__name`. Either way it is builtins.name.
	global bool
	prim   Primop
}

var builtinDefs []builtinDef

func def1(name string, global bool, f func(ev *Evaluator, pos syntax.Pos, a Value) Value) {
	builtinDefs = append(builtinDefs, builtinDef{name: name, global: global, prim: Primop{Name: name, Arity: 1, fn1: f}})
}

func def2(name string, global bool, f func(ev *Evaluator, pos syntax.Pos, a, b Value) Value) {
	builtinDefs = append(builtinDefs, builtinDef{name: name, global: global, prim: Primop{Name: name, Arity: 2, fn2: f}})
}

func def3(name string, global bool, f func(ev *Evaluator, pos syntax.Pos, a, b, c Value) Value) {
	builtinDefs = append(builtinDefs, builtinDef{name: name, global: global, prim: Primop{Name: name, Arity: 3, fn3: f}})
}

// initBuiltins builds the global scope and the builtins set.
func (ev *Evaluator) initBuiltins(nixVersion string, langVersion int64) {
	var names []string
	var vals []Value
	var battrs []Attr
	add := func(name string, global bool, v Value) {
		g := name
		if !global {
			g = "__" + name
		}
		names = append(names, g)
		vals = append(vals, v)
		battrs = append(battrs, Attr{Name: ev.intern(name), Val: v})
	}
	for i := range builtinDefs {
		d := &builtinDefs[i]
		p := d.prim // a copy per evaluator is not needed; primops are stateless
		add(d.name, d.global, primopValue(&p))
	}
	// derivation is Nix code (derivation.nix), compiled when first used.
	add("derivation", true, thunkValue(&Thunk{code: derivationCode{}}))
	add("true", true, True)
	add("false", true, False)
	add("null", true, Null)
	add("currentSystem", false, Str(ev.system))
	add("currentTime", false, Int(ev.startTime))
	add("nixVersion", false, Str(nixVersion))
	add("langVersion", false, Int(langVersion))
	add("storeDir", false, Str(ev.store.StoreDir()))
	var np []Value
	for _, e := range ev.searchPath {
		np = append(np, ev.mkAttrs(Attr{Name: symPath, Val: Str(e.path)}, Attr{Name: symPrefix, Val: Str(e.prefix)}))
	}
	add("nixPath", false, listValue(np))

	// builtins refers to itself.
	battrs = append(battrs, Attr{Name: ev.intern("builtins")})
	names = append(names, "builtins")
	vals = append(vals, Value{})
	sortAttrs(battrs)
	bv := attrsValue(battrs)
	for i := range battrs {
		if ev.syms.name(battrs[i].Name) == "builtins" {
			battrs[i].Val = bv
		}
	}
	vals[len(vals)-1] = bv
	ev.builtins = bv

	ev.baseEnv = newEnv(nil, len(vals))
	copy(ev.baseEnv.vals, vals)
	ev.baseScope = &scope{names: make(map[string]int, len(names)), base: true}
	for i, n := range names {
		ev.baseScope.names[n] = i
	}
}

// Builtins returns the builtins set.
func (ev *Evaluator) Builtins() Value { return ev.builtins }

// Helpers that force a value to a type, with Nix's error messages.

func (ev *Evaluator) forceAttrs(v Value, pos syntax.Pos) Value {
	v = ev.force(v)
	if v.k != kAttrs {
		ev.typeError(pos, v, "a set")
	}
	return v
}

func (ev *Evaluator) forceList(v Value, pos syntax.Pos) Value {
	v = ev.force(v)
	if v.k != kList {
		ev.typeError(pos, v, "a list")
	}
	return v
}

func (ev *Evaluator) forceBool(v Value, pos syntax.Pos) bool {
	v = ev.force(v)
	if v.k != kBool {
		ev.typeError(pos, v, "a Boolean")
	}
	return v.bool()
}

func (ev *Evaluator) isFunctor(v Value) bool {
	return v.k == kAttrs && lookupAttr(v.attrs(), symFunctor) != nil
}

func (ev *Evaluator) forceFunction(v Value, pos syntax.Pos) Value {
	v = ev.force(v)
	switch v.k {
	case kLambda, kPrimop, kPrimopApp:
		return v
	}
	if ev.isFunctor(v) {
		return v
	}
	ev.typeError(pos, v, "a function")
	return v
}

// equal is Nix's eqValues on two value cells: the same cell (or the same
// function, set or list object) is equal to itself, which is how Nix
// compares functions inside lists and sets. The == operator itself
// compares fresh copies and uses equalTop.
func (ev *Evaluator) equal(a, b Value, pos syntax.Pos) bool {
	if a.same(b) {
		return true
	}
	a, b = ev.force(a), ev.force(b)
	if a.same(b) {
		return true
	}
	return ev.equalForced(a, b, pos)
}

// equalTop is the == operator: like equal, without the identity shortcut
// at the top level (so (f == f) is false for a function f, as in Nix).
func (ev *Evaluator) equalTop(a, b Value, pos syntax.Pos) bool {
	return ev.equalForced(ev.force(a), ev.force(b), pos)
}

func (ev *Evaluator) equalForced(a, b Value, pos syntax.Pos) bool {
	switch {
	case a.k == kInt && b.k == kFloat:
		return float64(a.int()) == b.float()
	case a.k == kFloat && b.k == kInt:
		return a.float() == float64(b.int())
	}
	if a.k != b.k {
		return false
	}
	switch a.k {
	case kInt, kBool:
		return a.n == b.n
	case kFloat:
		return a.float() == b.float()
	case kString, kPath:
		return a.str() == b.str()
	case kNull:
		return true
	case kList:
		if a.n != b.n {
			return false
		}
		x, y := a.list(), b.list()
		ev.enter()
		eq := true
		for i := range x {
			if !ev.equal(x[i], y[i], pos) {
				eq = false
				break
			}
		}
		ev.leave()
		return eq
	case kAttrs:
		if ev.isDerivation(a) && ev.isDerivation(b) {
			i, j := lookupAttr(a.attrs(), symOutPath), lookupAttr(b.attrs(), symOutPath)
			if i != nil && j != nil {
				return ev.equal(i.Val, j.Val, pos)
			}
		}
		if a.n != b.n {
			return false
		}
		x, y := a.attrs(), b.attrs()
		ev.enter()
		eq := true
		for i := range x {
			if x[i].Name != y[i].Name || !ev.equal(x[i].Val, y[i].Val, pos) {
				eq = false
				break
			}
		}
		ev.leave()
		return eq
	}
	// Functions are incomparable.
	return false
}

// names returns the attribute names of a set, sorted.
func (ev *Evaluator) attrNamesSorted(v Value) []string {
	as := v.attrs()
	out := make([]string, len(as))
	for i := range as {
		out[i] = ev.syms.name(as[i].Name)
	}
	sort.Strings(out)
	return out
}

func strList(ss []string) Value {
	l := make([]Value, len(ss))
	for i, s := range ss {
		l[i] = Str(s)
	}
	return listValue(l)
}

func init() {
	def1("abort", true, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		var ctx ctxBuilder
		s := ev.coerceToString(pos, a, &ctx, false, true, true)
		ev.throw(ErrAbort, syntax.NoPos, "evaluation aborted with the following error message: '%s'", s)
		return Value{}
	})
	def1("throw", true, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		var ctx ctxBuilder
		s := ev.coerceToString(pos, a, &ctx, false, true, true)
		ev.throw(ErrThrown, syntax.NoPos, "%s", s)
		return Value{}
	})
	def2("add", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value { return ev.arithAdd(a, b, pos) })
	def2("sub", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value { return ev.arithSub(a, b, pos) })
	def2("mul", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value { return ev.arithMul(a, b, pos) })
	def2("div", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value { return ev.arithDiv(a, b, pos) })
	def2("lessThan", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value { return Bool(ev.lessThan(a, b, pos)) })
	def2("bitAnd", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value {
		return Int(ev.forceInt(a, pos) & ev.forceInt(b, pos))
	})
	def2("bitOr", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value {
		return Int(ev.forceInt(a, pos) | ev.forceInt(b, pos))
	})
	def2("bitXor", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value {
		return Int(ev.forceInt(a, pos) ^ ev.forceInt(b, pos))
	})
	def1("ceil", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		return ev.floatToInt(ev.forceFloat(a, pos), true, pos)
	})
	def1("floor", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		return ev.floatToInt(ev.forceFloat(a, pos), false, pos)
	})
	def2("seq", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value {
		ev.force(a)
		return ev.force(b)
	})
	def2("deepSeq", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value {
		ev.forceDeep(a)
		return ev.force(b)
	})
	def2("addErrorContext", false, func(ev *Evaluator, pos syntax.Pos, msg, v Value) (out Value) {
		mark := len(ev.frames)
		defer func() {
			if r := recover(); r != nil {
				e, ok := r.(*Error)
				if !ok {
					panic(r)
				}
				ev.unwind(e, mark)
				func() {
					// A failure while rendering the context must not
					// replace the original error.
					defer func() {
						if r := recover(); r != nil {
							ev.unwindTo(mark)
						}
					}()
					var ctx ctxBuilder
					s := ev.coerceToString(pos, msg, &ctx, false, true, true)
					e.Trace = append(e.Trace, Trace{Msg: s})
				}()
				panic(e)
			}
		}()
		return ev.force(v)
	})
	def1("tryEval", false, func(ev *Evaluator, pos syntax.Pos, a Value) (out Value) {
		mark := len(ev.frames)
		defer func() {
			if r := recover(); r != nil {
				e, ok := r.(*Error)
				if !ok || !e.catchable() {
					panic(r)
				}
				ev.unwindTo(mark)
				out = ev.mkAttrs(Attr{Name: symValue, Val: False}, Attr{Name: symSuccess, Val: False})
			}
		}()
		v := ev.force(a)
		return ev.mkAttrs(Attr{Name: symValue, Val: v}, Attr{Name: symSuccess, Val: True})
	})
	def2("trace", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value {
		a = ev.force(a)
		if a.k == kString {
			ev.traceOut.Write([]byte("trace: " + a.str() + "\n"))
		} else {
			ev.traceOut.Write([]byte("trace: " + ev.String(a) + "\n"))
		}
		return ev.force(b)
	})
	def1("typeOf", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value { return Str(ev.force(a).typeOf()) })
	isKind := func(name string, kinds ...kind) {
		def1(name, name == "isNull", func(ev *Evaluator, pos syntax.Pos, a Value) Value {
			k := ev.force(a).k
			for _, want := range kinds {
				if k == want {
					return True
				}
			}
			return False
		})
	}
	isKind("isNull", kNull)
	isKind("isBool", kBool)
	isKind("isInt", kInt)
	isKind("isFloat", kFloat)
	isKind("isString", kString)
	isKind("isPath", kPath)
	isKind("isAttrs", kAttrs)
	isKind("isList", kList)
	isKind("isFunction", kLambda, kPrimop, kPrimopApp)
	def1("functionArgs", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		f := ev.force(a)
		switch f.k {
		case kPrimop, kPrimopApp:
			return Value{k: kAttrs}
		case kLambda:
		default:
			ev.throw(ErrType, pos, "'functionArgs' requires a function")
		}
		lam := f.closure().lam
		as := make([]Attr, len(lam.formals))
		for i, fm := range lam.formals {
			as[i] = Attr{Name: fm.name, Pos: fm.pos, Val: Bool(fm.def != nil)}
		}
		return ev.mkAttrs(as...)
	})
	def1("getEnv", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		v, _ := ev.lookupEnv(ev.forceStringNoCtx(a, pos))
		return Str(v)
	})
	def2("unsafeGetAttrPos", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value {
		name := ev.intern(ev.forceStringNoCtx(a, pos))
		s := ev.forceAttrs(b, pos)
		at := lookupAttr(s.attrs(), name)
		if at == nil {
			return Null
		}
		return ev.posAttrs(at.Pos)
	})
	for _, name := range []string{"fetchurl", "fetchTarball", "fetchGit", "fetchMercurial", "fetchTree"} {
		name := name
		global := name != "fetchurl"
		def1(name, global, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
			ev.throw(ErrEval, pos, "'%s' is not supported by this evaluator yet", name)
			return Value{}
		})
	}
}

// floatToInt converts for ceil/floor; out-of-range values are an error
// (modern Nix) rather than undefined behaviour (Nix 2.8).
func (ev *Evaluator) floatToInt(f float64, ceil bool, pos syntax.Pos) Value {
	var r float64
	if ceil {
		r = mathCeil(f)
	} else {
		r = mathFloor(f)
	}
	if !(r >= -9223372036854775808.0 && r < 9223372036854775808.0) {
		ev.throw(ErrEval, pos, "float %s cannot be converted to an integer", syntax.FormatFloat(f))
	}
	return Int(int64(r))
}

// unwindTo pops frames above mark without building a trace (the error is
// being discarded).
func (ev *Evaluator) unwindTo(mark int) { ev.unwind(nil, mark) }
