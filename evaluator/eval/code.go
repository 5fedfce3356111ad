package eval

import (
	"unsafe"

	"github.com/castor-nix/castor/evaluator/syntax"
)

// code is compiled Nix: the AST with variables resolved to environment
// slots and builtin operators specialised. eval returns the value in weak
// head normal form (never a thunk).
type code interface {
	eval(ev *Evaluator, env *Env) Value
}

// delay returns the lazy value of c in env without evaluating it: constants
// and variables need no thunk (a variable's slot already holds a value or a
// shared thunk); everything else is suspended in a new thunk.
func (ev *Evaluator) delay(c code, env *Env) Value {
	switch c := c.(type) {
	case *constCode:
		return c.v
	case *globalThunkCode:
		return c.v
	case *varCode:
		e := env
		for i := c.level; i > 0; i-- {
			e = e.up
		}
		// A slot not filled yet (a later binding of the same let, rec
		// set or pattern) needs a thunk, as in Nix's ExprVar::maybeThunk.
		if v := e.vals[c.idx]; v.k != kInvalid {
			return v
		}
	}
	return thunkValue(&Thunk{code: c, env: env})
}

// force returns v in weak head normal form.
func (ev *Evaluator) force(v Value) Value {
	if v.k != kThunk {
		return v
	}
	return ev.forceThunk(v.thunk())
}

// frame kinds
const (
	frThunk uint8 = iota
	frCall
	frSelect
	frAttr
	frMsg
	frDepth // a level of a recursive helper (deepSeq, printing, ==): depth only
)

// frame is one entry of the evaluator's own stack: thunks being forced
// (to undo their blackholing when an error unwinds past them), function
// calls and attribute selections (for error traces and the depth limit).
type frame struct {
	kind uint8
	pos  syntax.Pos
	p    unsafe.Pointer
}

// enter and leave bracket a level of recursion in Go helpers that walk
// values (forcing deeply, printing, comparing), so that the depth limit
// also covers them: a value nested a million levels deep fails with
// "stack overflow" instead of exhausting the Go stack. leave must not be
// deferred: a panic unwinds the frames itself (see unwind).
func (ev *Evaluator) enter() {
	if len(ev.frames) >= ev.maxDepth {
		ev.stackOverflow()
	}
	ev.frames = append(ev.frames, frame{kind: frDepth})
}

func (ev *Evaluator) leave() { ev.frames = ev.frames[:len(ev.frames)-1] }

func (ev *Evaluator) push(f frame) {
	if len(ev.frames) >= ev.maxDepth {
		ev.stackOverflow()
	}
	ev.frames = append(ev.frames, f)
}

func (ev *Evaluator) forceThunk(t *Thunk) Value {
	if t.code == nil {
		return t.val
	}
	if t.val.k == kBlackhole {
		ev.throw(ErrInfiniteRecursion, ev.currentPos(), "infinite recursion encountered")
	}
	t.val.k = kBlackhole
	if len(ev.frames) >= ev.maxDepth {
		t.val.k = kInvalid
		ev.stackOverflow()
	}
	ev.frames = append(ev.frames, frame{kind: frThunk, p: unsafe.Pointer(t)})
	ev.curThunk = t
	v := t.code.eval(ev, t.env)
	ev.frames = ev.frames[:len(ev.frames)-1]
	t.val = v
	t.code = nil
	t.env = nil
	return v
}

// constCode is a literal or an inlined builtin constant.
type constCode struct{ v Value }

func (c *constCode) eval(*Evaluator, *Env) Value { return c.v }

// globalThunkCode reads a global whose value is computed on first use
// (derivation): the shared thunk, forced.
type globalThunkCode struct{ v Value }

func (c *globalThunkCode) eval(ev *Evaluator, _ *Env) Value { return ev.force(c.v) }

// varCode reads a statically resolved variable.
type varCode struct {
	level, idx int
	pos        syntax.Pos
	name       Sym
}

