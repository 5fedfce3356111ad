package syntax

import (
	"strconv"
	"strings"
)

type tokKind uint8

const (
	tEOF  tokKind = iota
	tChar         // a single byte; the byte is in token.ch
	tID
	tINT
	tFLOAT
	tSTR
	tINDSTR
	tPATH
	tHPATH
	tSPATH
	tURI
	tPATHEND
	tIF
	tTHEN
	tELSE
	tASSERT
	tWITH
	tLET
	tIN
	tREC
	tINHERIT
	tORKW
	tELLIPSIS
	tEQ
	tNEQ
	tLEQ
	tGEQ
	tAND
	tOR
	tIMPL
	tUPDATE
	tCONCAT
	tDOLLARCURLY
	tINDOPEN
	tINDCLOSE
)

// tokNames are bison's names for the tokens, used in syntax errors.
var tokNames = [...]string{
	tEOF: "end of file", tChar: "", tID: "ID", tINT: "INT", tFLOAT: "FLOAT",
	tSTR: "STR", tINDSTR: "IND_STR", tPATH: "PATH", tHPATH: "HPATH",
	tSPATH: "SPATH", tURI: "URI", tPATHEND: "PATH_END", tIF: "IF",
	tTHEN: "THEN", tELSE: "ELSE", tASSERT: "ASSERT", tWITH: "WITH",
	tLET: "LET", tIN: "IN", tREC: "REC", tINHERIT: "INHERIT", tORKW: "OR_KW",
	tELLIPSIS: "ELLIPSIS", tEQ: "EQ", tNEQ: "NEQ", tLEQ: "LEQ", tGEQ: "GEQ",
	tAND: "AND", tOR: "OR", tIMPL: "IMPL", tUPDATE: "UPDATE",
	tCONCAT: "CONCAT", tDOLLARCURLY: "DOLLAR_CURLY",
	tINDOPEN: "IND_STRING_OPEN", tINDCLOSE: "IND_STRING_CLOSE",
}

type token struct {
	kind       tokKind
	ch         byte
	start, end int    // byte offsets in the source
	s          string // ID, STR, IND_STR, PATH, HPATH, SPATH, URI text
	indent     bool   // IND_STR: raw text subject to indentation stripping
	n          int64
	f          float64
}

func (t token) describe() string {
	if t.kind == tChar {
		// Characters the grammar does not use are not tokens to bison.
		if strings.IndexByte(":;,.(){}[]=?@!<>+-*/\"", t.ch) < 0 || t.ch == 0 {
			return "invalid token"
		}
		return "'" + string(t.ch) + "'"
	}
	return tokNames[t.kind]
}

// Lexer start conditions, as in Nix's lexer.l.
type lexState uint8

const (
	sInitial lexState = iota
	sDefault
	sString
	sIndString
	sInPath
	sInPathSlash
	sPathStart
)

// lexer is a pull scanner reproducing flex's longest-match behaviour of
// Nix 2.8's lexer.l. Its state stack depends only on the tokens it has
// produced, so the parser may look ahead freely.
type lexer struct {
	src   []byte
	pos   int
	stack []lexState
	err   *Error
	file  *File
}

func (l *lexer) state() lexState { return l.stack[len(l.stack)-1] }
func (l *lexer) push(s lexState) { l.stack = append(l.stack, s) }
func (l *lexer) pop() {
	if len(l.stack) > 1 {
		l.stack = l.stack[:len(l.stack)-1]
	}
}

func isPathChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '-' || c == '+'
}

func isIDStart(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }
func isIDChar(c byte) bool {
	return isIDStart(c) || c >= '0' && c <= '9' || c == '\'' || c == '-'
}
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isURIChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	switch c {
	case '%', '/', '?', ':', '@', '&', '=', '+', '$', ',', '-', '_', '.', '!', '~', '*', '\'':
		return true
	}
	return false
}

func (l *lexer) at(i int) byte {
	if i < len(l.src) {
		return l.src[i]
	}
	return 0
}

