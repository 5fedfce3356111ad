package syntax

import (
	"os"
	"path/filepath"
	"strings"
)

// Error is a syntax (or other parse-time) error at a position.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string { return e.Msg }

// MaxNesting bounds the nesting depth of the recursive descent (about three
// levels per parenthesis) so that hostile input cannot exhaust the Go
// stack; Nix's bison parser gives up at a similar depth ("memory
// exhausted").
const MaxNesting = 30000

// Options configure a parse.
type Options struct {
	// BaseDir is the directory relative path literals are resolved
	// against (the file's directory, or the working directory for -E).
	BaseDir string
	// Home is the value of ~ in ~/ paths; empty means $HOME.
	Home string
}

// Parse parses the source of f.
func Parse(f *File, opts Options) (Node, error) {
	p := &parser{lx: lexer{src: f.Src, stack: []lexState{sInitial}, file: f}, file: f, opts: opts}
	if p.opts.Home == "" {
		p.opts.Home = os.Getenv("HOME")
	}
	return p.parseFile()
}

type parser struct {
	lx      lexer
	file    *File
	opts    Options
	buf     []token // lookahead buffer
	prevEnd int     // end offset of the last consumed token
	depth   int
}

type bailout struct{ err *Error }

func (p *parser) parseFile() (n Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, ok := r.(bailout)
			if !ok {
				panic(r)
			}
			n, err = nil, b.err
		}
	}()
	n = p.parseExpr()
	if t := p.peek(0); t.kind != tEOF {
		p.unexpected(t)
	}
	p.checkLexErr()
	return n, nil
}

func (p *parser) checkLexErr() {
	if p.lx.err != nil {
		panic(bailout{p.lx.err})
	}
}

func (p *parser) peek(i int) token {
	for len(p.buf) <= i {
		t := p.lx.next()
		if t.kind == tEOF {
			p.checkLexErr()
		}
		p.buf = append(p.buf, t)
	}
	return p.buf[i]
}

func (p *parser) advance() token {
	t := p.peek(0)
	p.buf = p.buf[1:]
	p.prevEnd = t.end
	return t
}

func (p *parser) pos(off int) Pos { return p.file.Pos(off) }

func (p *parser) errorf(off int, msg string) {
	panic(bailout{&Error{Pos: p.pos(off), Msg: msg}})
}

func (p *parser) unexpected(t token) {
	p.errorf(t.start, "syntax error, unexpected "+t.describe())
}

func (p *parser) isChar(t token, c byte) bool { return t.kind == tChar && t.ch == c }

func (p *parser) expectChar(c byte) token {
	t := p.peek(0)
	if !p.isChar(t, c) {
		p.errorf(t.start, "syntax error, unexpected "+t.describe()+", expecting '"+string(c)+"'")
	}
	return p.advance()
}

func (p *parser) expect(k tokKind) token {
	t := p.peek(0)
	if t.kind != k {
		p.errorf(t.start, "syntax error, unexpected "+t.describe()+", expecting "+tokNames[k])
	}
	return p.advance()
}

func (p *parser) enter() {
	p.depth++
	if p.depth > MaxNesting {
		p.errorf(p.peek(0).start, "expression nested too deeply (more than "+itoa(MaxNesting)+" levels)")
	}
}

func (p *parser) leave() { p.depth-- }

