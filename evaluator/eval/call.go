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

// call2 applies f to two arguments, without building a partial application
// when f is a binary primop.
func (ev *Evaluator) call2(f Value, a, b Value, pos syntax.Pos) Value {
	if f.k == kPrimop {
		if p := f.primop(); p.Arity == 2 {
			return ev.force(p.fn2(ev, pos, a, b))
		}
	}
	return ev.call(ev.call(f, a, pos), b, pos)
}

func (ev *Evaluator) callLambda(cl *Closure, arg Value, pos syntax.Pos) Value {
	lam := cl.lam
	env := newEnv(cl.env, lam.nslots)
	if !lam.pattern {
		env.vals[0] = arg
	} else {
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
					ev.throw(ErrType, pos, "%s called with unexpected argument '%s'",
						ev.describeLambda(lam), ev.syms.name(a.Name))
				}
			}
		}
	}
	if len(ev.frames) >= ev.maxDepth {
		ev.stackOverflow()
	}
	ev.frames = append(ev.frames, frame{kind: frCall, pos: pos, p: unsafe.Pointer(lam)})
	ev.tick()
	v := lam.body.eval(ev, env)
	ev.frames = ev.frames[:len(ev.frames)-1]
	return v
}

func (l *lambdaCode) hasFormal(name Sym) bool {
	for i := range l.formals {
		if l.formals[i].name == name {
			return true
		}
	}
	return false
}

// applyCode is the suspended application f x that builtins such as map
// and genList put in their results.
type applyCode struct {
	f, x Value
	pos  syntax.Pos
}

func (c *applyCode) eval(ev *Evaluator, _ *Env) Value {
	return ev.call(ev.force(c.f), c.x, c.pos)
}

// lazyApply returns the thunk of f x.
func (ev *Evaluator) lazyApply(f, x Value, pos syntax.Pos) Value {
	return thunkValue(&Thunk{code: &applyCode{f: f, x: x, pos: pos}})
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

// tick counts calls and checks for cancellation now and then.
func (ev *Evaluator) tick() {
	ev.ticks++
	if ev.ticks&0xffff == 0 && ev.ctx.Err() != nil {
		panic(&Error{Kind: ErrCanceled, Msg: "evaluation canceled: " + ev.ctx.Err().Error(), Cause: ev.ctx.Err(), Pos: ev.currentPos(), fset: ev.fset})
	}
}