// Matchers return the length of the longest match at i (0 for none).

func (l *lexer) mID(i int) int {
	if i >= len(l.src) || !isIDStart(l.src[i]) {
		return 0
	}
	j := i + 1
	for j < len(l.src) && isIDChar(l.src[j]) {
		j++
	}
	return j - i
}

func (l *lexer) mINT(i int) int {
	j := i
	for j < len(l.src) && isDigit(l.src[j]) {
		j++
	}
	return j - i
}

func (l *lexer) mFLOAT(i int) int {
	s := l.src
	best := 0
	// [1-9][0-9]*\.[0-9]*
	if i < len(s) && s[i] >= '1' && s[i] <= '9' {
		j := i + 1
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if j < len(s) && s[j] == '.' {
			j++
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			best = j - i
		}
	}
	// 0?\.[0-9]+
	j := i
	if j < len(s) && s[j] == '0' {
		j++
	}
	if j < len(s) && s[j] == '.' {
		k := j + 1
		for k < len(s) && isDigit(s[k]) {
			k++
		}
		if k > j+1 && k-i > best {
			best = k - i
		}
	}
	if best == 0 {
		return 0
	}
	// ([Ee][+-]?[0-9]+)?
	j = i + best
	if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
		k := j + 1
		if k < len(s) && (s[k] == '+' || s[k] == '-') {
			k++
		}
		d := k
		for d < len(s) && isDigit(s[d]) {
			d++
		}
		if d > k {
			best = d - i
		}
	}
	return best
}

func (l *lexer) pathChars(i int) int {
	j := i
	for j < len(l.src) && isPathChar(l.src[j]) {
		j++
	}
	return j - i
}

// slashGroups matches (\/{PATH_CHAR}+)+\/? at i; it returns the length and
// the number of groups.
func (l *lexer) slashGroups(i int, trailing bool) (int, int) {
	j, groups := i, 0
	for j < len(l.src) && l.src[j] == '/' {
		n := l.pathChars(j + 1)
		if n == 0 {
			break
		}
		j += 1 + n
		groups++
	}
	if groups > 0 && trailing && j < len(l.src) && l.src[j] == '/' {
		j++
	}
	return j - i, groups
}

// mPATH matches {PATH_CHAR}*(\/{PATH_CHAR}+)+\/?
func (l *lexer) mPATH(i int) int {
	p := l.pathChars(i)
	n, g := l.slashGroups(i+p, true)
	if g == 0 {
		return 0
	}
	return p + n
}

// mPATHSEG matches {PATH_CHAR}*\/
func (l *lexer) mPATHSEG(i int) int {
	p := l.pathChars(i)
	if l.at(i+p) == '/' && i+p < len(l.src) {
		return p + 1
	}
	return 0
}

// mHPATH matches \~(\/{PATH_CHAR}+)+\/?
func (l *lexer) mHPATH(i int) int {
	if l.at(i) != '~' || i >= len(l.src) {
		return 0
	}
	n, g := l.slashGroups(i+1, true)
	if g == 0 {
		return 0
	}
	return 1 + n
}

// mSPATH matches \<{PATH_CHAR}+(\/{PATH_CHAR}+)*\>
func (l *lexer) mSPATH(i int) int {
	if i >= len(l.src) || l.src[i] != '<' {
		return 0
	}
	p := l.pathChars(i + 1)
	if p == 0 {
		return 0
	}
	n, _ := l.slashGroups(i+1+p, false)
	j := i + 1 + p + n
	if j < len(l.src) && l.src[j] == '>' {
		return j + 1 - i
	}
	return 0
}

// mURI matches [a-zA-Z][a-zA-Z0-9\+\-\.]*\:[URI chars]+
func (l *lexer) mURI(i int) int {
	s := l.src
	if i >= len(s) || !(s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z') {
		return 0
	}
	j := i + 1
	for j < len(s) {
		c := s[j]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) || c == '+' || c == '-' || c == '.' {
			j++
			continue
		}
		break
	}
	if j >= len(s) || s[j] != ':' {
		return 0
	}
	j++
	k := j
	for k < len(s) && isURIChar(s[k]) {
		k++
	}
	if k == j {
		return 0
	}
	return k - i
}

