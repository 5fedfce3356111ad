package eval

import (
	"math"

	"github.com/castor-nix/castor/evaluator/syntax"
)

// Arithmetic follows Nix, except that integer overflow is an error (as in
// Nix 2.25 and later) rather than silent wrap-around (Nix 2.8).

func (ev *Evaluator) forceInt(v Value, pos syntax.Pos) int64 {
	v = ev.force(v)
	if v.k != kInt {
		ev.typeError(pos, v, "an integer")
	}
	return v.int()
}

func (ev *Evaluator) forceFloat(v Value, pos syntax.Pos) float64 {
	v = ev.force(v)
	switch v.k {
	case kInt:
		return float64(v.int())
	case kFloat:
		return v.float()
	}
	ev.typeError(pos, v, "a float")
	return 0
}

func (ev *Evaluator) addInts(a, b int64, pos syntax.Pos) int64 {
	s := a + b
	if (s > a) != (b > 0) {
		ev.throw(ErrEval, pos, "integer overflow in adding %d + %d", a, b)
	}
	return s
}

func (ev *Evaluator) subInts(a, b int64, pos syntax.Pos) int64 {
	s := a - b
	if (s < a) != (b > 0) {
		ev.throw(ErrEval, pos, "integer overflow in subtracting %d - %d", a, b)
	}
	return s
}

func (ev *Evaluator) mulInts(a, b int64, pos syntax.Pos) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	s := a * b
	if s/b != a || a == -1 && b == math.MinInt64 || b == -1 && a == math.MinInt64 {
		ev.throw(ErrEval, pos, "integer overflow in multiplying %d * %d", a, b)
	}
	return s
}

func (ev *Evaluator) arithSub(a, b Value, pos syntax.Pos) Value {
	a, b = ev.force(a), ev.force(b)
	if a.k == kInt && b.k == kInt {
		return Int(ev.subInts(a.int(), b.int(), pos))
	}
	if a.k == kFloat || b.k == kFloat {
		return Float(ev.forceFloat(a, pos) - ev.forceFloat(b, pos))
	}
	return Int(ev.subInts(ev.forceInt(a, pos), ev.forceInt(b, pos), pos))
}

func (ev *Evaluator) arithMul(a, b Value, pos syntax.Pos) Value {
	a, b = ev.force(a), ev.force(b)
	if a.k == kInt && b.k == kInt {
		return Int(ev.mulInts(a.int(), b.int(), pos))
	}
	if a.k == kFloat || b.k == kFloat {
		return Float(ev.forceFloat(a, pos) * ev.forceFloat(b, pos))
	}
	return Int(ev.mulInts(ev.forceInt(a, pos), ev.forceInt(b, pos), pos))
}

func (ev *Evaluator) arithDiv(a, b Value, pos syntax.Pos) Value {
	a, b = ev.force(a), ev.force(b)
	if ev.forceFloat(b, pos) == 0 {
		ev.throw(ErrEval, pos, "division by zero")
	}
	if a.k == kFloat || b.k == kFloat {
		return Float(ev.forceFloat(a, pos) / ev.forceFloat(b, pos))
	}
	i1, i2 := ev.forceInt(a, pos), ev.forceInt(b, pos)
	if i1 == math.MinInt64 && i2 == -1 {
		ev.throw(ErrEval, pos, "overflow in integer division")
	}
	return Int(i1 / i2)
}

func (ev *Evaluator) arithAdd(a, b Value, pos syntax.Pos) Value {
	a, b = ev.force(a), ev.force(b)
	if a.k == kInt && b.k == kInt {
		return Int(ev.addInts(a.int(), b.int(), pos))
	}
	if a.k == kFloat || b.k == kFloat {
		return Float(ev.forceFloat(a, pos) + ev.forceFloat(b, pos))
	}
	return Int(ev.addInts(ev.forceInt(a, pos), ev.forceInt(b, pos), pos))
}

// lessThan is Nix's `<`: numbers (mixed int/float), strings and paths by
// bytes, lists lexicographically.
func (ev *Evaluator) lessThan(a, b Value, pos syntax.Pos) bool {
	a, b = ev.force(a), ev.force(b)
	switch {
	case a.k == kInt && b.k == kInt:
		return a.int() < b.int()
	case a.k == kFloat && b.k == kInt:
		return a.float() < float64(b.int())
	case a.k == kInt && b.k == kFloat:
		return float64(a.int()) < b.float()
	}
	if a.k != b.k {
		ev.throw(ErrEval, pos, "cannot compare %s with %s", showType(a), showType(b))
	}
	switch a.k {
	case kFloat:
		return a.float() < b.float()
	case kString, kPath:
		return a.str() < b.str()
	case kList:
		x, y := a.list(), b.list()
		ev.enter()
		less := false
		for i := 0; ; i++ {
			if i == len(y) {
				break
			}
			if i == len(x) {
				less = true
				break
			}
			if !ev.equal(x[i], y[i], pos) {
				less = ev.lessThan(x[i], y[i], pos)
				break
			}
		}
		ev.leave()
		return less
	}
	ev.throw(ErrEval, pos, "cannot compare %s with %s", showType(a), showType(b))
	return false
}

// binArithCode is an arithmetic or comparison operator whose builtin
// (__sub, __mul, __div, __lessThan) was not shadowed.
type binArithCode struct {
	pos  syntax.Pos
	op   byte // '-', '*', '/', '<'
	l, r code
}

func (c *binArithCode) eval(ev *Evaluator, env *Env) Value {
	a := c.l.eval(ev, env)
	b := c.r.eval(ev, env)
	if a.k == kInt && b.k == kInt {
		x, y := a.int(), b.int()
		switch c.op {
		case '-':
			s := x - y
			if (s < x) == (y > 0) {
				return Int(s)
			}
		case '<':
			return Bool(x < y)
		}
	}
	switch c.op {
	case '-':
		return ev.arithSub(a, b, c.pos)
	case '*':
		return ev.arithMul(a, b, c.pos)
	case '/':
		return ev.arithDiv(a, b, c.pos)
	default:
		return Bool(ev.lessThan(a, b, c.pos))
	}
}

// plusCode is a + b (Nix's ExprConcatStrings with two operands), with a
// fast path for integers.
type plusCode struct {
	concatStringsCode
}

func (c *plusCode) eval(ev *Evaluator, env *Env) Value {
	a := c.parts[0].eval(ev, env)
	b := c.parts[1].eval(ev, env)
	if a.k == kInt && b.k == kInt {
		x, y := a.int(), b.int()
		s := x + y
		if (s > x) == (y > 0) || y == 0 {
			return Int(s)
		}
		ev.throw(ErrEval, c.pos, "integer overflow in adding %d + %d", x, y)
	}
	return c.run(ev, env, a, b, 2)
}
