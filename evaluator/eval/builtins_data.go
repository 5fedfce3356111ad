package eval

import (
	"math"
	"slices"
	"strconv"
	"unsafe"

	"github.com/castor-nix/castor/evaluator/syntax"
)

var (
	mathCeil  = math.Ceil
	mathFloor = math.Floor
)

// listApplyCode is the shared code of the element thunks of map f src (or
// genList f n when src is nil): element i is f src[i] (or f i). The
// thunks live in one array, so an element finds its index from its own
// address (ev.curThunk) instead of carrying it: a list of n lazy
// applications costs two allocations, not 2n.
type listApplyCode struct {
	f      Value
	src    []Value
	thunks []Thunk
	pos    syntax.Pos
}

func (c *listApplyCode) eval(ev *Evaluator, _ *Env) Value {
	t := ev.curThunk
	i := int((uintptr(unsafe.Pointer(t)) - uintptr(unsafe.Pointer(&c.thunks[0]))) / unsafe.Sizeof(Thunk{}))
	x := Int(int64(i))
	if c.src != nil {
		x = c.src[i]
	}
	return ev.call(ev.force(c.f), x, syntax.NoPos)
}

// lazyList returns a list of n thunks running c.
func (ev *Evaluator) lazyList(n int, c *listApplyCode) Value {
	if n == 0 {
		return Value{k: kList}
	}
	out := make([]Value, n)
	c.thunks = make([]Thunk, n)
	for i := range out {
		c.thunks[i].code = c
		out[i] = thunkValue(&c.thunks[i])
	}
	return listValue(out)
}

// apply2Code is the suspended application f a b (mapAttrs, zipAttrsWith).
type apply2Code struct {
	f, a, b Value
	pos     syntax.Pos
}

func (c *apply2Code) eval(ev *Evaluator, _ *Env) Value {
	return ev.call2(ev.force(c.f), c.a, c.b, syntax.NoPos)
}

