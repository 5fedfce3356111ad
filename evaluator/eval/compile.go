package eval

import (
	"sort"

	"github.com/castor-nix/castor/evaluator/syntax"
)

// scope is the compile-time picture of an Env: the names of its slots, or
// a with-scope (one slot, names unknown until run time).
type scope struct {
	up    *scope
	names map[string]int
	with  bool
	// base marks the evaluator's global scope, whose slots hold constant
	// values that the compiler may inline.
	base bool
}

func (s *scope) lookup(name string) (int, bool) {
	i, ok := s.names[name]
	return i, ok
}

type compiler struct {
	ev   *Evaluator
	file *syntax.File
}

// compileError is raised (as a panic) for errors found while compiling,
// such as undefined variables; Nix reports them as parse errors.
func (c *compiler) errorf(kind error, pos syntax.Pos, format string, args ...any) {
	c.ev.throw(kind, pos, format, args...)
}

func (c *compiler) compile(n syntax.Node, s *scope) code {
	switch n := n.(type) {
	case *syntax.Int:
		return &constCode{Int(n.V)}
	case *syntax.Float:
		return &constCode{Float(n.V)}
	case *syntax.String:
		return &constCode{Str(n.V)}
	case *syntax.Path:
		return &constCode{Path(n.V)}
	case *syntax.Var:
		return c.compileVar(n.Name, n.P, s)
	case *syntax.CurPos:
		return &curPosCode{c.ev.posAttrs(n.P)}
	case *syntax.Select:
		return &selectCode{pos: n.P, e: c.compile(n.E, s), path: c.compilePath(n.Path, s), def: c.compileOpt(n.Default, s)}
	case *syntax.HasAttr:
		return &hasAttrCode{pos: n.P, e: c.compile(n.E, s), path: c.compilePath(n.Path, s)}
	case *syntax.Attrs:
		return c.compileAttrs(n, s)
	case *syntax.List:
		if len(n.Elems) == 0 {
			return &constCode{Value{k: kList}}
		}
		l := &listCode{elems: make([]code, len(n.Elems))}
		for i, e := range n.Elems {
			l.elems[i] = c.compile(e, s)
		}
		return l
	case *syntax.Lambda:
		return c.compileLambda(n, s)
	case *syntax.Call:
		return c.compileCall(n, s)
	case *syntax.Let:
		return c.compileLet(n, s)
	case *syntax.With:
		attrs := c.compile(n.Attrs, s)
		inner := &scope{up: s, with: true}
		return &withCode{attrs: attrs, body: c.compile(n.Body, inner)}
	case *syntax.If:
		return &ifCode{pos: n.P, cond: c.compile(n.Cond, s), then: c.compile(n.Then, s), else_: c.compile(n.Else, s)}
	case *syntax.Assert:
		return &assertCode{pos: n.P, cond: c.compile(n.Cond, s), body: c.compile(n.Body, s), text: syntax.Show(n.Cond)}
	case *syntax.Not:
		return &notCode{pos: n.P, e: c.compile(n.E, s)}
	case *syntax.BinOp:
		l, r := c.compile(n.L, s), c.compile(n.R, s)
		switch n.Op {
		case syntax.OpEq:
			return &eqCode{pos: n.P, l: l, r: r}
		case syntax.OpNEq:
			return &eqCode{pos: n.P, l: l, r: r, neg: true}
		case syntax.OpAnd, syntax.OpOr, syntax.OpImpl:
			return &boolOpCode{pos: n.P, op: n.Op, l: l, r: r}
		case syntax.OpUpdate:
			return &updateCode{pos: n.P, l: l, r: r}
		case syntax.OpConcat:
			return &concatListsCode{pos: n.P, l: l, r: r}
		}
	case *syntax.ConcatStrings:
		cs := concatStringsCode{pos: n.P, force: n.ForceString}
		for _, p := range n.Parts {
			cs.parts = append(cs.parts, c.compile(p.E, s))
			cs.partPos = append(cs.partPos, p.P)
		}
		if !n.ForceString && len(cs.parts) == 2 {
			return &plusCode{cs}
		}
		return &cs
	}
	panic("eval: unknown syntax node")
}

func (c *compiler) compileOpt(n syntax.Node, s *scope) code {
	if n == nil {
		return nil
	}
	return c.compile(n, s)
}

func (c *compiler) compilePath(path []syntax.AttrName, s *scope) []attrKey {
	keys := make([]attrKey, len(path))
	for i, a := range path {
		keys[i].pos = a.P
		if a.Expr != nil {
			keys[i].dyn = c.compile(a.Expr, s)
		} else {
			keys[i].name = c.ev.intern(a.Name)
		}
	}
	return keys
}

// compileVar resolves a variable: statically bound names win over with
// scopes at any depth, as in Nix; names only a with can bind are looked up
// at run time in the with scopes from the innermost outwards.
func (c *compiler) compileVar(name string, pos syntax.Pos, s *scope) code {
	level := 0
	var withLevels []int
	for sc := s; sc != nil; sc, level = sc.up, level+1 {
		if sc.with {
			withLevels = append(withLevels, level)
			continue
		}
		if idx, ok := sc.lookup(name); ok {
			if sc.base {
				if v := c.ev.baseEnv.vals[idx]; v.k == kThunk {
					return &globalThunkCode{v}
				}
				return &constCode{c.ev.baseEnv.vals[idx]}
			}
			return &varCode{level: level, idx: idx, pos: pos, name: c.ev.intern(name)}
		}
	}
	if len(withLevels) == 0 {
		c.errorf(ErrUndefinedVar, pos, "undefined variable '%s'", name)
	}
	dists := make([]int, len(withLevels))
	prev := 0
	for i, l := range withLevels {
		dists[i] = l - prev
		prev = l
	}
	return &withVarCode{dists: dists, pos: pos, name: c.ev.intern(name)}
}

