package eval

import (
	"bufio"
	"io"
	"strconv"
	"unsafe"

	"github.com/castor-nix/castor/evaluator/syntax"
)

// PrintOptions select the output format of Print.
type PrintOptions struct {
	// Strict forces the value completely before printing (--strict).
	Strict bool
	// JSON prints JSON (--json), XML prints XML (--xml).
	JSON, XML bool
	// Location adds source locations to XML output (the opposite of
	// --no-location).
	Location bool
}

// Print writes v as `nix-instantiate --eval` does: followed by a newline,
// except JSON (which Nix 2.8 ends without one).
func (ev *Evaluator) Print(w io.Writer, v Value, opts PrintOptions) (err error) {
	defer ev.recoverTo(&err)
	bw := bufio.NewWriter(w)
	switch {
	case opts.XML:
		var ctx ctxBuilder
		ev.writeXML(bw, v, opts.Strict, opts.Location, &ctx)
	case opts.JSON:
		var ctx ctxBuilder
		if opts.Strict {
			v = ev.force(v)
		}
		b := ev.appendJSON(nil, v, opts.Strict, syntax.NoPos, &ctx)
		// nix-instantiate --json ends without a newline.
		bw.Write(b)
	default:
		if opts.Strict {
			ev.forceDeep(v)
		}
		p := printer{ev: ev, w: bw, seen: map[unsafe.Pointer]bool{}}
		p.print(v)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// String renders v as the non-strict printer does, without forcing
// anything.
func (ev *Evaluator) String(v Value) string {
	var b stringsBuilder
	p := printer{ev: ev, w: &b, seen: map[unsafe.Pointer]bool{}}
	p.print(v)
	return string(b)
}

type stringsBuilder []byte

func (b *stringsBuilder) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }
func (b *stringsBuilder) WriteString(s string) (int, error) {
	*b = append(*b, s...)
	return len(s), nil
}
func (b *stringsBuilder) WriteByte(c byte) error { *b = append(*b, c); return nil }

type byteWriter interface {
	io.Writer
	io.StringWriter
	io.ByteWriter
}

type printer struct {
	ev   *Evaluator
	w    byteWriter
	seen map[unsafe.Pointer]bool
}

var keywordNames = map[string]bool{
	"if": true, "then": true, "else": true, "assert": true, "with": true,
	"let": true, "in": true, "rec": true, "inherit": true,
}

// isVarName reports whether an attribute name prints without quotes.
func isVarName(s string) bool {
	if s == "" || keywordNames[s] {
		return false
	}
	c := s[0]
	if c >= '0' && c <= '9' || c == '-' || c == '\'' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '\'') {
			return false
		}
	}
	return true
}

func (p *printer) print(v Value) {
	p.ev.enter()
	p.printValue(v)
	p.ev.leave()
}

func (p *printer) printValue(v Value) {
	if v.k == kThunk {
		t := v.thunk()
		if t.code != nil {
			p.w.WriteString("<CODE>")
			return
		}
		v = t.val
	}
	switch v.k {
	case kNull:
		p.w.WriteString("null")
	case kBool:
		if v.bool() {
			p.w.WriteString("true")
		} else {
			p.w.WriteString("false")
		}
	case kInt:
		p.w.WriteString(strconv.FormatInt(v.int(), 10))
	case kFloat:
		p.w.WriteString(syntax.FormatFloat(v.float()))
	case kString:
		p.w.WriteString(syntax.QuoteString(v.str()))
	case kPath:
		p.w.WriteString(v.str())
	case kAttrs:
		if v.n > 0 {
			if p.seen[v.p] {
				p.w.WriteString("«repeated»")
				return
			}
			p.seen[v.p] = true
		}
		p.w.WriteString("{ ")
		for _, a := range p.ev.sortedAttrs(v) {
			name := p.ev.syms.name(a.Name)
			if isVarName(name) {
				p.w.WriteString(name)
			} else {
				p.w.WriteString(syntax.QuoteAttrName(name))
			}
			p.w.WriteString(" = ")
			p.print(a.Val)
			p.w.WriteString("; ")
		}
		p.w.WriteString("}")
	case kList:
		if v.n > 0 {
			if p.seen[v.p] {
				p.w.WriteString("«repeated»")
				return
			}
			p.seen[v.p] = true
		}
		p.w.WriteString("[ ")
		for _, e := range v.list() {
			p.print(e)
			p.w.WriteString(" ")
		}
		p.w.WriteString("]")
	case kLambda:
		p.w.WriteString("<LAMBDA>")
	case kPrimop:
		p.w.WriteString("<PRIMOP>")
	case kPrimopApp:
		p.w.WriteString("<PRIMOP-APP>")
	default:
		p.w.WriteString("<CODE>")
	}
}

// forceDeep forces v and everything inside it (Nix's forceValueDeep),
// visiting shared values once. Errors inside attributes get a
// "while evaluating the attribute" trace entry.
func (ev *Evaluator) forceDeep(v Value) {
	seen := map[unsafe.Pointer]bool{}
	ev.forceDeepRec(v, seen)
}

func (ev *Evaluator) forceDeepRec(v Value, seen map[unsafe.Pointer]bool) {
	ev.enter()
	ev.forceDeepLevel(v, seen)
	ev.leave()
}

func (ev *Evaluator) forceDeepLevel(v Value, seen map[unsafe.Pointer]bool) {
	if v.k == kThunk {
		if seen[v.p] {
			return
		}
		seen[v.p] = true
		v = ev.force(v)
	}
	switch v.k {
	case kAttrs:
		if seen[v.p] {
			return
		}
		seen[v.p] = true
		as := v.attrs()
		for i := range as {
			a := &as[i]
			if a.Val.k == kThunk || a.Val.k == kAttrs || a.Val.k == kList {
				ev.push(frame{kind: frAttr, p: unsafe.Pointer(a)})
				ev.forceDeepRec(a.Val, seen)
				ev.frames = ev.frames[:len(ev.frames)-1]
			}
		}
	case kList:
		if seen[v.p] {
			return
		}
		seen[v.p] = true
		for _, e := range v.list() {
			ev.forceDeepRec(e, seen)
		}
	}
}