var keywords = map[string]tokKind{
	"if": tIF, "then": tTHEN, "else": tELSE, "assert": tASSERT, "with": tWITH,
	"let": tLET, "in": tIN, "rec": tREC, "inherit": tINHERIT, "or": tORKW,
}

var twoCharOps = map[string]tokKind{
	"==": tEQ, "!=": tNEQ, "<=": tLEQ, ">=": tGEQ, "&&": tAND, "||": tOR,
	"->": tIMPL, "//": tUPDATE, "++": tCONCAT,
}

// next returns the next token. On a lexical error it returns tEOF and sets
// l.err.
func (l *lexer) next() token {
	switch l.state() {
	case sString:
		return l.lexString()
	case sIndString:
		return l.lexIndString()
	case sInPath, sInPathSlash:
		return l.lexInPath()
	case sPathStart:
		return l.lexPathStart()
	}
	for {
		if l.pos >= len(l.src) {
			return token{kind: tEOF, start: l.pos, end: l.pos}
		}
		c := l.src[l.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			l.pos++
			continue
		case c == '#':
			for l.pos < len(l.src) && l.src[l.pos] != '\n' && l.src[l.pos] != '\r' {
				l.pos++
			}
			continue
		case c == '/' && l.at(l.pos+1) == '*':
			if n := l.mComment(l.pos); n > 0 {
				l.pos += n
				continue
			}
		}
		break
	}
	return l.lexDefault()
}

// mComment matches \/\*([^*]|\*+[^*/])*\*+\/
func (l *lexer) mComment(i int) int {
	s := l.src
	j := i + 2
	for j < len(s) {
		if s[j] == '*' {
			k := j
			for k < len(s) && s[k] == '*' {
				k++
			}
			if k < len(s) && s[k] == '/' {
				return k + 1 - i
			}
			j = k
			continue
		}
		j++
	}
	return 0
}

const (
	rKeyword = iota
	rEllipsis
	rOp
	rID
	rINT
	rFLOAT
	rDollarCurly
	rRBrace
	rLBrace
	rQuote
	rIndOpen
	rPathSegDollar
	rPATH
	rHPATH
	rSPATH
	rURI
	rAny
)

