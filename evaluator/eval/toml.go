package eval

import (
	"github.com/castor-nix/castor/evaluator/syntax"
)

func init() {
	def1("fromTOML", true, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		return ev.fromTOML(ev.forceStringNoCtx(a, pos), pos)
	})
}

func (ev *Evaluator) fromTOML(s string, pos syntax.Pos) Value {
	ev.throw(ErrEval, pos, "fromTOML: not implemented yet")
	return Value{}
}
