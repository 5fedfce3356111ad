package eval

// Environments of calls whose body cannot capture them are recycled.
//
// A call's environment is captured when evaluating the body stores it in
// a heap object that may outlive the call: a thunk (for a lazy argument,
// list element or attribute that is more than a variable or constant), a
// closure, or the environment of a let, rec set or with. When a lambda's
// body does none of that (typical of comparators and fold steps such as
// a: b: a < b or acc: x: acc + x), nothing refers to the environment once
// the call returns, and the next call may reuse it. The analysis is done
// once at compile time (poolable); an error unwinding past a call simply
// leaves its environment to the garbage collector.

const maxPooledEnv = 4

// trivial reports whether delaying c needs no thunk (see delay).
func trivial(c code) bool {
	switch c.(type) {
	case *constCode, *varCode, *globalThunkCode:
		return true
	}
	return false
}

// captures reports whether evaluating c may store the current environment
// in an object that outlives the evaluation.
func captures(c code) bool {
	switch c := c.(type) {
	case *constCode, *varCode, *withVarCode, *curPosCode, *globalThunkCode:
		return false
	case *attrsCode:
		for i := range c.static {
			if !trivial(c.static[i].val) {
				return true
			}
		}
		for _, d := range c.dyn {
			if captures(d.name) || !trivial(d.val) {
				return true
			}
		}
		return false
	case *listCode:
		for _, e := range c.elems {
			if !trivial(e) {
				return true
			}
		}
		return false
	case *callCode:
		if captures(c.fn) {
			return true
		}
		for _, a := range c.args {
			if !trivial(a) {
				return true
			}
		}
		return false
	case *selectCode:
		if captures(c.e) || c.def != nil && captures(c.def) {
			return true
		}
		return keysCapture(c.path)
	case *hasAttrCode:
		return captures(c.e) || keysCapture(c.path)
	case *ifCode:
		return captures(c.cond) || captures(c.then) || captures(c.else_)
	case *assertCode:
		return captures(c.cond) || captures(c.body)
	case *notCode:
		return captures(c.e)
	case *boolOpCode:
		return captures(c.l) || captures(c.r)
	case *eqCode:
		return captures(c.l) || captures(c.r)
	case *updateCode:
		return captures(c.l) || captures(c.r)
	case *concatListsCode:
		return captures(c.l) || captures(c.r)
	case *binArithCode:
		return captures(c.l) || captures(c.r)
	case *plusCode:
		return partsCapture(c.parts)
	case *concatStringsCode:
		return partsCapture(c.parts)
	}
	// Lambdas, let, rec sets, with and anything unknown: assume so.
	return true
}

func keysCapture(path []attrKey) bool {
	for _, k := range path {
		if k.dyn != nil && captures(k.dyn) {
			return true
		}
	}
	return false
}

func partsCapture(parts []code) bool {
	for _, p := range parts {
		if captures(p) {
			return true
		}
	}
	return false
}

// computePoolable decides, after compiling lam, whether its call
// environments can be recycled.
func (lam *lambdaCode) computePoolable() {
	if lam.nslots == 0 || lam.nslots > maxPooledEnv {
		return
	}
	for _, f := range lam.formals {
		if f.def != nil {
			return
		}
	}
	lam.noDefaults = true
	lam.poolable = !captures(lam.body)
}

func (ev *Evaluator) getEnv(up *Env, n int) *Env {
	p := &ev.envPool[n]
	if k := len(*p); k > 0 {
		e := (*p)[k-1]
		*p = (*p)[:k-1]
		e.up = up
		return e
	}
	return newEnv(up, n)
}

func (ev *Evaluator) putEnv(e *Env) {
	clear(e.vals)
	e.up = nil
	p := &ev.envPool[len(e.vals)]
	if len(*p) < 64 {
		*p = append(*p, e)
	}
}