func (c *varCode) eval(ev *Evaluator, env *Env) Value {
	for i := c.level; i > 0; i-- {
		env = env.up
	}
	v := env.vals[c.idx]
	if v.k == kThunk {
		v = ev.forceThunk(v.thunk())
		env.vals[c.idx] = v
	}
	return v
}

// withVarCode reads a variable bound by an enclosing `with`: it searches
// the with-scopes from the innermost outwards. dists are the environment
// hops from one with-scope to the next, the first from the current env.
type withVarCode struct {
	dists []int
	pos   syntax.Pos
	name  Sym
}

func (c *withVarCode) eval(ev *Evaluator, env *Env) Value {
	for _, d := range c.dists {
		for i := d; i > 0; i-- {
			env = env.up
		}
		s := env.vals[0]
		if s.k != kAttrs {
			s = ev.forceAttrsWith(s, c.pos)
			env.vals[0] = s
		}
		if a := lookupAttr(s.attrs(), c.name); a != nil {
			return ev.force(a.Val)
		}
	}
	ev.throw(ErrUndefinedVar, c.pos, "undefined variable '%s'", ev.syms.name(c.name))
	return Value{}
}

func (ev *Evaluator) forceAttrsWith(v Value, pos syntax.Pos) Value {
	v = ev.force(v)
	if v.k != kAttrs {
		ev.typeError(pos, v, "a set")
	}
	return v
}

type withCode struct {
	attrs code
	body  code
}

func (c *withCode) eval(ev *Evaluator, env *Env) Value {
	e := newEnv(env, 1)
	e.vals[0] = ev.delay(c.attrs, env)
	return c.body.eval(ev, e)
}

type staticAttr struct {
	name      Sym
	pos       syntax.Pos
	val       code
	inherited bool
}

type dynAttr struct {
	name code
	val  code
	pos  syntax.Pos
}

// attrsCode builds a non-recursive attribute set.
type attrsCode struct {
	pos    syntax.Pos
	static []staticAttr // sorted by name
	dyn    []dynAttr
}

func (c *attrsCode) eval(ev *Evaluator, env *Env) Value {
	as := make([]Attr, len(c.static), len(c.static)+len(c.dyn))
	for i := range c.static {
		a := &c.static[i]
		as[i] = Attr{Name: a.name, Pos: a.pos, Val: ev.delay(a.val, env)}
	}
	if len(c.dyn) > 0 {
		as = ev.addDynAttrs(as, c.dyn, env)
	}
	return attrsValue(as)
}

func (ev *Evaluator) addDynAttrs(as []Attr, dyn []dynAttr, env *Env) []Attr {
	for _, d := range dyn {
		nv := d.name.eval(ev, env)
		if nv.k == kNull {
			continue
		}
		// Nix forces dynamic attribute names without a position.
		name := ev.intern(ev.forceStringNoCtx(nv, syntax.NoPos))
		if old := lookupAttr(as, name); old != nil {
			ev.throw(ErrEval, d.pos, "dynamic attribute '%s' already defined at %s",
				ev.syms.name(name), ev.fset.Position(old.Pos).Inline())
		}
		as = insertAttr(as, Attr{Name: name, Pos: d.pos, Val: ev.delay(d.val, env)})
	}
	return as
}

// insertAttr inserts a into the sorted array as (a.Name must be absent).
func insertAttr(as []Attr, a Attr) []Attr {
	i := 0
	for i < len(as) && as[i].Name < a.Name {
		i++
	}
	as = append(as, Attr{})
	copy(as[i+1:], as[i:])
	as[i] = a
	return as
}

// recAttrsCode builds a rec { } set: its attributes are also variables of
// a new environment, slot i holding static[i].
type recAttrsCode struct {
	pos          syntax.Pos
	static       []staticAttr
	dyn          []dynAttr
	overridesIdx int // slot of __overrides, or -1
}