// baseOp reports whether fn is a variable naming the unshadowed builtin op.
func (c *compiler) baseOp(fn syntax.Node, s *scope) (string, bool) {
	v, ok := fn.(*syntax.Var)
	if !ok {
		return "", false
	}
	switch v.Name {
	case "__sub", "__mul", "__div", "__lessThan":
	default:
		return "", false
	}
	for sc := s; sc != nil; sc = sc.up {
		if sc.with {
			continue
		}
		if _, ok := sc.lookup(v.Name); ok {
			return v.Name, sc.base
		}
	}
	return "", false
}

func (c *compiler) compileCall(n *syntax.Call, s *scope) code {
	if op, ok := c.baseOp(n.Fn, s); ok && len(n.Args) == 2 {
		l, r := c.compile(n.Args[0], s), c.compile(n.Args[1], s)
		b := &binArithCode{pos: n.P, l: l, r: r}
		switch op {
		case "__sub":
			b.op = '-'
		case "__mul":
			b.op = '*'
		case "__div":
			b.op = '/'
		case "__lessThan":
			b.op = '<'
		}
		return b
	}
	call := &callCode{pos: n.P, fn: c.compile(n.Fn, s)}
	for _, a := range n.Args {
		call.args = append(call.args, c.compile(a, s))
	}
	return call
}

// sortedDefs returns the static definitions ordered by symbol, the order
// of attribute arrays.
func (c *compiler) sortedDefs(a *syntax.Attrs) ([]*syntax.AttrDef, []Sym) {
	defs := append([]*syntax.AttrDef(nil), a.Defs...)
	syms := make(map[*syntax.AttrDef]Sym, len(defs))
	for _, d := range defs {
		syms[d] = c.ev.intern(d.Name)
	}
	sort.Slice(defs, func(i, j int) bool { return syms[defs[i]] < syms[defs[j]] })
	out := make([]Sym, len(defs))
	for i, d := range defs {
		out[i] = syms[d]
	}
	return defs, out
}

func (c *compiler) compileAttrs(n *syntax.Attrs, s *scope) code {
	defs, syms := c.sortedDefs(n)
	if !n.Rec {
		ac := &attrsCode{pos: n.P, static: make([]staticAttr, len(defs))}
		for i, d := range defs {
			ac.static[i] = staticAttr{name: syms[i], pos: d.P, val: c.compile(d.Value, s), inherited: d.Inherited}
		}
		for _, d := range n.Dyn {
			ac.dyn = append(ac.dyn, dynAttr{name: c.compile(d.Name, s), val: c.compile(d.Value, s), pos: d.P})
		}
		if len(ac.static) == 0 && len(ac.dyn) == 0 {
			return &constCode{Value{k: kAttrs}}
		}
		return ac
	}
	inner := &scope{up: s, names: make(map[string]int, len(defs))}
	for i, d := range defs {
		inner.names[d.Name] = i
	}
	rc := &recAttrsCode{pos: n.P, static: make([]staticAttr, len(defs)), overridesIdx: -1}
	for i, d := range defs {
		sc := inner
		if d.Inherited {
			sc = s
		}
		rc.static[i] = staticAttr{name: syms[i], pos: d.P, val: c.compile(d.Value, sc), inherited: d.Inherited}
		if d.Name == "__overrides" {
			rc.overridesIdx = i
		}
	}
	for _, d := range n.Dyn {
		rc.dyn = append(rc.dyn, dynAttr{name: c.compile(d.Name, inner), val: c.compile(d.Value, inner), pos: d.P})
	}
	return rc
}

func (c *compiler) compileLet(n *syntax.Let, s *scope) code {
	defs := n.Binds.Defs
	inner := &scope{up: s, names: make(map[string]int, len(defs))}
	for i, d := range defs {
		inner.names[d.Name] = i
	}
	lc := &letCode{binds: make([]staticAttr, len(defs))}
	for i, d := range defs {
		sc := inner
		if d.Inherited {
			sc = s
		}
		lc.binds[i] = staticAttr{name: c.ev.intern(d.Name), pos: d.P, val: c.compile(d.Value, sc), inherited: d.Inherited}
	}
	lc.body = c.compile(n.Body, inner)
	return lc
}

func (c *compiler) compileLambda(n *syntax.Lambda, s *scope) code {
	lc := &lambdaCode{pos: n.P, name: n.Name}
	inner := &scope{up: s, names: make(map[string]int)}
	slot := 0
	if n.Arg != "" {
		lc.hasArg = true
		lc.arg = c.ev.intern(n.Arg)
		inner.names[n.Arg] = 0
		slot = 1
	}
	if n.Formals != nil {
		lc.pattern = true
		lc.ellipsis = n.Formals.Ellipsis
		for _, f := range n.Formals.List {
			inner.names[f.Name] = slot
			slot++
		}
		lc.formals = make([]formalCode, len(n.Formals.List))
		for i, f := range n.Formals.List {
			lc.formals[i] = formalCode{name: c.ev.intern(f.Name), pos: f.P, def: c.compileOpt(f.Default, inner)}
		}
	}
	if !lc.pattern {
		slot = 1
	}
	lc.nslots = slot
	lc.body = c.compile(n.Body, inner)
	lc.computePoolable()
	return lc
}