// parseExpr is expr_function of Nix's grammar.
func (p *parser) parseExpr() Node {
	p.enter()
	defer p.leave()
	t := p.peek(0)
	switch t.kind {
	case tID:
		switch t1 := p.peek(1); {
		case p.isChar(t1, ':'):
			p.advance()
			p.advance()
			body := p.parseExpr()
			return &Lambda{P: p.pos(t.start), Arg: t.s, Body: body}
		case p.isChar(t1, '@'):
			p.advance()
			p.advance()
			p.expectChar('{')
			formals := p.parseFormals()
			p.expectChar('}')
			p.expectChar(':')
			p.checkFormals(formals, t.s, t.start)
			body := p.parseExpr()
			return &Lambda{P: p.pos(t.start), Arg: t.s, Formals: formals, Body: body}
		}
	case tChar:
		if t.ch == '{' && p.looksLikeFormals() {
			p.advance()
			formals := p.parseFormals()
			p.expectChar('}')
			arg := ""
			if p.isChar(p.peek(0), '@') {
				p.advance()
				id := p.expect(tID)
				arg = id.s
				p.expectChar(':')
				p.checkFormals(formals, arg, t.start)
			} else {
				p.expectChar(':')
				p.checkFormals(formals, "", 0)
			}
			body := p.parseExpr()
			return &Lambda{P: p.pos(t.start), Arg: arg, Formals: formals, Body: body}
		}
	case tASSERT:
		p.advance()
		cond := p.parseExpr()
		p.expectChar(';')
		body := p.parseExpr()
		return &Assert{P: p.pos(t.start), Cond: cond, Body: body}
	case tWITH:
		p.advance()
		e := p.parseExpr()
		p.expectChar(';')
		body := p.parseExpr()
		return &With{P: p.pos(t.start), Attrs: e, Body: body}
	case tLET:
		if !p.isChar(p.peek(1), '{') {
			p.advance()
			binds := p.parseBinds(t.start, p.prevEnd)
			if len(binds.Dyn) > 0 {
				p.errorf(t.start, "dynamic attributes not allowed in let")
			}
			p.expect(tIN)
			body := p.parseExpr()
			return &Let{P: p.pos(t.start), Binds: binds, Body: body}
		}
	}
	return p.parseIf()
}

// looksLikeFormals decides, at a '{', between a lambda pattern and an
// attribute set, as bison's lookahead does.
func (p *parser) looksLikeFormals() bool {
	t1 := p.peek(1)
	switch {
	case p.isChar(t1, '}'):
		t2 := p.peek(2)
		return p.isChar(t2, ':') || p.isChar(t2, '@')
	case t1.kind == tELLIPSIS:
		return true
	case t1.kind == tID:
		t2 := p.peek(2)
		return p.isChar(t2, ',') || p.isChar(t2, '?') || p.isChar(t2, '}')
	}
	return false
}

func (p *parser) parseFormals() *Formals {
	f := &Formals{}
	for {
		t := p.peek(0)
		switch {
		case t.kind == tELLIPSIS:
			p.advance()
			f.Ellipsis = true
			return f
		case t.kind == tID:
			p.advance()
			fm := Formal{P: p.pos(t.start), Name: t.s}
			if p.isChar(p.peek(0), '?') {
				p.advance()
				fm.Default = p.parseExpr()
			}
			f.List = append(f.List, fm)
			if !p.isChar(p.peek(0), ',') {
				return f
			}
			p.advance()
		default:
			return f
		}
	}
}

func (p *parser) checkFormals(f *Formals, arg string, argOff int) {
	seen := make(map[string]bool, len(f.List))
	for _, fm := range f.List {
		if seen[fm.Name] {
			panic(bailout{&Error{Pos: fm.P, Msg: "duplicate formal function argument '" + fm.Name + "'"}})
		}
		seen[fm.Name] = true
	}
	if arg != "" && seen[arg] {
		p.errorf(argOff, "duplicate formal function argument '"+arg+"'")
	}
}

func (p *parser) parseIf() Node {
	t := p.peek(0)
	if t.kind == tIF {
		p.advance()
		c := p.parseExpr()
		p.expect(tTHEN)
		th := p.parseExpr()
		p.expect(tELSE)
		el := p.parseExpr()
		return &If{P: p.pos(t.start), Cond: c, Then: th, Else: el}
	}
	return p.parseBinary(0)
}