func (c *recAttrsCode) eval(ev *Evaluator, env *Env) Value {
	env2 := newEnv(env, len(c.static))
	as := make([]Attr, len(c.static), len(c.static)+len(c.dyn))
	for i := range c.static {
		a := &c.static[i]
		var v Value
		if a.inherited {
			v = ev.delay(a.val, env)
		} else if c.overridesIdx >= 0 {
			// Always a thunk, so that overriding the slot below reaches
			// the other attributes' bodies.
			v = thunkValue(&Thunk{code: a.val, env: env2})
		} else {
			v = ev.delay(a.val, env2)
		}
		env2.vals[i] = v
		as[i] = Attr{Name: a.name, Pos: a.pos, Val: v}
	}
	if c.overridesIdx >= 0 {
		ov := ev.force(env2.vals[c.overridesIdx])
		if ov.k != kAttrs {
			ev.typeError(c.pos, ov, "a set")
		}
		for _, o := range ov.attrs() {
			found := false
			for i := range c.static {
				if c.static[i].name == o.Name {
					as[i] = o
					env2.vals[i] = o.Val
					found = true
					break
				}
			}
			if !found {
				as = insertAttr(as, o)
			}
		}
	}
	if len(c.dyn) > 0 {
		as = ev.addDynAttrs(as, c.dyn, env2)
	}
	return attrsValue(as)
}

// letCode evaluates its body in a new environment of the bindings.
type letCode struct {
	binds []staticAttr // slot order
	body  code
}

func (c *letCode) eval(ev *Evaluator, env *Env) Value {
	env2 := newEnv(env, len(c.binds))
	for i := range c.binds {
		b := &c.binds[i]
		if b.inherited {
			env2.vals[i] = ev.delay(b.val, env)
		} else {
			env2.vals[i] = ev.delay(b.val, env2)
		}
	}
	return c.body.eval(ev, env2)
}

type listCode struct {
	elems []code
}

func (c *listCode) eval(ev *Evaluator, env *Env) Value {
	l := make([]Value, len(c.elems))
	for i, e := range c.elems {
		l[i] = ev.delay(e, env)
	}
	return listValue(l)
}

type formalCode struct {
	name Sym
	def  code
	pos  syntax.Pos
}

// lambdaCode is a function literal. Its environment has the whole argument
// (if named) in slot 0, then the formals in declaration order.
type lambdaCode struct {
	pos      syntax.Pos
	name     string // the binding it was defined as, for messages
	hasArg   bool
	arg      Sym
	formals  []formalCode // nil for x: body
	pattern  bool         // true for { ... }: body even without formals
	ellipsis bool
	nslots   int
	body     code
	// noDefaults: no formal has a default (defaults are thunks that
	// capture the environment); poolable: call environments can be
	// recycled (see pool.go).
	noDefaults, poolable bool
}

func (c *lambdaCode) eval(ev *Evaluator, env *Env) Value {
	return closureValue(&Closure{lam: c, env: env})
}

func (ev *Evaluator) describeLambda(l *lambdaCode) string {
	where := ev.fset.Position(l.pos).Inline()
	if l.name != "" {
		return "'" + l.name + "' at " + where
	}
	return "anonymous function at " + where
}

type callCode struct {
	pos  syntax.Pos
	fn   code
	args []code
}

func (c *callCode) eval(ev *Evaluator, env *Env) Value {
	f := c.fn.eval(ev, env)
	for i := 0; i < len(c.args); {
		if f.k != kLambda {
			f = ev.call(f, ev.delay(c.args[i], env), c.pos)
			i++
			continue
		}
		// Bind as many arguments as the curried lambda chain takes,
		// without building the intermediate closures.
		cl := f.closure()
		lam, up := cl.lam, cl.env
		mark := len(ev.frames)
		// envs bound in this chain; all recyclable if the last body
		// does not capture and no formal had a default.
		var envs [4]*Env
		n := 0
		pool := true
		for {
			e := ev.bindArgs(lam, up, ev.delay(c.args[i], env), c.pos)
			i++
			if n < len(envs) {
				envs[n] = e
				n++
			} else {
				pool = false
			}
			pool = pool && lam.noDefaults
			// One frame for the whole chain, naming the innermost lambda:
			// as in Nix, the outer calls have returned by then.
			if len(ev.frames) > mark {
				ev.frames[mark].p = unsafe.Pointer(lam)
			} else {
				ev.pushCall(lam, c.pos)
			}
			if inner, ok := lam.body.(*lambdaCode); ok && i < len(c.args) {
				lam, up = inner, e
				continue
			}
			f = lam.body.eval(ev, e)
			pool = pool && lam.poolable
			break
		}
		ev.frames = ev.frames[:mark]
		if pool {
			for j := 0; j < n; j++ {
				ev.putEnv(envs[j])
			}
		}
	}
	return f
}

