package eval

import (
	"unsafe"

	"github.com/castor-nix/castor/evaluator/syntax"
)

// call applies the function value f (in WHNF) to the lazy argument arg and
// returns the result in WHNF. pos is the call site.
func (ev *Evaluator) call(f Value, arg Value, pos syntax.Pos) Value {
	switch f.k {
	case kLambda:
		return ev.callLambda(f.closure(), arg, pos)
	case kPrimop:
		p := f.primop()
		if p.Arity == 1 {
			return ev.force(p.fn1(ev, pos, arg))
		}
		return primopAppValue(&primopApp{prim: p, args: [2]Value{arg}, n: 1})
	case kPrimopApp:
		pa := f.primopApp()
		if pa.n+1 < pa.prim.Arity {
			next := *pa
			next.args[next.n] = arg
			next.n++
			return primopAppValue(&next)
		}
		if pa.prim.Arity == 2 {
			return ev.force(pa.prim.fn2(ev, pos, pa.args[0], arg))
		}
		return ev.force(pa.prim.fn3(ev, pos, pa.args[0], pa.args[1], arg))
	case kAttrs:
		if fn := lookupAttr(f.attrs(), symFunctor); fn != nil {
			g := ev.call(ev.force(fn.Val), f, pos)
			return ev.call(g, arg, pos)
		}
	}
	ev.throw(ErrType, pos, "attempt to call something which is not a function but %s", showType(f))
	return Value{}
}

// call2 applies f to two arguments, without building a partial
// application or an intermediate closure when it can avoid it.
func (ev *Evaluator) call2(f Value, a, b Value, pos syntax.Pos) Value {
	switch f.k {
	case kPrimop:
		if p := f.primop(); p.Arity == 2 {
			return ev.force(p.fn2(ev, pos, a, b))
		}
	case kLambda:
		return ev.callCurried2(f.closure(), a, b, pos)
	}
	return ev.call(ev.call(f, a, pos), b, pos)
}

func (ev *Evaluator) callLambda(cl *Closure, arg Value, pos syntax.Pos) Value {
	lam := cl.lam
	env := ev.bindArgs(lam, cl.env, arg, pos)
	ev.pushCall(lam, pos)
	v := lam.body.eval(ev, env)
	ev.frames = ev.frames[:len(ev.frames)-1]
	if lam.poolable {
		ev.putEnv(env)
	}
	return v
}

// callCurried applies the closure cl to two arguments. When cl's body is
// itself a lambda (a: b: …), the second argument is bound directly,
// without allocating the intermediate closure.
func (ev *Evaluator) callCurried2(cl *Closure, a, b Value, pos syntax.Pos) Value {
	lam := cl.lam
	env := ev.bindArgs(lam, cl.env, a, pos)
	ev.pushCall(lam, pos)
	var v Value
	if inner, ok := lam.body.(*lambdaCode); ok {
		env2 := ev.bindArgs(inner, env, b, pos)
		ev.frames[len(ev.frames)-1].p = unsafe.Pointer(inner)
		v = inner.body.eval(ev, env2)
		ev.frames = ev.frames[:len(ev.frames)-1]
		if inner.poolable && lam.noDefaults {
			ev.putEnv(env2)
			ev.putEnv(env)
		}
		return v
	}
	v = lam.body.eval(ev, env)
	ev.frames = ev.frames[:len(ev.frames)-1]
	return ev.call(v, b, pos)
}

func (ev *Evaluator) pushCall(lam *lambdaCode, pos syntax.Pos) {
	if len(ev.frames) >= ev.maxDepth {
		ev.stackOverflow()
	}
	ev.frames = append(ev.frames, frame{kind: frCall, pos: pos, p: unsafe.Pointer(lam)})
	ev.ticks++
	if ev.ticks&0xffff == 0 {
		ev.checkCanceled()
	}
}

// bindArgs makes the environment of a call of lam (whose closure
// environment is up) with argument arg: the argument itself, or for a
// pattern the matched attributes and defaults, checking for missing and
// unexpected ones.
func (ev *Evaluator) bindArgs(lam *lambdaCode, up *Env, arg Value, pos syntax.Pos) *Env {
	var env *Env
	if lam.poolable || lam.noDefaults && lam.nslots <= maxPooledEnv && lam.nslots > 0 {
		env = ev.getEnv(up, lam.nslots)
	} else {
		env = newEnv(up, lam.nslots)
	}
	if !lam.pattern {
		env.vals[0] = arg
		return env
	}
	arg = ev.force(arg)
	if arg.k != kAttrs {
		ev.typeError(pos, arg, "a set")
	}
	i := 0
	if lam.hasArg {
		env.vals[0] = arg
		i = 1
	}
	as := arg.attrs()
	used := 0
	for j := range lam.formals {
		fm := &lam.formals[j]
		if a := lookupAttr(as, fm.name); a != nil {
			env.vals[i] = a.Val
			used++
		} else if fm.def != nil {
			env.vals[i] = ev.delay(fm.def, env)
		} else {
			ev.throw(ErrType, pos, "%s called without required argument '%s'",
				ev.describeLambda(lam), ev.syms.name(fm.name))
		}
		i++
	}
	if !lam.ellipsis && used != len(as) {
		for _, a := range ev.sortedAttrs(arg) {
			if !lam.hasFormal(a.Name) {
				var formals []string
				for _, f := range lam.formals {
					formals = append(formals, ev.syms.name(f.name))
				}
				want := ev.syms.name(a.Name)
				panic(&Error{Kind: ErrType, Pos: pos, fset: ev.fset,
					Msg:         ev.describeLambda(lam) + " called with unexpected argument '" + want + "'",
					Suggestions: bestMatches(formals, want)})
			}
		}
	}
	return env
}

func (l *lambdaCode) hasFormal(name Sym) bool {
	for i := range l.formals {
		if l.formals[i].name == name {
			return true
		}
	}
	return false
}

// stackOverflow reports exhaustion of the evaluator's depth budget, which
// is sized so that the Go stack never overflows (Go cannot recover from
// that).
func (ev *Evaluator) stackOverflow() {
	ev.throw(ErrStackOverflow, ev.currentPos(), "stack overflow (possible infinite recursion)")
}

// currentPos is the position of the innermost call or selection in
// progress, for errors raised where no better position is known.
func (ev *Evaluator) currentPos() syntax.Pos {
	for i := len(ev.frames) - 1; i >= 0; i-- {
		if f := ev.frames[i]; f.pos.IsValid() {
			return f.pos
		}
	}
	return syntax.NoPos
}

// checkCanceled stops evaluation when the context is done; calls check
// it every 65536 calls.
func (ev *Evaluator) checkCanceled() {
	if err := ev.ctx.Err(); err != nil {
		panic(&Error{Kind: ErrCanceled, Msg: "evaluation canceled: " + err.Error(), Cause: err, Pos: ev.currentPos(), fset: ev.fset})
	}
}