// Binary operator precedences (higher binds tighter), from parser.y.
const (
	precImpl   = 1
	precOr     = 2
	precAnd    = 3
	precEq     = 4
	precCmp    = 5
	precUpdate = 6
	precNot    = 7
	precAdd    = 8
	precMul    = 9
	precConcat = 10
	precHas    = 11
	precNeg    = 12
)

func binPrec(t token) (prec int, right, nonassoc bool) {
	switch t.kind {
	case tIMPL:
		return precImpl, true, false
	case tOR:
		return precOr, false, false
	case tAND:
		return precAnd, false, false
	case tEQ, tNEQ:
		return precEq, false, true
	case tLEQ, tGEQ:
		return precCmp, false, true
	case tUPDATE:
		return precUpdate, true, false
	case tCONCAT:
		return precConcat, true, false
	case tChar:
		switch t.ch {
		case '<', '>':
			return precCmp, false, true
		case '+', '-':
			return precAdd, false, false
		case '*', '/':
			return precMul, false, false
		case '?':
			return precHas, false, true
		}
	}
	return -1, false, false
}

func (p *parser) call(off int, fn string, args ...Node) Node {
	return &Call{P: p.pos(off), Fn: &Var{P: p.pos(off), Name: fn}, Args: args}
}

func (p *parser) parseBinary(minPrec int) Node {
	p.enter()
	defer p.leave()
	left := p.parseUnary()
	lastNonassoc := -1
	for {
		t := p.peek(0)
		prec, right, nonassoc := binPrec(t)
		if prec < 0 || prec < minPrec {
			return left
		}
		if prec == lastNonassoc {
			p.unexpected(t)
		}
		p.advance()
		opPos := p.pos(t.start)
		if t.kind == tChar && t.ch == '?' {
			path := p.parseAttrPath()
			left = &HasAttr{P: opPos, E: left, Path: path}
			lastNonassoc = prec
			continue
		}
		next := prec + 1
		if right {
			next = prec
		}
		lpos := left.Pos()
		r := p.parseBinary(next)
		switch t.kind {
		case tIMPL:
			left = &BinOp{P: opPos, Op: OpImpl, L: left, R: r}
		case tOR:
			left = &BinOp{P: opPos, Op: OpOr, L: left, R: r}
		case tAND:
			left = &BinOp{P: opPos, Op: OpAnd, L: left, R: r}
		case tEQ:
			left = &BinOp{P: opPos, Op: OpEq, L: left, R: r}
		case tNEQ:
			left = &BinOp{P: opPos, Op: OpNEq, L: left, R: r}
		case tLEQ:
			left = &Not{P: opPos, E: p.call(t.start, "__lessThan", r, left)}
		case tGEQ:
			left = &Not{P: opPos, E: p.call(t.start, "__lessThan", left, r)}
		case tUPDATE:
			left = &BinOp{P: opPos, Op: OpUpdate, L: left, R: r}
		case tCONCAT:
			// Nix reports ++ errors at the start of the expression.
			left = &BinOp{P: lpos, Op: OpConcat, L: left, R: r}
		default:
			switch t.ch {
			case '<':
				left = p.call(t.start, "__lessThan", left, r)
			case '>':
				left = p.call(t.start, "__lessThan", r, left)
			case '+':
				left = &ConcatStrings{P: opPos, Parts: []StringPart{{P: lpos, E: left}, {P: r.Pos(), E: r}}}
			case '-':
				left = p.call(t.start, "__sub", left, r)
			case '*':
				left = p.call(t.start, "__mul", left, r)
			case '/':
				left = p.call(t.start, "__div", left, r)
			}
		}
		if nonassoc {
			lastNonassoc = prec
		} else {
			lastNonassoc = -1
		}
	}
}

func (p *parser) parseUnary() Node {
	t := p.peek(0)
	if t.kind == tChar {
		switch t.ch {
		case '!':
			p.advance()
			e := p.parseBinary(precNot + 1)
			return &Not{P: p.pos(t.start), E: e}
		case '-':
			p.advance()
			e := p.parseBinary(precNeg + 1)
			return p.call(t.start, "__sub", &Int{P: p.pos(t.start), V: 0}, e)
		}
	}
	return p.parseApp()
}