// attrKey is one element of an attribute path in select or has-attr.
type attrKey struct {
	name Sym
	dyn  code // non-nil for a computed name
	pos  syntax.Pos
}

func (ev *Evaluator) keyName(k *attrKey, env *Env) Sym {
	if k.dyn == nil {
		return k.name
	}
	v := k.dyn.eval(ev, env)
	// Nix forces dynamic attribute names without a position.
	return ev.intern(ev.forceStringNoCtx(v, syntax.NoPos))
}

type selectCode struct {
	pos  syntax.Pos
	e    code
	path []attrKey
	def  code
}

func (c *selectCode) eval(ev *Evaluator, env *Env) Value {
	v := c.e.eval(ev, env)
	var last *Attr
	for i := range c.path {
		k := &c.path[i]
		name := ev.keyName(k, env)
		if i > 0 {
			v = ev.forceSelected(last, c, i, env)
		}
		if v.k != kAttrs {
			if c.def != nil {
				return c.def.eval(ev, env)
			}
			ev.typeError(c.pos, v, "a set")
		}
		a := lookupAttr(v.attrs(), name)
		if a == nil {
			if c.def != nil {
				return c.def.eval(ev, env)
			}
			ev.missingAttr(c.pos, name, v)
		}
		last = a
		v = a.Val
	}
	return ev.forceSelected(last, c, len(c.path), env)
}

// forceSelected forces the value of a selected attribute, with a frame
// that adds "while evaluating the attribute" to errors, as Nix does.
func (ev *Evaluator) forceSelected(a *Attr, c *selectCode, n int, env *Env) Value {
	v := a.Val
	if v.k != kThunk {
		return v
	}
	t := v.thunk()
	if t.code == nil {
		return t.val
	}
	sf := &selFrame{c: c, n: n, env: env, attrPos: a.Pos}
	ev.push(frame{kind: frSelect, pos: a.Pos, p: unsafe.Pointer(sf)})
	v = ev.forceThunk(t)
	ev.frames = ev.frames[:len(ev.frames)-1]
	return v
}

type selFrame struct {
	c       *selectCode
	n       int
	env     *Env
	attrPos syntax.Pos
}

func (ev *Evaluator) missingAttr(pos syntax.Pos, name Sym, v Value) {
	want := ev.syms.name(name)
	var names []string
	for _, a := range v.attrs() {
		names = append(names, ev.syms.name(a.Name))
	}
	panic(&Error{Kind: ErrEval, Msg: "attribute '" + want + "' missing", Pos: pos,
		fset: ev.fset, Suggestions: bestMatches(names, want)})
}

type hasAttrCode struct {
	pos  syntax.Pos
	e    code
	path []attrKey
}

func (c *hasAttrCode) eval(ev *Evaluator, env *Env) Value {
	v := c.e.eval(ev, env)
	for i := range c.path {
		name := ev.keyName(&c.path[i], env)
		v = ev.force(v)
		if v.k != kAttrs {
			return False
		}
		a := lookupAttr(v.attrs(), name)
		if a == nil {
			return False
		}
		v = a.Val
	}
	return True
}

type ifCode struct {
	pos               syntax.Pos
	cond, then, else_ code
}

func (c *ifCode) eval(ev *Evaluator, env *Env) Value {
	b := c.cond.eval(ev, env)
	if b.k != kBool {
		ev.typeError(c.pos, b, "a Boolean")
	}
	if b.n != 0 {
		return c.then.eval(ev, env)
	}
	return c.else_.eval(ev, env)
}