func init() {
	// Lists.
	def1("length", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		return Int(int64(ev.forceList(a, pos).n))
	})
	def1("head", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		l := ev.forceList(a, pos)
		if l.n == 0 {
			ev.throw(ErrEval, pos, "list index 0 is out of bounds")
		}
		return ev.force(l.list()[0])
	})
	def1("tail", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		l := ev.forceList(a, pos)
		if l.n == 0 {
			ev.throw(ErrEval, pos, "'tail' called on an empty list")
		}
		return listValue(l.list()[1:])
	})
	def2("elemAt", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value {
		l := ev.forceList(a, pos)
		i := ev.forceInt(b, pos)
		if i < 0 || i >= int64(l.n) {
			ev.throw(ErrEval, pos, "list index %d is out of bounds", i)
		}
		return ev.force(l.list()[i])
	})
	def2("elem", false, func(ev *Evaluator, pos syntax.Pos, x, a Value) Value {
		for _, e := range ev.forceList(a, pos).list() {
			if ev.equal(x, e, pos) {
				return True
			}
		}
		return False
	})
	def2("map", true, func(ev *Evaluator, pos syntax.Pos, f, a Value) Value {
		l := ev.forceList(a, pos)
		if l.n == 0 {
			return l
		}
		return ev.lazyList(int(l.n), &listApplyCode{f: f, src: l.list(), pos: pos})
	})
	def2("filter", false, func(ev *Evaluator, pos syntax.Pos, f, a Value) Value {
		f = ev.forceFunction(f, pos)
		l := ev.forceList(a, pos)
		var out []Value
		same := true
		for _, e := range l.list() {
			if ev.forceBool(ev.call(f, e, pos), pos) {
				out = append(out, e)
			} else {
				same = false
			}
		}
		if same {
			return l
		}
		return listValue(out)
	})
	def3("foldl'", false, func(ev *Evaluator, pos syntax.Pos, f, z, a Value) Value {
		f = ev.forceFunction(f, pos)
		l := ev.forceList(a, pos)
		if l.n == 0 {
			return ev.force(z)
		}
		acc := z
		for _, e := range l.list() {
			acc = ev.call2(f, acc, e, pos)
		}
		return acc
	})
	def2("genList", false, func(ev *Evaluator, pos syntax.Pos, f, n Value) Value {
		k := ev.forceInt(n, pos)
		if k < 0 {
			ev.throw(ErrEval, pos, "cannot create list of size %d", k)
		}
		if k > 1<<32 {
			ev.throw(ErrEval, pos, "cannot create list of size %d", k)
		}
		return ev.lazyList(int(k), &listApplyCode{f: f, pos: pos})
	})
	def1("concatLists", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		l := ev.forceList(a, pos)
		var n uint64
		ls := make([]Value, l.n)
		for i, e := range l.list() {
			ls[i] = ev.forceList(e, pos)
			n += ls[i].n
		}
		out := make([]Value, 0, n)
		for _, e := range ls {
			out = append(out, e.list()...)
		}
		return listValue(out)
	})
	def2("concatMap", false, func(ev *Evaluator, pos syntax.Pos, f, a Value) Value {
		f = ev.forceFunction(f, pos)
		l := ev.forceList(a, pos)
		var out []Value
		for _, e := range l.list() {
			r := ev.forceList(ev.call(f, e, pos), pos)
			out = append(out, r.list()...)
		}
		return listValue(out)
	})
	anyAll := func(any bool) func(ev *Evaluator, pos syntax.Pos, f, a Value) Value {
		return func(ev *Evaluator, pos syntax.Pos, f, a Value) Value {
			f = ev.forceFunction(f, pos)
			for _, e := range ev.forceList(a, pos).list() {
				if ev.forceBool(ev.call(f, e, pos), pos) == any {
					return Bool(any)
				}
			}
			return Bool(!any)
		}
	}
	def2("any", false, anyAll(true))
	def2("all", false, anyAll(false))
	def2("sort", false, func(ev *Evaluator, pos syntax.Pos, f, a Value) Value {
		f = ev.forceFunction(f, pos)
		l := ev.forceList(a, pos)
		out := make([]Value, l.n)
		for i, e := range l.list() {
			out[i] = ev.force(e)
		}
		isLessThan := f.k == kPrimop && f.primop().Name == "lessThan"
		slices.SortStableFunc(out, func(a, b Value) int {
			var less bool
			if isLessThan {
				less = ev.lessThan(a, b, pos)
			} else {
				less = ev.forceBool(ev.call2(f, a, b, pos), pos)
			}
			if less {
				return -1
			}
			// The sort is stable and only asks whether a < b: "not
			// less" must not claim b < a, or equal keys would reorder.
			return 0
		})
		return listValue(out)
	})
	def2("partition", false, func(ev *Evaluator, pos syntax.Pos, f, a Value) Value {
		f = ev.forceFunction(f, pos)
		l := ev.forceList(a, pos)
		var right, wrong []Value
		for _, e := range l.list() {
			ev.force(e)
			if ev.forceBool(ev.call(f, e, pos), pos) {
				right = append(right, e)
			} else {
				wrong = append(wrong, e)
			}
		}
		return ev.mkAttrs(Attr{Name: symRight, Val: listValue(right)}, Attr{Name: symWrong, Val: listValue(wrong)})
	})
	def2("groupBy", false, func(ev *Evaluator, pos syntax.Pos, f, a Value) Value {
		f = ev.forceFunction(f, pos)
		l := ev.forceList(a, pos)
		groups := map[Sym][]Value{}
		var order []Sym
		for _, e := range l.list() {
			name := ev.intern(ev.forceStringNoCtx(ev.call(f, e, pos), pos))
			if _, ok := groups[name]; !ok {
				order = append(order, name)
			}
			groups[name] = append(groups[name], e)
		}
		as := make([]Attr, len(order))
		for i, n := range order {
			as[i] = Attr{Name: n, Val: listValue(groups[n])}
		}
		return ev.mkAttrs(as...)
	})
	def1("genericClosure", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		args := ev.forceAttrs(a, pos)
		start := ev.getAttrFor(args, "genericClosure", symStartSet, pos)
		startList := ev.forceList(start, pos)
		op := ev.force(ev.getAttrFor(args, "genericClosure", symOperator, pos))
		work := append([]Value(nil), startList.list()...)
		var res []Value
		done := newKeySet(ev, pos)
		for len(work) > 0 {
			e := work[0]
			work = work[1:]
			es := ev.forceAttrs(e, pos)
			k := lookupAttr(es.attrs(), symKey)
			if k == nil {
				ev.throw(ErrEval, pos, "attribute 'key' required")
			}
			if !done.add(ev.force(k.Val)) {
				continue
			}
			res = append(res, es)
			next := ev.forceList(ev.call(op, es, pos), pos)
			for _, n := range next.list() {
				work = append(work, ev.force(n))
			}
		}
		return listValue(res)
	})

	// Attribute sets.
	def1("attrNames", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		return strList(ev.attrNamesSorted(ev.forceAttrs(a, pos)))
	})
	def1("attrValues", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		as := ev.sortedAttrs(ev.forceAttrs(a, pos))
		out := make([]Value, len(as))
		for i := range as {
			out[i] = as[i].Val
		}
		return listValue(out)
	})
	def2("getAttr", false, func(ev *Evaluator, pos syntax.Pos, n, s Value) Value {
		name := ev.intern(ev.forceStringNoCtx(n, pos))
		as := ev.forceAttrs(s, pos)
		at := lookupAttr(as.attrs(), name)
		if at == nil {
			ev.missingAttr(pos, name, as)
		}
		return ev.force(at.Val)
	})
	def2("hasAttr", false, func(ev *Evaluator, pos syntax.Pos, n, s Value) Value {
		name := ev.intern(ev.forceStringNoCtx(n, pos))
		return Bool(lookupAttr(ev.forceAttrs(s, pos).attrs(), name) != nil)
	})
	def2("removeAttrs", true, func(ev *Evaluator, pos syntax.Pos, s, l Value) Value {
		as := ev.forceAttrs(s, pos)
		names := ev.forceList(l, pos)
		drop := map[Sym]bool{}
		for _, n := range names.list() {
			drop[ev.intern(ev.forceStringNoCtx(n, pos))] = true
		}
		var out []Attr
		for _, a := range as.attrs() {
			if !drop[a.Name] {
				out = append(out, a)
			}
		}
		if len(out) == int(as.n) {
			return as
		}
		return attrsValue(out)
	})
	def1("listToAttrs", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		l := ev.forceList(a, pos)
		seen := make(map[Sym]bool, l.n)
		out := make([]Attr, 0, l.n)
		for _, e := range l.list() {
			es := ev.forceAttrs(e, pos)
			nameAttr := lookupAttr(es.attrs(), symName)
			if nameAttr == nil {
				ev.missingFor(pos, "listToAttrs", symName)
			}
			name := ev.intern(ev.forceStringNoCtx(nameAttr.Val, nameAttr.Pos))
			if seen[name] {
				continue
			}
			seen[name] = true
			valAttr := lookupAttr(es.attrs(), symValue)
			if valAttr == nil {
				ev.missingFor(pos, "listToAttrs", symValue)
			}
			out = append(out, Attr{Name: name, Pos: valAttr.Pos, Val: valAttr.Val})
		}
		sortAttrs(out)
		return attrsValue(out)
	})
	def2("intersectAttrs", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value {
		x := ev.forceAttrs(a, pos)
		y := ev.forceAttrs(b, pos)
		var out []Attr
		for _, at := range y.attrs() {
			if lookupAttr(x.attrs(), at.Name) != nil {
				out = append(out, at)
			}
		}
		return attrsValue(out)
	})
	def2("catAttrs", false, func(ev *Evaluator, pos syntax.Pos, n, l Value) Value {
		name := ev.intern(ev.forceStringNoCtx(n, pos))
		var out []Value
		for _, e := range ev.forceList(l, pos).list() {
			if at := lookupAttr(ev.forceAttrs(e, pos).attrs(), name); at != nil {
				out = append(out, at.Val)
			}
		}
		return listValue(out)
	})
	def2("mapAttrs", false, func(ev *Evaluator, pos syntax.Pos, f, s Value) Value {
		as := ev.forceAttrs(s, pos)
		src := as.attrs()
		out := make([]Attr, len(src))
		codes := make([]apply2Code, len(src))
		thunks := make([]Thunk, len(src))
		for i, a := range src {
			codes[i] = apply2Code{f: f, a: Str(ev.syms.name(a.Name)), b: a.Val, pos: pos}
			thunks[i].code = &codes[i]
			out[i] = Attr{Name: a.Name, Val: thunkValue(&thunks[i])}
		}
		return attrsValue(out)
	})
	def2("zipAttrsWith", false, func(ev *Evaluator, pos syntax.Pos, f, l Value) Value {
		f = ev.forceFunction(f, pos)
		list := ev.forceList(l, pos)
		groups := map[Sym][]Value{}
		for _, e := range list.list() {
			for _, a := range ev.forceAttrs(e, syntax.NoPos).attrs() {
				groups[a.Name] = append(groups[a.Name], a.Val)
			}
		}
		out := make([]Attr, 0, len(groups))
		for name, vals := range groups {
			out = append(out, Attr{Name: name, Val: thunkValue(&Thunk{code: &apply2Code{
				f: f, a: Str(ev.syms.name(name)), b: listValue(vals), pos: pos}})})
		}
		sortAttrs(out)
		return attrsValue(out)
	})
}

