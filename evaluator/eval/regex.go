package eval

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Nix's builtins.match and builtins.split use C++ std::regex with the POSIX
// extended grammar (libstdc++, strict ANSI). This file translates such an
// expression into Go's syntax and runs it with Go's leftmost-longest
// matcher, reproducing libstdc++'s behaviour where the two differ:
//
//   - only . [ \ ( ) * + ? { | ^ $ may be escaped; other escapes (\d, \w,
//     \/, \}) are errors; inside brackets a backslash is literal;
//   - '.' matches any byte but NUL, newlines included;
//   - a repetition may follow a repetition (a**, a+? is (a+)?);
//   - matching is on bytes, not UTF-8 characters;
//   - split finds matches as std::regex_iterator does, including an empty
//     match right after a non-empty one.

type nixRegex struct {
	full  *regexp.Regexp // ^(?:re)$ for match
	find  *regexp.Regexp // re, for the first search of split
	notBO *regexp.Regexp // re with ^ never matching, for searches from an offset > 0
	ncap  int
}

var errBadRegex = errors.New("invalid regular expression")

func (ev *Evaluator) compileRegex(re string) (*nixRegex, error) {
	if r, ok := ev.regexCache[re]; ok {
		return r, nil
	}
	g, err := translateERE(re, false)
	if err != nil {
		return nil, err
	}
	g2, _ := translateERE(re, true)
	r := &nixRegex{}
	if r.full, err = regexp.Compile(`^(?:` + g + `)$`); err != nil {
		return nil, errBadRegex
	}
	if r.find, err = regexp.Compile(g); err != nil {
		return nil, errBadRegex
	}
	if r.notBO, err = regexp.Compile(g2); err != nil {
		return nil, errBadRegex
	}
	r.full.Longest()
	r.find.Longest()
	r.notBO.Longest()
	r.ncap = r.find.NumSubexp()
	if ev.regexCache == nil {
		ev.regexCache = map[string]*nixRegex{}
	}
	ev.regexCache[re] = r
	return r, nil
}

// byteRunes maps every byte of s to the rune of the same value, so that Go's
// UTF-8 matcher sees one character per byte. It returns s itself when s is
// ASCII, and otherwise the offsets of each original byte in the result.
func byteRunes(s string) (string, []int) {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return s, nil
	}
	var b strings.Builder
	offs := make([]int, len(s)+1)
	for i := 0; i < len(s); i++ {
		offs[i] = b.Len()
		b.WriteRune(rune(s[i]))
	}
	offs[len(s)] = b.Len()
	return b.String(), offs
}