type assertCode struct {
	pos  syntax.Pos
	cond code
	body code
	text string // the condition as Nix prints it
}

func (c *assertCode) eval(ev *Evaluator, env *Env) Value {
	b := c.cond.eval(ev, env)
	if b.k != kBool {
		ev.typeError(c.pos, b, "a Boolean")
	}
	if b.n == 0 {
		ev.throw(ErrAssertion, c.pos, "assertion '%s' failed", c.text)
	}
	return c.body.eval(ev, env)
}

type notCode struct {
	pos syntax.Pos
	e   code
}

func (c *notCode) eval(ev *Evaluator, env *Env) Value {
	b := c.e.eval(ev, env)
	if b.k != kBool {
		ev.typeError(c.pos, b, "a Boolean")
	}
	return Bool(b.n == 0)
}

type boolOpCode struct {
	pos  syntax.Pos
	op   syntax.Op
	l, r code
}

func (ev *Evaluator) evalBool(c code, env *Env, pos syntax.Pos) bool {
	b := c.eval(ev, env)
	if b.k != kBool {
		ev.typeError(pos, b, "a Boolean")
	}
	return b.n != 0
}

func (c *boolOpCode) eval(ev *Evaluator, env *Env) Value {
	switch c.op {
	case syntax.OpAnd:
		return Bool(ev.evalBool(c.l, env, c.pos) && ev.evalBool(c.r, env, c.pos))
	case syntax.OpOr:
		return Bool(ev.evalBool(c.l, env, c.pos) || ev.evalBool(c.r, env, c.pos))
	default: // OpImpl
		return Bool(!ev.evalBool(c.l, env, c.pos) || ev.evalBool(c.r, env, c.pos))
	}
}

type eqCode struct {
	pos  syntax.Pos
	l, r code
	neg  bool
}

func (c *eqCode) eval(ev *Evaluator, env *Env) Value {
	a := c.l.eval(ev, env)
	b := c.r.eval(ev, env)
	return Bool(ev.equalTop(a, b, c.pos) != c.neg)
}

type updateCode struct {
	pos  syntax.Pos
	l, r code
}

func (c *updateCode) eval(ev *Evaluator, env *Env) Value {
	a := c.l.eval(ev, env)
	if a.k != kAttrs {
		ev.typeError(c.pos, a, "a set")
	}
	b := c.r.eval(ev, env)
	if b.k != kAttrs {
		ev.typeError(c.pos, b, "a set")
	}
	return updateAttrs(a, b)
}

// updateAttrs is a // b: a merge of two sorted arrays, b winning.
func updateAttrs(a, b Value) Value {
	if b.n == 0 {
		return a
	}
	if a.n == 0 {
		return b
	}
	x, y := a.attrs(), b.attrs()
	out := make([]Attr, 0, len(x)+len(y))
	i, j := 0, 0
	for i < len(x) && j < len(y) {
		switch {
		case x[i].Name < y[j].Name:
			out = append(out, x[i])
			i++
		case x[i].Name > y[j].Name:
			out = append(out, y[j])
			j++
		default:
			out = append(out, y[j])
			i++
			j++
		}
	}
	out = append(out, x[i:]...)
	out = append(out, y[j:]...)
	return attrsValue(out)
}

type concatListsCode struct {
	pos  syntax.Pos
	l, r code
}

func (c *concatListsCode) eval(ev *Evaluator, env *Env) Value {
	a := c.l.eval(ev, env)
	if a.k != kList {
		ev.typeError(c.pos, a, "a list")
	}
	b := c.r.eval(ev, env)
	if b.k != kList {
		ev.typeError(c.pos, b, "a list")
	}
	if a.n == 0 {
		return b
	}
	if b.n == 0 {
		return a
	}
	out := make([]Value, 0, a.n+b.n)
	out = append(out, a.list()...)
	out = append(out, b.list()...)
	return listValue(out)
}

type curPosCode struct{ v Value }

func (c *curPosCode) eval(*Evaluator, *Env) Value { return c.v }