// getAttrFor is Nix's getAttr helper for builtins taking a set of
// arguments: a missing attribute is a type error naming the builtin.
func (ev *Evaluator) getAttrFor(s Value, fn string, name Sym, pos syntax.Pos) Value {
	a := lookupAttr(s.attrs(), name)
	if a == nil {
		ev.missingFor(pos, fn, name)
	}
	return a.Val
}

func (ev *Evaluator) missingFor(pos syntax.Pos, fn string, name Sym) {
	ev.throw(ErrType, pos, "attribute '%s' missing for call to '%s'", ev.syms.name(name), fn)
}

// keySet is genericClosure's set of seen keys, ordered as Nix orders them
// (by `<`); values of kinds `<` cannot compare are an error as in Nix.
type keySet struct {
	ev    *Evaluator
	pos   syntax.Pos
	exact map[string]bool
	first Value
	other []Value
}

func newKeySet(ev *Evaluator, pos syntax.Pos) *keySet {
	return &keySet{ev: ev, pos: pos, exact: map[string]bool{}}
}

func (s *keySet) add(k Value) bool {
	var key string
	switch k.k {
	case kInt:
		key = "n" + strconv.FormatInt(k.int(), 10)
	case kFloat:
		f := k.float()
		if f == math.Trunc(f) && math.Abs(f) < 1<<62 {
			key = "n" + strconv.FormatInt(int64(f), 10)
		} else {
			key = "f" + strconv.FormatUint(math.Float64bits(f), 16)
		}
	case kString:
		key = "s" + k.str()
	case kPath:
		key = "p" + k.str()
	default:
		// Lists (compared lexicographically) and incomparable values:
		// compare with every key seen, as Nix's std::set would.
		for _, o := range s.other {
			if !s.ev.lessThan(k, o, s.pos) && !s.ev.lessThan(o, k, s.pos) {
				return false
			}
		}
		s.checkKind(k)
		s.other = append(s.other, k)
		return true
	}
	s.checkKind(k)
	if s.exact[key] {
		return false
	}
	s.exact[key] = true
	return true
}

// checkKind raises Nix's "cannot compare" error when keys of incomparable
// kinds meet.
func (s *keySet) checkKind(k Value) {
	if s.first.k == kInvalid {
		s.first = k
		return
	}
	num := func(v Value) bool { return v.k == kInt || v.k == kFloat }
	if num(s.first) && num(k) || s.first.k == k.k && (k.k == kString || k.k == kPath || k.k == kList) {
		return
	}
	s.ev.lessThan(s.first, k, s.pos)
}