// startsSelect reports whether t can begin an expr_select (an argument).
func (p *parser) startsSelect(t token) bool {
	switch t.kind {
	case tID, tINT, tFLOAT, tINDOPEN, tPATH, tHPATH, tSPATH, tURI, tREC:
		return true
	case tLET:
		return p.isChar(p.peek(1), '{')
	case tChar:
		switch t.ch {
		case '"', '(', '{', '[':
			return true
		}
	}
	return false
}

func (p *parser) parseApp() Node {
	start := p.peek(0)
	fn := p.parseSelect()
	var args []Node
	for p.startsSelect(p.peek(0)) {
		args = append(args, p.parseSelect())
	}
	if len(args) == 0 {
		return fn
	}
	return &Call{P: p.pos(start.start), Fn: fn, Args: args}
}

func (p *parser) parseSelect() Node {
	p.enter()
	defer p.leave()
	start := p.peek(0)
	e := p.parseSimple()
	t := p.peek(0)
	if p.isChar(t, '.') {
		p.advance()
		path := p.parseAttrPath()
		sel := &Select{P: p.pos(start.start), E: e, Path: path}
		if p.peek(0).kind == tORKW {
			p.advance()
			sel.Default = p.parseSelect()
		}
		return sel
	}
	if t.kind == tORKW {
		// Nixpkgs once had a function called `or`: `f or` applies f to it.
		p.advance()
		return &Call{P: p.pos(start.start), Fn: e, Args: []Node{&Var{P: p.pos(t.start), Name: "or"}}}
	}
	return e
}

// parseAttrName parses attr or string_attr. In a string_attr whose
// expression is a plain string (also ${"a"}), the name is static.
func (p *parser) parseAttrName() AttrName {
	t := p.peek(0)
	switch {
	case t.kind == tID:
		p.advance()
		return AttrName{P: p.pos(t.start), Name: t.s}
	case t.kind == tORKW:
		p.advance()
		return AttrName{P: p.pos(t.start), Name: "or"}
	case p.isChar(t, '"'):
		p.advance()
		e := p.parseStringParts(t.start)
		p.expectChar('"')
		if s, ok := e.(*String); ok {
			return AttrName{P: p.pos(t.start), Name: s.V}
		}
		return AttrName{P: p.pos(t.start), Expr: e}
	case t.kind == tDOLLARCURLY:
		p.advance()
		e := p.parseExpr()
		p.expectChar('}')
		if s, ok := e.(*String); ok {
			return AttrName{P: p.pos(t.start), Name: s.V}
		}
		return AttrName{P: p.pos(t.start), Expr: e}
	}
	p.unexpected(t)
	return AttrName{}
}

func (p *parser) parseAttrPath() []AttrName {
	path := []AttrName{p.parseAttrName()}
	for p.isChar(p.peek(0), '.') {
		p.advance()
		path = append(path, p.parseAttrName())
	}
	return path
}