func (l *lexer) lexDefault() token {
	i := l.pos
	s := l.src
	bestLen, bestRule := 1, rAny
	consider := func(n, rule int) {
		if n > bestLen || n == bestLen && rule < bestRule {
			bestLen, bestRule = n, rule
		}
	}
	idLen := l.mID(i)
	if idLen > 0 {
		if _, ok := keywords[string(s[i:i+idLen])]; ok {
			consider(idLen, rKeyword)
		} else {
			consider(idLen, rID)
		}
	}
	if i+3 <= len(s) && string(s[i:i+3]) == "..." {
		consider(3, rEllipsis)
	}
	if i+2 <= len(s) {
		if _, ok := twoCharOps[string(s[i:i+2])]; ok {
			consider(2, rOp)
		}
		if s[i] == '$' && s[i+1] == '{' {
			consider(2, rDollarCurly)
		}
		if s[i] == '\'' && s[i+1] == '\'' {
			j := i + 2
			for j < len(s) && s[j] == ' ' {
				j++
			}
			if j < len(s) && s[j] == '\n' {
				consider(j+1-i, rIndOpen)
			} else {
				consider(2, rIndOpen)
			}
		}
	}
	consider(l.mINT(i), rINT)
	consider(l.mFLOAT(i), rFLOAT)
	switch s[i] {
	case '}':
		consider(1, rRBrace)
	case '{':
		consider(1, rLBrace)
	case '"':
		consider(1, rQuote)
	}
	if n := l.mPATHSEG(i); n > 0 && l.at(i+n) == '$' && l.at(i+n+1) == '{' && i+n+1 < len(s) {
		consider(n+2, rPathSegDollar)
	}
	if i+4 <= len(s) && string(s[i:i+4]) == "~/${" {
		consider(4, rPathSegDollar)
	}
	consider(l.mPATH(i), rPATH)
	consider(l.mHPATH(i), rHPATH)
	consider(l.mSPATH(i), rSPATH)
	consider(l.mURI(i), rURI)

	text := string(s[i : i+bestLen])
	tok := token{start: i, end: i + bestLen}
	switch bestRule {
	case rPathSegDollar:
		// Rescan the same text in PATH_START (flex's yyless(0)).
		l.push(sPathStart)
		return l.lexPathStart()
	}
	l.pos = i + bestLen
	switch bestRule {
	case rKeyword:
		tok.kind = keywords[text]
	case rEllipsis:
		tok.kind = tELLIPSIS
	case rOp:
		tok.kind = twoCharOps[text]
	case rID:
		tok.kind, tok.s = tID, text
	case rINT:
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			l.fail(i, "invalid integer '"+text+"'")
			return token{kind: tEOF, start: i, end: i}
		}
		tok.kind, tok.n = tINT, n
	case rFLOAT:
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			// strtod sets ERANGE on overflow and underflow, and Nix rejects both.
			l.fail(i, "invalid float '"+text+"'")
			return token{kind: tEOF, start: i, end: i}
		}
		tok.kind, tok.f = tFLOAT, f
	case rDollarCurly:
		l.push(sDefault)
		tok.kind = tDOLLARCURLY
	case rRBrace:
		if l.state() != sInitial {
			l.pop()
		}
		tok.kind, tok.ch = tChar, '}'
	case rLBrace:
		l.push(sDefault)
		tok.kind, tok.ch = tChar, '{'
	case rQuote:
		l.push(sString)
		tok.kind, tok.ch = tChar, '"'
	case rIndOpen:
		l.push(sIndString)
		tok.kind = tINDOPEN
	case rPATH, rHPATH:
		if text[len(text)-1] == '/' {
			l.push(sInPathSlash)
		} else {
			l.push(sInPath)
		}
		tok.kind, tok.s = tPATH, text
		if bestRule == rHPATH {
			tok.kind = tHPATH
		}
	case rSPATH:
		tok.kind, tok.s = tSPATH, text
	case rURI:
		tok.kind, tok.s = tURI, text
	case rAny:
		tok.kind, tok.ch = tChar, s[i]
	}
	return tok
}

func (l *lexer) fail(off int, msg string) {
	if l.err == nil {
		l.err = &Error{Pos: l.file.Pos(off), Msg: msg}
	}
}

func (l *lexer) lexPathStart() token {
	i := l.pos
	l.pop()
	l.push(sInPathSlash)
	if l.at(i) == '~' {
		l.pos = i + 2
		return token{kind: tHPATH, start: i, end: i + 2, s: "~/"}
	}
	n := l.mPATHSEG(i)
	l.pos = i + n
	return token{kind: tPATH, start: i, end: i + n, s: string(l.src[i : i+n])}
}

func (l *lexer) lexInPath() token {
	i := l.pos
	s := l.src
	if i+1 < len(s) && s[i] == '$' && s[i+1] == '{' {
		l.pop()
		l.push(sInPath)
		l.push(sDefault)
		l.pos = i + 2
		return token{kind: tDOLLARCURLY, start: i, end: i + 2}
	}
	n := l.mPATH(i)
	if m := l.mPATHSEG(i); m > n {
		n = m
	}
	if m := l.pathChars(i); m > n {
		n = m
	}
	if n > 0 {
		l.pop()
		if s[i+n-1] == '/' {
			l.push(sInPathSlash)
		} else {
			l.push(sInPath)
		}
		l.pos = i + n
		return token{kind: tSTR, start: i, end: i + n, s: string(s[i : i+n])}
	}
	if l.state() == sInPathSlash {
		l.fail(i, "path has a trailing slash")
		return token{kind: tEOF, start: i, end: i}
	}
	l.pop()
	return token{kind: tPATHEND, start: i, end: i}
}

