package eval

import (
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/castor-nix/castor/evaluator/syntax"
)

// appendJSON appends the JSON form of v (Nix's printValueAsJSON): sets
// with __toString or outPath become strings, paths are copied to the store,
// attributes are sorted by name, floats print as C++ streams print them.
func (ev *Evaluator) appendJSON(b []byte, v Value, strict bool, pos syntax.Pos, ctx *ctxBuilder) []byte {
	ev.enter()
	b = ev.appendJSONValue(b, v, strict, pos, ctx)
	ev.leave()
	return b
}

func (ev *Evaluator) appendJSONValue(b []byte, v Value, strict bool, pos syntax.Pos, ctx *ctxBuilder) []byte {
	if strict {
		v = ev.force(v)
	} else if v.k == kThunk && v.thunk().code == nil {
		v = v.thunk().val
	}
	switch v.k {
	case kInt:
		return strconv.AppendInt(b, v.int(), 10)
	case kBool:
		return strconv.AppendBool(b, v.bool())
	case kString:
		ctx.add(v.ctx())
		return appendJSONString(b, v.str())
	case kPath:
		p := ev.copyPathToStore(pos, v.str())
		ctx.addPath(p)
		return appendJSONString(b, p)
	case kNull:
		return append(b, "null"...)
	case kAttrs:
		if f := lookupAttr(v.attrs(), symToString); f != nil {
			r := ev.call(ev.force(f.Val), v, pos)
			s := ev.coerceToString(pos, r, ctx, false, false, true)
			return appendJSONString(b, s)
		}
		if o := lookupAttr(v.attrs(), symOutPath); o != nil {
			return ev.appendJSON(b, o.Val, strict, o.Pos, ctx)
		}
		b = append(b, '{')
		for i, a := range ev.sortedAttrs(v) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, ev.syms.name(a.Name))
			b = append(b, ':')
			b = ev.appendJSON(b, a.Val, strict, a.Pos, ctx)
		}
		return append(b, '}')
	case kList:
		b = append(b, '[')
		for i, e := range v.list() {
			if i > 0 {
				b = append(b, ',')
			}
			b = ev.appendJSON(b, e, strict, pos, ctx)
		}
		return append(b, ']')
	case kFloat:
		return append(b, syntax.FormatFloat(v.float())...)
	}
	// As Nix 2.8: the error points at the value (a function's definition)
	// and a trace line, worded as Nix words it, at where it was found.
	errPos := pos
	if v.k == kLambda {
		errPos = v.closure().lam.pos
	}
	panic(&Error{Kind: ErrType, Msg: "cannot convert " + showType(v) + " to JSON", Pos: errPos, fset: ev.fset,
		Trace: []Trace{{Pos: pos, Msg: "message for the trace"}}})
}

func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// jsonParser parses JSON into Nix values (builtins.fromJSON).
type jsonParser struct {
	ev  *Evaluator
	s   string
	i   int
	pos syntax.Pos
	err string
}

func (ev *Evaluator) fromJSON(s string, pos syntax.Pos) Value {
	p := &jsonParser{ev: ev, s: s, pos: pos}
	p.ws()
	v, ok := p.value(0)
	if ok {
		p.ws()
		if p.i < len(p.s) {
			ok = p.fail("syntax error while parsing value - unexpected trailing input")
		}
	}
	if !ok {
		ev.throw(ErrEval, pos, "%s", p.err)
	}
	return v
}

func (p *jsonParser) fail(msg string) bool {
	if p.err == "" {
		line, col := 1, 1
		for _, c := range []byte(p.s[:min(p.i, len(p.s))]) {
			if c == '\n' {
				line++
				col = 1
			} else {
				col++
			}
		}
		p.err = "[json.exception.parse_error.101] parse error at line " + strconv.Itoa(line) +
			", column " + strconv.Itoa(col) + ": " + msg
	}
	return false
}