func (p *parser) parseSimple() Node {
	t := p.peek(0)
	pos := p.pos(t.start)
	switch t.kind {
	case tID:
		p.advance()
		if t.s == "__curPos" {
			return &CurPos{P: pos}
		}
		return &Var{P: pos, Name: t.s}
	case tINT:
		p.advance()
		return &Int{P: pos, V: t.n}
	case tFLOAT:
		p.advance()
		return &Float{P: pos, V: t.f}
	case tINDOPEN:
		p.advance()
		return p.parseIndString(t.start)
	case tPATH, tHPATH:
		p.advance()
		var first Node
		if t.kind == tPATH {
			path := absPath(t.s, p.opts.BaseDir)
			if strings.HasSuffix(t.s, "/") && len(t.s) > 1 {
				path += "/"
			}
			first = &Path{P: pos, V: path}
		} else {
			first = &Path{P: pos, V: p.opts.Home + t.s[1:]}
		}
		if p.peek(0).kind == tPATHEND {
			p.advance()
			return first
		}
		parts := []StringPart{{P: pos, E: first}}
		parts = p.parseInterpolated(parts, tPATHEND)
		p.expect(tPATHEND)
		return &ConcatStrings{P: pos, Parts: parts}
	case tSPATH:
		p.advance()
		return &Call{P: pos, Fn: &Var{P: pos, Name: "__findFile"},
			Args: []Node{&Var{P: pos, Name: "__nixPath"}, &String{P: pos, V: t.s[1 : len(t.s)-1]}}}
	case tURI:
		p.advance()
		return &String{P: pos, V: t.s}
	case tLET:
		p.advance()
		open := p.expectChar('{')
		binds := p.parseBinds(open.start, open.end)
		p.expectChar('}')
		binds.Rec = true
		return &Select{P: NoPos, E: binds, Path: []AttrName{{Name: "body"}}}
	case tREC:
		p.advance()
		open := p.expectChar('{')
		binds := p.parseBinds(open.start, open.end)
		p.expectChar('}')
		binds.Rec = true
		return binds
	case tChar:
		switch t.ch {
		case '"':
			p.advance()
			e := p.parseStringParts(t.start)
			p.expectChar('"')
			return e
		case '(':
			p.advance()
			e := p.parseExpr()
			p.expectChar(')')
			return e
		case '{':
			p.advance()
			binds := p.parseBinds(t.start, t.end)
			p.expectChar('}')
			return binds
		case '[':
			p.advance()
			l := &List{P: pos}
			for p.startsSelect(p.peek(0)) {
				l.Elems = append(l.Elems, p.parseSelect())
			}
			p.expectChar(']')
			return l
		}
	}
	p.unexpected(t)
	return nil
}

// parseStringParts parses the inside of "...": a plain String, or a
// ConcatStrings forced to a string.
func (p *parser) parseStringParts(startOff int) Node {
	t := p.peek(0)
	if t.kind == tSTR {
		if t1 := p.peek(1); t1.kind != tDOLLARCURLY {
			p.advance()
			return &String{P: p.pos(startOff), V: t.s}
		}
	}
	if t.kind != tSTR && t.kind != tDOLLARCURLY {
		return &String{P: p.pos(startOff), V: ""}
	}
	parts := p.parseInterpolated(nil, tEOF)
	return &ConcatStrings{P: parts[0].P, ForceString: true, Parts: parts}
}

// parseInterpolated parses string_parts_interpolated: STR and ${expr}
// pieces.
func (p *parser) parseInterpolated(parts []StringPart, _ tokKind) []StringPart {
	for {
		t := p.peek(0)
		switch t.kind {
		case tSTR:
			p.advance()
			parts = append(parts, StringPart{P: p.pos(t.start), E: &String{P: p.pos(t.start), V: t.s}})
		case tDOLLARCURLY:
			p.advance()
			e := p.parseExpr()
			p.expectChar('}')
			parts = append(parts, StringPart{P: p.pos(t.start), E: e})
		default:
			return parts
		}
	}
}

type indPart struct {
	pos    Pos
	e      Node   // an interpolation, or nil
	s      string // text
	indent bool   // text subject to indentation stripping
}

func (p *parser) parseIndString(startOff int) Node {
	var parts []indPart
	for {
		t := p.peek(0)
		switch t.kind {
		case tINDSTR:
			p.advance()
			parts = append(parts, indPart{pos: p.pos(t.start), s: t.s, indent: t.indent})
			continue
		case tDOLLARCURLY:
			p.advance()
			e := p.parseExpr()
			p.expectChar('}')
			parts = append(parts, indPart{pos: p.pos(t.start), e: e})
			continue
		case tINDCLOSE:
			p.advance()
		default:
			p.unexpected(t)
		}
		break
	}
	return stripIndentation(p.pos(startOff), parts)
}

