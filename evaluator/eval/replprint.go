package eval

import (
	"strconv"
	"strings"

	"github.com/castor-nix/castor/evaluator/syntax"
)

// ReplString renders v as Nix's REPL does: forcing values as it goes,
// showing sets and lists maxDepth levels deep ({ ... } below that),
// functions as «lambda @ file:line:col», and errors inside a value as
// «error: …» rather than failing. The top-level value itself must force
// without error (force it first with Force).
func (ev *Evaluator) ReplString(v Value, maxDepth int) string {
	var b strings.Builder
	ev.replPrint(&b, v, maxDepth)
	return b.String()
}

// ShowType describes v's type as Nix's messages do ("an integer").
func (ev *Evaluator) ShowType(v Value) string { return showType(v) }

func (ev *Evaluator) tryForce(v Value) (out Value, err *Error) {
	mark := len(ev.frames)
	defer func() {
		if r := recover(); r != nil {
			err = ev.recovered(r, mark)
		}
	}()
	return ev.force(v), nil
}

func (ev *Evaluator) replPrint(b *strings.Builder, v Value, depth int) {
	ev.enter()
	ev.replPrintLevel(b, v, depth)
	ev.leave()
}

func (ev *Evaluator) replPrintLevel(b *strings.Builder, v Value, depth int) {
	v, err := ev.tryForce(v)
	if err != nil {
		b.WriteString("«error: " + err.Msg + "»")
		return
	}
	switch v.k {
	case kAttrs:
		if ev.isDerivation(v) {
			if a := lookupAttr(v.attrs(), symDrvPath); a != nil {
				if dp, err := ev.tryForce(a.Val); err == nil && dp.k == kString {
					b.WriteString("«derivation " + dp.str() + "»")
					return
				}
			}
			b.WriteString("«derivation ???»")
			return
		}
		if depth <= 0 {
			b.WriteString("{ ... }")
			return
		}
		b.WriteString("{ ")
		for _, a := range ev.sortedAttrs(v) {
			name := ev.syms.name(a.Name)
			if isVarName(name) {
				b.WriteString(name)
			} else {
				b.WriteString(syntax.QuoteAttrName(name))
			}
			b.WriteString(" = ")
			ev.replPrint(b, a.Val, depth-1)
			b.WriteString("; ")
		}
		b.WriteString("}")
	case kList:
		if depth <= 0 {
			b.WriteString("[ ... ]")
			return
		}
		b.WriteString("[ ")
		for _, e := range v.list() {
			ev.replPrint(b, e, depth-1)
			b.WriteString(" ")
		}
		b.WriteString("]")
	case kLambda:
		b.WriteString("«lambda @ " + ev.fset.Position(v.closure().lam.pos).Inline() + "»")
	case kPrimop:
		b.WriteString("«primop»")
	case kPrimopApp:
		b.WriteString("«primop-app»")
	case kFloat:
		b.WriteString(syntax.FormatFloat(v.float()))
	case kInt:
		b.WriteString(strconv.FormatInt(v.int(), 10))
	default:
		b.WriteString(ev.String(v))
	}
}

// AttrNames returns the names of a set value, sorted; nil if v is not a
// set.
func (ev *Evaluator) AttrNames(v Value) []string {
	if v.k != kAttrs {
		return nil
	}
	return ev.attrNamesSorted(v)
}

// Attr returns the (lazy) value of attribute name of the set v.
func (ev *Evaluator) Attr(v Value, name string) (Value, bool) {
	if v.k != kAttrs {
		return Value{}, false
	}
	a := lookupAttr(v.attrs(), ev.intern(name))
	if a == nil {
		return Value{}, false
	}
	return a.Val, true
}
