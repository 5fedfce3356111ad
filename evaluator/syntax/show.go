package syntax

import (
	"math"
	"sort"
	"strconv"
	"strings"
)

// Show prints an expression the way Nix 2.8 prints its AST (in
// `nix-instantiate --parse` and in messages such as "assertion '…'
// failed"): fully parenthesised, attributes sorted by name.
func Show(n Node) string {
	var b strings.Builder
	show(&b, n)
	return b.String()
}

// QuoteString prints s as a Nix string literal, escaping ", \, newlines,
// carriage returns, tabs and "${".
func QuoteString(s string) string {
	var b strings.Builder
	writeQuoted(&b, s)
	return b.String()
}

// QuoteAttrName prints an attribute name that needs quotes as Nix 2.8's
// value printer does: like QuoteString, but every '$' is escaped.
func QuoteAttrName(s string) string {
	var b strings.Builder
	writeQuotedAll(&b, s, true)
	return b.String()
}

func writeQuoted(b *strings.Builder, s string) { writeQuotedAll(b, s, false) }

func writeQuotedAll(b *strings.Builder, s string, allDollars bool) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString("\\n")
		case c == '\r':
			b.WriteString("\\r")
		case c == '\t':
			b.WriteString("\\t")
		case c == '$' && (allDollars || i+1 < len(s) && s[i+1] == '{'):
			b.WriteString("\\$")
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// FormatFloat prints a float as C++'s ostream does by default (%g with six
// significant digits), which is how Nix prints floats.
func FormatFloat(f float64) string {
	s := strconv.FormatFloat(f, 'g', 6, 64)
	switch s {
	case "+Inf":
		return "inf"
	case "-Inf":
		return "-inf"
	case "NaN":
		if math.Signbit(f) {
			return "-nan"
		}
		return "nan"
	}
	// Go writes exponents with at least two digits, like C.
	return s
}

func showAttrPath(b *strings.Builder, path []AttrName) {
	for i, a := range path {
		if i > 0 {
			b.WriteByte('.')
		}
		if a.Expr != nil {
			b.WriteString("\"${")
			show(b, a.Expr)
			b.WriteString("}\"")
		} else {
			b.WriteString(a.Name)
		}
	}
}

func sortedDefs(a *Attrs) []*AttrDef {
	defs := append([]*AttrDef(nil), a.Defs...)
	sort.Slice(defs, func(i, j int) bool { return defs[i].Name < defs[j].Name })
	return defs
}

func show(b *strings.Builder, n Node) {
	switch n := n.(type) {
	case *Int:
		b.WriteString(strconv.FormatInt(n.V, 10))
	case *Float:
		b.WriteString(FormatFloat(n.V))
	case *String:
		writeQuoted(b, n.V)
	case *Path:
		b.WriteString(n.V)
	case *Var:
		b.WriteString(n.Name)
	case *CurPos:
		b.WriteString("__curPos")
	case *Select:
		b.WriteByte('(')
		show(b, n.E)
		b.WriteString(").")
		showAttrPath(b, n.Path)
		if n.Default != nil {
			b.WriteString(" or (")
			show(b, n.Default)
			b.WriteByte(')')
		}
	case *HasAttr:
		b.WriteString("((")
		show(b, n.E)
		b.WriteString(") ? ")
		showAttrPath(b, n.Path)
		b.WriteByte(')')
	case *Attrs:
		if n.Rec {
			b.WriteString("rec ")
		}
		b.WriteString("{ ")
		for _, d := range sortedDefs(n) {
			if d.Inherited {
				b.WriteString("inherit " + d.Name + " ; ")
			} else {
				b.WriteString(d.Name + " = ")
				show(b, d.Value)
				b.WriteString("; ")
			}
		}
		for _, d := range n.Dyn {
			b.WriteString("\"${")
			show(b, d.Name)
			b.WriteString("}\" = ")
			show(b, d.Value)
			b.WriteString("; ")
		}
		b.WriteByte('}')
	case *List:
		b.WriteString("[ ")
		for _, e := range n.Elems {
			b.WriteByte('(')
			show(b, e)
			b.WriteString(") ")
		}
		b.WriteByte(']')
	case *Lambda:
		b.WriteByte('(')
		if n.Formals != nil {
			b.WriteString("{ ")
			for i, f := range n.Formals.List {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(f.Name)
				if f.Default != nil {
					b.WriteString(" ? ")
					show(b, f.Default)
				}
			}
			if n.Formals.Ellipsis {
				if len(n.Formals.List) > 0 {
					b.WriteString(", ")
				}
				b.WriteString("...")
			}
			b.WriteString(" }")
			if n.Arg != "" {
				b.WriteString(" @ ")
			}
		}
		b.WriteString(n.Arg)
		b.WriteString(": ")
		show(b, n.Body)
		b.WriteByte(')')
	case *Call:
		b.WriteByte('(')
		show(b, n.Fn)
		for _, a := range n.Args {
			b.WriteByte(' ')
			show(b, a)
		}
		b.WriteByte(')')
	case *Let:
		b.WriteString("(let ")
		for _, d := range sortedDefs(n.Binds) {
			if d.Inherited {
				b.WriteString("inherit " + d.Name + "; ")
			} else {
				b.WriteString(d.Name + " = ")
				show(b, d.Value)
				b.WriteString("; ")
			}
		}
		b.WriteString("in ")
		show(b, n.Body)
		b.WriteByte(')')
	case *With:
		b.WriteString("(with ")
		show(b, n.Attrs)
		b.WriteString("; ")
		show(b, n.Body)
		b.WriteByte(')')
	case *If:
		b.WriteString("(if ")
		show(b, n.Cond)
		b.WriteString(" then ")
		show(b, n.Then)
		b.WriteString(" else ")
		show(b, n.Else)
		b.WriteByte(')')
	case *Assert:
		b.WriteString("assert ")
		show(b, n.Cond)
		b.WriteString("; ")
		show(b, n.Body)
	case *Not:
		b.WriteString("(! ")
		show(b, n.E)
		b.WriteByte(')')
	case *BinOp:
		b.WriteByte('(')
		show(b, n.L)
		b.WriteString(" " + n.Op.String() + " ")
		show(b, n.R)
		b.WriteByte(')')
	case *ConcatStrings:
		b.WriteByte('(')
		for i, p := range n.Parts {
			if i > 0 {
				b.WriteString(" + ")
			}
			show(b, p.E)
		}
		b.WriteByte(')')
	}
}