// stripIndentation removes the common indentation of an indented string,
// following Nix 2.8's algorithm exactly (including its quirks: escapes and
// interpolations end a line's leading whitespace, and a final line of only
// spaces is dropped when the string is a single piece).
func stripIndentation(pos Pos, es []indPart) Node {
	if len(es) == 0 {
		return &String{P: pos, V: ""}
	}
	atStartOfLine := true
	minIndent := 1000000
	curIndent := 0
	for _, i := range es {
		if i.e != nil || !i.indent {
			if atStartOfLine {
				atStartOfLine = false
				if curIndent < minIndent {
					minIndent = curIndent
				}
			}
			continue
		}
		for j := 0; j < len(i.s); j++ {
			c := i.s[j]
			if atStartOfLine {
				if c == ' ' {
					curIndent++
				} else if c == '\n' {
					curIndent = 0
				} else {
					atStartOfLine = false
					if curIndent < minIndent {
						minIndent = curIndent
					}
				}
			} else if c == '\n' {
				atStartOfLine = true
				curIndent = 0
			}
		}
	}

	var out []StringPart
	atStartOfLine = true
	curDropped := 0
	n := len(es)
	for _, i := range es {
		if i.e != nil {
			atStartOfLine = false
			curDropped = 0
			out = append(out, StringPart{P: i.pos, E: i.e})
			n--
			continue
		}
		var b strings.Builder
		for j := 0; j < len(i.s); j++ {
			c := i.s[j]
			if atStartOfLine {
				if c == ' ' {
					if curDropped >= minIndent {
						b.WriteByte(c)
					}
					curDropped++
				} else if c == '\n' {
					curDropped = 0
					b.WriteByte(c)
				} else {
					atStartOfLine = false
					curDropped = 0
					b.WriteByte(c)
				}
			} else {
				b.WriteByte(c)
				if c == '\n' {
					atStartOfLine = true
				}
			}
		}
		s2 := b.String()
		if n == 1 {
			if k := strings.LastIndexByte(s2, '\n'); k >= 0 && strings.Trim(s2[k+1:], " ") == "" {
				s2 = s2[:k+1]
			}
		}
		out = append(out, StringPart{P: i.pos, E: &String{P: i.pos, V: s2}})
		n--
	}
	if len(out) == 1 {
		if s, ok := out[0].E.(*String); ok {
			return s
		}
	}
	return &ConcatStrings{P: pos, ForceString: true, Parts: out}
}

// parseBinds parses the bindings of an attribute set or let, up to (not
// including) the closing '}' or `in`. setOff is the position of the
// token before the bindings ('{' or `let`), which Nix uses as the set's
// position; prevEnd is where that token ends, which Nix uses as the
// position of inherited variables.
func (p *parser) parseBinds(setOff, prevEnd int) *Attrs {
	a := &Attrs{P: p.pos(setOff)}
	for {
		t := p.peek(0)
		switch {
		case t.kind == tINHERIT:
			p.advance()
			var from Node
			if p.isChar(p.peek(0), '(') {
				p.advance()
				from = p.parseExpr()
				p.expectChar(')')
			}
			// Nix positions inherited attributes at the end of the token
			// before the names (`inherit` or the closing parenthesis).
			attrsOff := p.prevEnd
			for {
				nt := p.peek(0)
				if p.isChar(nt, ';') {
					p.advance()
					break
				}
				if !(nt.kind == tID || nt.kind == tORKW || p.isChar(nt, '"') || nt.kind == tDOLLARCURLY) {
					p.unexpected(nt)
				}
				an := p.parseAttrName()
				if an.Expr != nil {
					p.errorf(nt.start, "dynamic attributes not allowed in inherit")
				}
				defPos := p.pos(attrsOff)
				if old := a.Lookup(an.Name); old != nil {
					p.dupAttr(an.Name, defPos, old.P)
				}
				if from == nil {
					a.add(&AttrDef{Name: an.Name, P: defPos, Value: &Var{P: p.pos(prevEnd), Name: an.Name}, Inherited: true})
				} else {
					a.add(&AttrDef{Name: an.Name, P: defPos,
						Value: &Select{P: p.pos(prevEnd), E: from, Path: []AttrName{{P: an.P, Name: an.Name}}}})
				}
			}
		case t.kind == tID || t.kind == tORKW || p.isChar(t, '"') || t.kind == tDOLLARCURLY:
			path := p.parseAttrPath()
			p.expectChar('=')
			e := p.parseExpr()
			p.expectChar(';')
			p.addAttr(a, path, e, p.pos(t.start))
		default:
			return a
		}
	}
}