// back maps an offset in byteRunes' result to one in the original.
func back(offs []int, o int) int {
	if offs == nil || o < 0 {
		return o
	}
	// offs is increasing; binary search.
	lo, hi := 0, len(offs)-1
	for lo < hi {
		m := (lo + hi) / 2
		if offs[m] < o {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

func writeLiteral(b *strings.Builder, c byte, inClass bool) {
	r := rune(c)
	if c < 0x20 || c == 0x7f || c >= 0x80 {
		b.WriteString(`\x{` + strconv.FormatInt(int64(r), 16) + `}`)
		return
	}
	if inClass {
		switch c {
		case '\\', ']', '[', '^', '-':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
		return
	}
	if strings.IndexByte(`\.+*?()|[]{}^$`, c) >= 0 {
		b.WriteByte('\\')
	}
	b.WriteByte(c)
}

var posixClasses = map[string]string{
	"alnum": `[:alnum:]`, "alpha": `[:alpha:]`, "blank": `[:blank:]`, "cntrl": `[:cntrl:]`,
	"digit": `[:digit:]`, "graph": `[:graph:]`, "lower": `[:lower:]`, "print": `[:print:]`,
	"punct": `[:punct:]`, "space": `[:space:]`, "upper": `[:upper:]`, "xdigit": `[:xdigit:]`,
	"d": `0-9`, "w": `0-9A-Za-z_`, "s": `\t\n\v\f\r `,
}

// translateERE converts a POSIX extended regular expression (as libstdc++
// reads it) to Go syntax. With notBOL, ^ never matches.
func translateERE(re string, notBOL bool) (string, error) {
	var b strings.Builder
	depth := 0
	// canRepeat: the previous item is an atom (or a repetition) that a
	// repetition operator may apply to; lastStart is where it begins in b.
	canRepeat := false
	lastStart := 0
	repeated := false
	repeat := func(op string) error {
		if !canRepeat {
			return errBadRegex
		}
		if repeated {
			// A repetition of a repetition: group it first.
			s := b.String()
			b.Reset()
			b.WriteString(s[:lastStart] + "(?:" + s[lastStart:] + ")")
		}
		b.WriteString(op)
		repeated = true
		return nil
	}
	groupStarts := []int{}
	for i := 0; i < len(re); i++ {
		c := re[i]
		switch c {
		case '\\':
			i++
			if i >= len(re) || strings.IndexByte(".[\\()*+?{|^$", re[i]) < 0 {
				return "", errBadRegex
			}
			lastStart = b.Len()
			writeLiteral(&b, re[i], false)
			canRepeat, repeated = true, false
		case '.':
			lastStart = b.Len()
			b.WriteString(`[^\x00]`)
			canRepeat, repeated = true, false
		case '(':
			groupStarts = append(groupStarts, b.Len())
			b.WriteByte('(')
			depth++
			canRepeat, repeated = false, false
		case ')':
			if depth == 0 {
				return "", errBadRegex
			}
			depth--
			b.WriteByte(')')
			lastStart = groupStarts[len(groupStarts)-1]
			groupStarts = groupStarts[:len(groupStarts)-1]
			canRepeat, repeated = true, false
		case '|':
			b.WriteByte('|')
			canRepeat, repeated = false, false
		case '^':
			lastStart = b.Len()
			if notBOL {
				b.WriteString(`[^\x00-\x{10FFFF}]`)
			} else {
				b.WriteString(`^`)
			}
			canRepeat, repeated = true, false
		case '$':
			lastStart = b.Len()
			b.WriteString(`$`)
			canRepeat, repeated = true, false
		case '*', '+', '?':
			if err := repeat(string(c)); err != nil {
				return "", err
			}
		case '{':
			j := i + 1
			start := j
			for j < len(re) && re[j] >= '0' && re[j] <= '9' {
				j++
			}
			if j == start {
				return "", errBadRegex
			}
			lo := re[start:j]
			hi := lo
			comma := false
			if j < len(re) && re[j] == ',' {
				comma = true
				j++
				s := j
				for j < len(re) && re[j] >= '0' && re[j] <= '9' {
					j++
				}
				hi = re[s:j]
			}
			if j >= len(re) || re[j] != '}' {
				return "", errBadRegex
			}
			if comma && hi != "" {
				l, _ := strconv.Atoi(lo)
				h, _ := strconv.Atoi(hi)
				if h < l {
					return "", errBadRegex
				}
			}
			op := "{" + lo
			if comma {
				op += "," + hi
			}
			op += "}"
			if err := repeat(op); err != nil {
				return "", err
			}
			i = j
		case '[':
			lastStart = b.Len()
			n, err := translateBracket(&b, re[i:])
			if err != nil {
				return "", err
			}
			i += n - 1
			canRepeat, repeated = true, false
		default:
			lastStart = b.Len()
			writeLiteral(&b, c, false)
			canRepeat, repeated = true, false
		}
	}
	if depth != 0 {
		return "", errBadRegex
	}
	return b.String(), nil
}

// translateBracket translates the bracket expression at the start of s and
// returns its length.
func translateBracket(b *strings.Builder, s string) (int, error) {
	i := 1
	b.WriteByte('[')
	if i < len(s) && s[i] == '^' {
		b.WriteByte('^')
		i++
	}
	first := true
	var prev int = -1 // previous single character, for ranges
	for {
		if i >= len(s) {
			return 0, errBadRegex
		}
		c := s[i]
		if c == ']' && !first {
			b.WriteByte(']')
			return i + 1, nil
		}
		first = false
		if c == '[' && i+1 < len(s) && (s[i+1] == ':' || s[i+1] == '=' || s[i+1] == '.') {
			kind := s[i+1]
			end := strings.Index(s[i+2:], string(kind)+"]")
			if end < 0 {
				return 0, errBadRegex
			}
			name := s[i+2 : i+2+end]
			i += 2 + end + 2
			switch kind {
			case ':':
				cls, ok := posixClasses[name]
				if !ok {
					return 0, errBadRegex
				}
				b.WriteString(cls)
				prev = -1
			default:
				if len(name) != 1 {
					return 0, errBadRegex
				}
				writeLiteral(b, name[0], true)
				prev = int(name[0])
			}
			continue
		}
		if c == '-' && prev >= 0 && i+1 < len(s) && s[i+1] != ']' {
			hi := s[i+1]
			n := 2
			if hi == '[' && i+2 < len(s) && (s[i+2] == '.' || s[i+2] == '=') {
				kind := s[i+2]
				end := strings.Index(s[i+3:], string(kind)+"]")
				if end != 1 {
					return 0, errBadRegex
				}
				hi = s[i+3]
				n = 3 + end + 2
			}
			if int(hi) < prev {
				return 0, errBadRegex
			}
			b.WriteByte('-')
			writeLiteral(b, hi, true)
			i += n
			prev = -1
			continue
		}
		writeLiteral(b, c, true)
		prev = int(c)
		i++
	}
}

// matchFull returns the submatches of a full match of s, or ok=false.
func (r *nixRegex) matchFull(s string) (subs []string, matched []bool, ok bool) {
	t, offs := byteRunes(s)
	m := r.full.FindStringSubmatchIndex(t)
	if m == nil {
		return nil, nil, false
	}
	subs = make([]string, r.ncap)
	matched = make([]bool, r.ncap)
	for i := 0; i < r.ncap; i++ {
		a, b := m[2*i+2], m[2*i+3]
		if a >= 0 {
			subs[i] = s[back(offs, a):back(offs, b)]
			matched[i] = true
		}
	}
	return subs, matched, true
}

// findAll returns the matches std::regex_iterator produces over s, each as
// submatch index pairs into s (whole match first).
func (r *nixRegex) findAll(s string) [][]int {
	t, offs := byteRunes(s)
	search := func(from int) []int {
		re := r.find
		if from > 0 {
			re = r.notBO
		}
		m := re.FindStringSubmatchIndex(t[from:])
		if m == nil {
			return nil
		}
		for i := range m {
			if m[i] >= 0 {
				m[i] += from
			}
		}
		return m
	}
	var out [][]int
	m := search(0)
	for m != nil {
		out = append(out, m)
		end := m[1]
		if m[0] != m[1] {
			m = search(end)
			continue
		}
		// After an empty match, libstdc++ first tries a non-empty match
		// anchored at the same place, then searches from one further on.
		if n := search(end); n != nil && n[0] == end && n[1] > end {
			m = n
			continue
		}
		if end >= len(t) {
			break
		}
		_, size := utf8.DecodeRuneInString(t[end:])
		m = search(end + size)
	}
	if offs != nil {
		for _, m := range out {
			for i := range m {
				m[i] = back(offs, m[i])
			}
		}
	}
	return out
}