func (p *jsonParser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

const maxJSONDepth = 10000

func (p *jsonParser) value(depth int) (Value, bool) {
	if depth > maxJSONDepth {
		return Value{}, p.fail("nesting too deep")
	}
	if p.i >= len(p.s) {
		return Value{}, p.fail("syntax error while parsing value - unexpected end of input; expected '[', '{', or a literal")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		p.i++
		var as []Attr
		p.ws()
		if p.i < len(p.s) && p.s[p.i] == '}' {
			p.i++
			return Value{k: kAttrs}, true
		}
		for {
			p.ws()
			if p.i >= len(p.s) || p.s[p.i] != '"' {
				return Value{}, p.fail("syntax error while parsing object key - unexpected token; expected string literal")
			}
			k, ok := p.str()
			if !ok {
				return Value{}, false
			}
			p.ws()
			if p.i >= len(p.s) || p.s[p.i] != ':' {
				return Value{}, p.fail("syntax error while parsing object separator - unexpected token; expected ':'")
			}
			p.i++
			p.ws()
			v, ok := p.value(depth + 1)
			if !ok {
				return Value{}, false
			}
			name := p.ev.intern(k)
			replaced := false
			for j := range as {
				if as[j].Name == name {
					as[j].Val = v
					replaced = true
				}
			}
			if !replaced {
				as = append(as, Attr{Name: name, Val: v})
			}
			p.ws()
			if p.i < len(p.s) && p.s[p.i] == ',' {
				p.i++
				continue
			}
			if p.i < len(p.s) && p.s[p.i] == '}' {
				p.i++
				sortAttrs(as)
				return attrsValue(as), true
			}
			return Value{}, p.fail("syntax error while parsing object - unexpected token; expected '}'")
		}
	case c == '[':
		p.i++
		var l []Value
		p.ws()
		if p.i < len(p.s) && p.s[p.i] == ']' {
			p.i++
			return Value{k: kList}, true
		}
		for {
			p.ws()
			v, ok := p.value(depth + 1)
			if !ok {
				return Value{}, false
			}
			l = append(l, v)
			p.ws()
			if p.i < len(p.s) && p.s[p.i] == ',' {
				p.i++
				continue
			}
			if p.i < len(p.s) && p.s[p.i] == ']' {
				p.i++
				return listValue(l), true
			}
			return Value{}, p.fail("syntax error while parsing array - unexpected token; expected ']'")
		}
	case c == '"':
		s, ok := p.str()
		return Str(s), ok
	case c == 't' && len(p.s)-p.i >= 4 && p.s[p.i:p.i+4] == "true":
		p.i += 4
		return True, true
	case c == 'f' && len(p.s)-p.i >= 5 && p.s[p.i:p.i+5] == "false":
		p.i += 5
		return False, true
	case c == 'n' && len(p.s)-p.i >= 4 && p.s[p.i:p.i+4] == "null":
		p.i += 4
		return Null, true
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	}
	return Value{}, p.fail("syntax error while parsing value - invalid literal")
}

func (p *jsonParser) number() (Value, bool) {
	start := p.i
	if p.s[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.i < len(p.s) && p.s[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return Value{}, p.fail("syntax error while parsing value - invalid number; expected digit after '-'")
	}
	isFloat := false
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		isFloat = true
		if digits() == 0 {
			return Value{}, p.fail("syntax error while parsing value - invalid number; expected digit after '.'")
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		isFloat = true
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return Value{}, p.fail("syntax error while parsing value - invalid number; expected digit after exponent sign")
		}
	}
	text := p.s[start:p.i]
	if !isFloat {
		if n, err := strconv.ParseInt(text, 10, 64); err == nil {
			return Int(n), true
		}
		if _, err := strconv.ParseUint(text, 10, 64); err == nil {
			p.ev.throw(ErrEval, p.pos, "unsigned json number too large")
		}
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil && math.IsInf(f, 0) {
		return Value{}, p.fail("number overflow parsing '" + text + "'")
	}
	return Float(f), true
}

func (p *jsonParser) str() (string, bool) {
	p.i++ // opening quote
	var b []byte
	for {
		if p.i >= len(p.s) {
			return "", p.fail("syntax error while parsing value - invalid string: missing closing quote")
		}
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return string(b), true
		case c == '\\':
			p.i++
			if p.i >= len(p.s) {
				return "", p.fail("syntax error while parsing value - invalid string: missing closing quote")
			}
			e := p.s[p.i]
			p.i++
			switch e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return "", p.fail("syntax error while parsing value - invalid string: '\\u' must be followed by 4 hex digits")
				}
				if utf16.IsSurrogate(rune(r)) {
					if r >= 0xdc00 {
						return "", p.fail("syntax error while parsing value - invalid string: surrogate U+DC00..U+DFFF must follow U+D800..U+DBFF")
					}
					if p.i+1 < len(p.s) && p.s[p.i] == '\\' && p.s[p.i+1] == 'u' {
						p.i += 2
						r2, ok := p.hex4()
						if ok && r2 >= 0xdc00 && r2 <= 0xdfff {
							b = utf8.AppendRune(b, utf16.DecodeRune(rune(r), rune(r2)))
							continue
						}
					}
					return "", p.fail("syntax error while parsing value - invalid string: surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF")
				}
				b = utf8.AppendRune(b, rune(r))
			default:
				return "", p.fail("syntax error while parsing value - invalid string: forbidden character after backslash")
			}
		case c < 0x20:
			return "", p.fail("syntax error while parsing value - invalid string: control character must be escaped")
		default:
			b = append(b, c)
			p.i++
		}
	}
}

func (p *jsonParser) hex4() (int, bool) {
	if p.i+4 > len(p.s) {
		return 0, false
	}
	n, err := strconv.ParseUint(p.s[p.i:p.i+4], 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return int(n), true
}