func (l *lexer) lexString() token {
	i := l.pos
	s := l.src
	if i >= len(s) {
		return token{kind: tEOF, start: i, end: i}
	}
	if s[i] == '"' {
		l.pop()
		l.pos = i + 1
		return token{kind: tChar, ch: '"', start: i, end: i + 1}
	}
	if s[i] == '$' && i+1 < len(s) && s[i+1] == '{' {
		l.push(sDefault)
		l.pos = i + 2
		return token{kind: tDOLLARCURLY, start: i, end: i + 2}
	}
	j := i
loop:
	for j < len(s) {
		switch s[j] {
		case '"':
			break loop
		case '\\':
			if j+1 < len(s) {
				j += 2
			} else {
				j++
			}
		case '$':
			if j+1 >= len(s) {
				j++
				break loop
			}
			switch s[j+1] {
			case '{':
				break loop
			case '"':
				j++
				break loop
			case '\\':
				if j+2 < len(s) {
					j += 3
				} else {
					j += 2
				}
			default:
				j += 2
			}
		default:
			j++
		}
	}
	l.pos = j
	return token{kind: tSTR, start: i, end: j, s: unescapeStr(s[i:j])}
}

// unescapeStr interprets the escapes of a "..." string part and turns CR and
// CR/LF into LF, as Nix's unescapeStr does.
func unescapeStr(raw []byte) string {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch c {
		case '\\':
			if i+1 >= len(raw) {
				// A lone backslash at the end of input: Nix reads the
				// terminating NUL; the parser fails anyway.
				continue
			}
			i++
			switch raw[i] {
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			default:
				out = append(out, raw[i])
			}
		case '\r':
			out = append(out, '\n')
			if i+1 < len(raw) && raw[i+1] == '\n' {
				i++
			}
		default:
			out = append(out, c)
		}
	}
	return string(out)
}

func (l *lexer) lexIndString() token {
	i := l.pos
	s := l.src
	if i >= len(s) {
		return token{kind: tEOF, start: i, end: i}
	}
	if s[i] == '\'' && l.at(i+1) == '\'' && i+1 < len(s) {
		if i+2 < len(s) {
			switch s[i+2] {
			case '\'':
				l.pos = i + 3
				return token{kind: tINDSTR, start: i, end: i + 3, s: "''"}
			case '$':
				l.pos = i + 3
				return token{kind: tINDSTR, start: i, end: i + 3, s: "$"}
			case '\\':
				if i+3 < len(s) {
					l.pos = i + 4
					return token{kind: tINDSTR, start: i, end: i + 4, s: unescapeStr(s[i+2 : i+4])}
				}
			}
		}
		l.pop()
		l.pos = i + 2
		return token{kind: tINDCLOSE, start: i, end: i + 2}
	}
	if s[i] == '$' && i+1 < len(s) && s[i+1] == '{' {
		l.push(sDefault)
		l.pos = i + 2
		return token{kind: tDOLLARCURLY, start: i, end: i + 2}
	}
	j := i
	for j < len(s) {
		c := s[j]
		if c != '$' && c != '\'' {
			j++
			continue
		}
		if j+1 >= len(s) {
			break
		}
		n := s[j+1]
		if c == '$' && n != '{' && n != '\'' {
			j += 2
			continue
		}
		if c == '\'' && n != '\'' && n != '$' {
			j += 2
			continue
		}
		break
	}
	if j > i {
		l.pos = j
		return token{kind: tINDSTR, start: i, end: j, s: string(s[i:j]), indent: true}
	}
	// A lone '$' or '\'' that cannot start a longer match.
	l.pos = i + 1
	return token{kind: tINDSTR, start: i, end: i + 1, s: string(s[i : i+1])}
}