func attrPathString(path []AttrName) string {
	var b strings.Builder
	for i, n := range path {
		if i > 0 {
			b.WriteByte('.')
		}
		if n.Expr != nil {
			b.WriteString("\"${...}\"")
		} else {
			b.WriteString(n.Name)
		}
	}
	return b.String()
}

func (p *parser) dupAttr(name string, pos, prev Pos) {
	prevPos := Position{File: p.file}
	prevPos.Line, prevPos.Column = p.file.LineCol(p.file.Offset(prev))
	panic(bailout{&Error{Pos: pos, Msg: "attribute '" + name + "' already defined at " + prevPos.Inline()}})
}

// addAttr inserts `path = e` into a, creating and merging nested sets as
// Nix's addAttr does.
func (p *parser) addAttr(a *Attrs, path []AttrName, e Node, pos Pos) {
	for _, an := range path[:len(path)-1] {
		if an.Expr != nil {
			nested := &Attrs{P: pos}
			a.Dyn = append(a.Dyn, &DynAttrDef{Name: an.Expr, Value: nested, P: pos})
			a = nested
			continue
		}
		if old := a.Lookup(an.Name); old != nil {
			nested, ok := old.Value.(*Attrs)
			if old.Inherited || !ok {
				p.dupAttr(attrPathString(path), pos, old.P)
			}
			a = nested
		} else {
			nested := &Attrs{P: pos}
			a.add(&AttrDef{Name: an.Name, P: pos, Value: nested})
			a = nested
		}
	}
	last := path[len(path)-1]
	if last.Expr != nil {
		a.Dyn = append(a.Dyn, &DynAttrDef{Name: last.Expr, Value: e, P: pos})
		return
	}
	if old := a.Lookup(last.Name); old != nil {
		ae, ok1 := e.(*Attrs)
		jAttrs, ok2 := old.Value.(*Attrs)
		if ok1 && ok2 && !old.Inherited {
			for _, ad := range ae.Defs {
				if j2 := jAttrs.Lookup(ad.Name); j2 != nil {
					// Nix reports this one at the earlier definition.
					p.dupAttr(ad.Name, j2.P, ad.P)
				}
				jAttrs.add(ad)
			}
			return
		}
		p.dupAttr(attrPathString(path), pos, old.P)
	}
	a.add(&AttrDef{Name: last.Name, P: pos, Value: e})
	setName(e, last.Name)
}

func setName(e Node, name string) {
	for {
		l, ok := e.(*Lambda)
		if !ok {
			return
		}
		l.Name = name
		e = l.Body
	}
}

// absPath makes p absolute against base and canonicalises it (collapsing
// ".", ".." and repeated slashes, without resolving symlinks).
func absPath(p, base string) string {
	if !strings.HasPrefix(p, "/") {
		if base == "" {
			base, _ = os.Getwd()
		}
		p = base + "/" + p
	}
	return CanonPath(p)
}

// CanonPath canonicalises an absolute path like Nix's canonPath: no ".",
// "..", repeated or trailing slashes. It does not touch the file system.
func CanonPath(p string) string {
	c := filepath.Clean("/" + p)
	return c
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
