package eval

import (
	"math"
	"strconv"
	"strings"

	"github.com/castor-nix/castor/evaluator/syntax"
)

// concatStringsCode is string interpolation and `+`: see Nix's
// ExprConcatStrings. Without force, the first operand's type decides the
// result: integers and floats add, a path stays a path (and nothing is
// copied to the store), anything else makes a string.
type concatStringsCode struct {
	pos     syntax.Pos
	force   bool
	parts   []code
	partPos []syntax.Pos
}

func (c *concatStringsCode) eval(ev *Evaluator, env *Env) Value {
	return c.run(ev, env, Value{}, Value{}, 0)
}

// run evaluates the parts; the first npre of them were already evaluated
// by the caller into pre0 and pre1.
func (c *concatStringsCode) run(ev *Evaluator, env *Env, pre0, pre1 Value, npre int) Value {
	var ctx ctxBuilder
	var small [8]string
	strs := small[:0]
	total := 0
	first := !c.force
	firstType := kString
	var n int64
	var nf float64
	for i, part := range c.parts {
		var v Value
		switch {
		case i == 0 && npre > 0:
			v = pre0
		case i == 1 && npre > 1:
			v = pre1
		default:
			v = part.eval(ev, env)
		}
		if first {
			firstType = v.k
		}
		switch firstType {
		case kInt:
			switch v.k {
			case kInt:
				n = ev.addInts(n, v.int(), c.partPos[i])
			case kFloat:
				firstType = kFloat
				nf = float64(n) + v.float()
			default:
				ev.throw(ErrEval, c.partPos[i], "cannot add %s to an integer", showType(v))
			}
		case kFloat:
			switch v.k {
			case kInt:
				nf += float64(v.int())
			case kFloat:
				nf += v.float()
			default:
				ev.throw(ErrEval, c.partPos[i], "cannot add %s to a float", showType(v))
			}
		default:
			s := ev.coerceToString(c.partPos[i], v, &ctx, false, firstType == kString, !first)
			strs = append(strs, s)
			total += len(s)
		}
		first = false
	}
	switch firstType {
	case kInt:
		return Int(n)
	case kFloat:
		return Float(nf)
	}
	var s string
	if len(strs) == 1 {
		s = strs[0]
	} else {
		var b strings.Builder
		b.Grow(total)
		for _, p := range strs {
			b.WriteString(p)
		}
		s = b.String()
	}
	if firstType == kPath {
		if len(ctx.result()) > 0 {
			ev.throw(ErrEval, c.pos, "a string that refers to a store path cannot be appended to a path")
		}
		return Path(syntax.CanonPath(s))
	}
	return StrCtx(s, ctx.result())
}

// coerceToString converts v to a string as Nix's coerceToString does.
// coerceMore also converts Booleans, numbers, null and lists (toString);
// copyToStore turns paths into store paths (adding them to the context).
func (ev *Evaluator) coerceToString(pos syntax.Pos, v Value, ctx *ctxBuilder, coerceMore, copyToStore, canonicalize bool) string {
	v = ev.force(v)
	switch v.k {
	case kString:
		ctx.add(v.ctx())
		return v.str()
	case kPath:
		p := v.str()
		if canonicalize {
			p = syntax.CanonPath(p)
		}
		if copyToStore {
			p = ev.copyPathToStore(pos, p)
			ctx.addPath(p)
		}
		return p
	case kAttrs:
		if f := lookupAttr(v.attrs(), symToString); f != nil {
			r := ev.call(ev.force(f.Val), v, pos)
			return ev.coerceToString(pos, r, ctx, coerceMore, copyToStore, true)
		}
		if o := lookupAttr(v.attrs(), symOutPath); o != nil {
			return ev.coerceToString(pos, o.Val, ctx, coerceMore, copyToStore, true)
		}
		ev.throw(ErrType, pos, "cannot coerce a set to a string")
	}
	if coerceMore {
		switch v.k {
		case kBool:
			if v.bool() {
				return "1"
			}
			return ""
		case kInt:
			return strconv.FormatInt(v.int(), 10)
		case kFloat:
			return formatFloatFixed(v.float())
		case kNull:
			return ""
		case kList:
			var b strings.Builder
			l := v.list()
			for i, e := range l {
				ev.enter()
				b.WriteString(ev.coerceToString(pos, e, ctx, coerceMore, copyToStore, true))
				ev.leave()
				if i < len(l)-1 {
					e = ev.force(e)
					if e.k != kList || e.n != 0 {
						b.WriteByte(' ')
					}
				}
			}
			return b.String()
		}
	}
	ev.throw(ErrType, pos, "cannot coerce %s to a string", showType(v))
	return ""
}

// formatFloatFixed is C++'s std::to_string(double): "%f".
func formatFloatFixed(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		if math.Signbit(f) {
			return "-nan"
		}
		return "nan"
	}
	return strconv.FormatFloat(f, 'f', 6, 64)
}

func (ev *Evaluator) forceString(v Value, pos syntax.Pos) Value {
	v = ev.force(v)
	if v.k != kString {
		ev.typeError(pos, v, "a string")
	}
	return v
}

// forceStringNoCtx returns the bytes of a string that must not refer to
// store paths.
func (ev *Evaluator) forceStringNoCtx(v Value, pos syntax.Pos) string {
	v = ev.forceString(v, pos)
	if c := v.ctx(); len(c) > 0 {
		ev.throw(ErrEval, pos, "the string '%s' is not allowed to refer to a store path (such as '%s')", v.str(), c[0])
	}
	return v.str()
}

// coerceToPath is Nix's coerceToPath: a string (or coercible value) that
// must be an absolute path.
func (ev *Evaluator) coerceToPath(pos syntax.Pos, v Value, ctx *ctxBuilder) string {
	s := ev.coerceToString(pos, v, ctx, false, false, true)
	if s == "" || s[0] != '/' {
		ev.throw(ErrEval, pos, "string '%s' doesn't represent an absolute path", s)
	}
	return s
}
