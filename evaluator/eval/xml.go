package eval

import (
	"sort"
	"strconv"

	"github.com/castor-nix/castor/evaluator/syntax"
)

// xmlWriter reproduces Nix's XMLWriter with indentation: attributes sorted
// by name, two spaces per level, one element per line.
type xmlWriter struct {
	w       byteWriter
	pending []string
}

type xmlAttr struct{ k, v string }

func newXMLWriter(w byteWriter) *xmlWriter {
	w.WriteString("<?xml version='1.0' encoding='utf-8'?>\n")
	return &xmlWriter{w: w}
}

func (x *xmlWriter) indent(depth int) {
	for i := 0; i < depth; i++ {
		x.w.WriteString("  ")
	}
}

func (x *xmlWriter) attrs(as []xmlAttr) {
	sort.Slice(as, func(i, j int) bool { return as[i].k < as[j].k })
	for _, a := range as {
		x.w.WriteString(" " + a.k + "=\"")
		for i := 0; i < len(a.v); i++ {
			switch c := a.v[i]; c {
			case '"':
				x.w.WriteString("&quot;")
			case '<':
				x.w.WriteString("&lt;")
			case '>':
				x.w.WriteString("&gt;")
			case '&':
				x.w.WriteString("&amp;")
			case '\n':
				x.w.WriteString("&#xA;")
			default:
				x.w.WriteByte(c)
			}
		}
		x.w.WriteByte('"')
	}
}

func (x *xmlWriter) open(name string, as ...xmlAttr) {
	x.indent(len(x.pending))
	x.w.WriteString("<" + name)
	x.attrs(as)
	x.w.WriteString(">\n")
	x.pending = append(x.pending, name)
}

func (x *xmlWriter) close() {
	n := x.pending[len(x.pending)-1]
	x.pending = x.pending[:len(x.pending)-1]
	x.indent(len(x.pending))
	x.w.WriteString("</" + n + ">\n")
}

func (x *xmlWriter) empty(name string, as ...xmlAttr) {
	x.indent(len(x.pending))
	x.w.WriteString("<" + name)
	x.attrs(as)
	x.w.WriteString(" />\n")
}

// writeXML writes v as Nix's printValueAsXML does (nix-instantiate --xml
// and builtins.toXML), collecting string contexts into ctx.
func (ev *Evaluator) writeXML(w byteWriter, v Value, strict, location bool, ctx *ctxBuilder) {
	x := newXMLWriter(w)
	x.open("expr")
	drvsSeen := map[string]bool{}
	ev.xmlValue(x, v, strict, location, ctx, drvsSeen, syntax.NoPos)
	x.close()
}

func (ev *Evaluator) xmlPos(p syntax.Pos) []xmlAttr {
	pos := ev.fset.Position(p)
	if !pos.IsValid() {
		return nil
	}
	file := pos.File.Path
	if file == "" {
		file = string(pos.File.Src)
	}
	return []xmlAttr{{"path", file}, {"line", strconv.Itoa(pos.Line)}, {"column", strconv.Itoa(pos.Column)}}
}

func (ev *Evaluator) xmlAttrs(x *xmlWriter, v Value, strict, location bool, ctx *ctxBuilder, drvsSeen map[string]bool) {
	for _, a := range ev.sortedAttrs(v) {
		as := []xmlAttr{{"name", ev.syms.name(a.Name)}}
		if location && a.Pos.IsValid() {
			as = append(as, ev.xmlPos(a.Pos)...)
		}
		x.open("attr", as...)
		ev.xmlValue(x, a.Val, strict, location, ctx, drvsSeen, a.Pos)
		x.close()
	}
}

func (ev *Evaluator) xmlValue(x *xmlWriter, v Value, strict, location bool, ctx *ctxBuilder, drvsSeen map[string]bool, pos syntax.Pos) {
	ev.enter()
	ev.xmlValueLevel(x, v, strict, location, ctx, drvsSeen, pos)
	ev.leave()
}

func (ev *Evaluator) xmlValueLevel(x *xmlWriter, v Value, strict, location bool, ctx *ctxBuilder, drvsSeen map[string]bool, pos syntax.Pos) {
	if strict {
		v = ev.force(v)
	} else if v.k == kThunk && v.thunk().code == nil {
		v = v.thunk().val
	}
	switch v.k {
	case kInt:
		x.empty("int", xmlAttr{"value", strconv.FormatInt(v.int(), 10)})
	case kBool:
		b := "false"
		if v.bool() {
			b = "true"
		}
		x.empty("bool", xmlAttr{"value", b})
	case kString:
		ctx.add(v.ctx())
		x.empty("string", xmlAttr{"value", v.str()})
	case kPath:
		x.empty("path", xmlAttr{"value", v.str()})
	case kNull:
		x.empty("null")
	case kAttrs:
		if ev.isDerivation(v) {
			var as []xmlAttr
			drvPath := ""
			if a := lookupAttr(v.attrs(), symDrvPath); a != nil {
				dv := a.Val
				if strict {
					dv = ev.force(dv)
				}
				if dv.k == kString {
					drvPath = dv.str()
					as = append(as, xmlAttr{"drvPath", drvPath})
				}
			}
			if a := lookupAttr(v.attrs(), symOutPath); a != nil {
				ov := a.Val
				if strict {
					ov = ev.force(ov)
				}
				if ov.k == kString {
					as = append(as, xmlAttr{"outPath", ov.str()})
				}
			}
			x.open("derivation", as...)
			if drvPath != "" && !drvsSeen[drvPath] {
				drvsSeen[drvPath] = true
				ev.xmlAttrs(x, v, strict, location, ctx, drvsSeen)
			} else {
				x.empty("repeated")
			}
			x.close()
			return
		}
		x.open("attrs")
		ev.xmlAttrs(x, v, strict, location, ctx, drvsSeen)
		x.close()
	case kList:
		x.open("list")
		for _, e := range v.list() {
			ev.xmlValue(x, e, strict, location, ctx, drvsSeen, pos)
		}
		x.close()
	case kLambda:
		lam := v.closure().lam
		var as []xmlAttr
		if location {
			as = ev.xmlPos(lam.pos)
		}
		x.open("function", as...)
		if lam.pattern {
			var pa []xmlAttr
			if lam.hasArg {
				pa = append(pa, xmlAttr{"name", ev.syms.name(lam.arg)})
			}
			if lam.ellipsis {
				pa = append(pa, xmlAttr{"ellipsis", "1"})
			}
			x.open("attrspat", pa...)
			for _, n := range ev.formalNames(lam) {
				x.empty("attr", xmlAttr{"name", n})
			}
			x.close()
		} else {
			x.empty("varpat", xmlAttr{"name", ev.syms.name(lam.arg)})
		}
		x.close()
	case kFloat:
		x.empty("float", xmlAttr{"value", syntax.FormatFloat(v.float())})
	default:
		x.empty("unevaluated")
	}
}

// formalNames returns a lambda's formal names in lexicographic order.
func (ev *Evaluator) formalNames(lam *lambdaCode) []string {
	names := make([]string, len(lam.formals))
	for i, f := range lam.formals {
		names[i] = ev.syms.name(f.name)
	}
	sort.Strings(names)
	return names
}

// isDerivation reports whether v is a set with type = "derivation".
func (ev *Evaluator) isDerivation(v Value) bool {
	if v.k != kAttrs {
		return false
	}
	a := lookupAttr(v.attrs(), symType)
	if a == nil {
		return false
	}
	t := ev.force(a.Val)
	return t.k == kString && t.str() == "derivation"
}
