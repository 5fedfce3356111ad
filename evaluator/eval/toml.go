package eval

import (
	"sort"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/castor-nix/castor/evaluator/syntax"
)

func init() {
	def1("fromTOML", true, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		return ev.fromTOML(ev.forceStringNoCtx(a, pos), pos)
	})
}

// fromTOML parses a TOML document into a set. Dates and times are an error,
// as in Nix (without the experimental parse-toml-timestamps feature).
func (ev *Evaluator) fromTOML(s string, pos syntax.Pos) Value {
	var doc map[string]any
	if _, err := toml.Decode(s, &doc); err != nil {
		ev.throw(ErrEval, pos, "while parsing a TOML string: %s", err.Error())
	}
	return ev.tomlValue(doc, pos)
}

func (ev *Evaluator) tomlValue(x any, pos syntax.Pos) Value {
	switch x := x.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		as := make([]Attr, len(keys))
		for i, k := range keys {
			as[i] = Attr{Name: ev.intern(k), Val: ev.tomlValue(x[k], pos)}
		}
		sortAttrs(as)
		return attrsValue(as)
	case []map[string]any:
		l := make([]Value, len(x))
		for i, e := range x {
			l[i] = ev.tomlValue(e, pos)
		}
		return listValue(l)
	case []any:
		l := make([]Value, len(x))
		for i, e := range x {
			l[i] = ev.tomlValue(e, pos)
		}
		return listValue(l)
	case string:
		return Str(x)
	case int64:
		return Int(x)
	case float64:
		return Float(x)
	case bool:
		return Bool(x)
	case time.Time:
		ev.throw(ErrEval, pos, "while parsing a TOML string: Dates and times are not supported")
	}
	ev.throw(ErrEval, pos, "while parsing a TOML string: unsupported value")
	return Value{}
}
