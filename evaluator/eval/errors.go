package eval

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/castor-nix/castor/evaluator/syntax"
)

// Sentinel errors: every *Error unwraps to the one for its kind, so callers
// can test errors.Is(err, eval.ErrThrown) and so on.
var (
	ErrEval              = errors.New("evaluation error")
	ErrType              = errors.New("type error")
	ErrAssertion         = errors.New("assertion failed")
	ErrThrown            = errors.New("thrown")
	ErrAbort             = errors.New("aborted")
	ErrUndefinedVar      = errors.New("undefined variable")
	ErrInfiniteRecursion = errors.New("infinite recursion")
	ErrStackOverflow     = errors.New("stack overflow")
	ErrParse             = errors.New("parse error")
	ErrIO                = errors.New("i/o error")
	ErrInternal          = errors.New("internal error")
	ErrCanceled          = errors.New("evaluation canceled")
)

// Trace is one "… while evaluating" line of an error.
type Trace struct {
	Pos syntax.Pos
	Msg string
	// Call marks the "while evaluating 'f'" / "from call site" pairs,
	// which Nix only records with --show-trace.
	Call bool
}

// Error is an evaluation error: a message, the position it points at, and
// the trace of what was being evaluated (innermost first).
type Error struct {
	Kind  error // one of the sentinel errors above
	Msg   string
	Pos   syntax.Pos
	Trace []Trace
	// Suggestions are close names for a missing attribute ("Did you mean").
	Suggestions []string
	// Cause is the underlying Go error, if any (an I/O failure, a
	// canceled context).
	Cause error

	fset *syntax.FileSet
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the kind sentinel and the cause.
func (e *Error) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Kind, e.Cause}
	}
	return []error{e.Kind}
}

// catchable reports whether builtins.tryEval catches the error (only
// throw and failed assertions, as in Nix).
func (e *Error) catchable() bool {
	return e.Kind == ErrThrown || e.Kind == ErrAssertion
}

// Position returns the resolved position of the error.
func (e *Error) Position() syntax.Position {
	if e.fset == nil {
		return syntax.Position{}
	}
	return e.fset.Position(e.Pos)
}

// Format renders the error as Nix 2.8 prints it: the message, the position
// with a source excerpt and, if showTrace, the trace.
func (e *Error) Format(showTrace bool) string {
	var b strings.Builder
	b.WriteString(e.Msg)
	b.WriteString("\n")
	e.writePos(&b, e.Pos)
	if len(e.Suggestions) > 0 {
		b.WriteString("Did you mean ")
		switch len(e.Suggestions) {
		case 1:
			b.WriteString(e.Suggestions[0])
		default:
			b.WriteString("one of ")
			b.WriteString(strings.Join(e.Suggestions[:len(e.Suggestions)-1], ", "))
			b.WriteString(" or ")
			b.WriteString(e.Suggestions[len(e.Suggestions)-1])
		}
		b.WriteString("?\n")
	}
	if showTrace {
		for _, t := range e.Trace {
			b.WriteString("\n… ")
			b.WriteString(t.Msg)
			b.WriteString("\n")
			e.writePos(&b, t.Pos)
		}
	}
	text := strings.TrimRight(b.String(), "\n")
	var out strings.Builder
	for i, line := range strings.Split(text, "\n") {
		if i == 0 {
			out.WriteString("error: ")
		} else {
			out.WriteString("\n")
			if line != "" {
				out.WriteString("       ")
			}
		}
		out.WriteString(line)
	}
	out.WriteString("\n")
	if !showTrace && e.hasNonCallTrace() {
		out.WriteString("(use '--show-trace' to show detailed location information)\n")
	}
	return out.String()
}

func (e *Error) hasNonCallTrace() bool {
	for _, t := range e.Trace {
		if !t.Call {
			return true
		}
	}
	return false
}

func (e *Error) writePos(b *strings.Builder, p syntax.Pos) {
	if e.fset == nil || !p.IsValid() {
		return
	}
	pos := e.fset.Position(p)
	if !pos.IsValid() {
		return
	}
	b.WriteString("\nat ")
	b.WriteString(pos.String())
	b.WriteString(":")
	f := pos.File
	if f.NoExcerpt {
		return
	}
	b.WriteString("\n")
	line := func(n int) {
		if l, ok := f.Line(n); ok {
			fmt.Fprintf(b, "\n %5d| %s", n, l)
		}
	}
	if pos.Line > 1 {
		line(pos.Line - 1)
	}
	line(pos.Line)
	if pos.Column > 0 {
		b.WriteString("\n      |")
		b.WriteString(strings.Repeat(" ", pos.Column))
		b.WriteString("^")
	}
	if _, ok := f.Line(pos.Line + 1); ok {
		line(pos.Line + 1)
	}
	b.WriteString("\n")
}

// throw raises an evaluation error. Errors travel as Go panics inside the
// evaluator and become ordinary error values at its API boundary.
func (ev *Evaluator) throw(kind error, pos syntax.Pos, format string, args ...any) {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	panic(&Error{Kind: kind, Msg: msg, Pos: pos, fset: ev.fset})
}

func (ev *Evaluator) typeError(pos syntax.Pos, v Value, want string) {
	ev.throw(ErrType, pos, "value is %s while %s was expected", showType(v), want)
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// bestMatches returns the names closest to want by edit distance (at most
// 2, at most 5 of them, closest first), as Nix's "Did you mean" does.
func bestMatches(names []string, want string) []string {
	type cand struct {
		d int
		s string
	}
	var cs []cand
	for _, n := range names {
		if d := levenshtein(want, n); d <= 2 {
			cs = append(cs, cand{d, n})
		}
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].d != cs[j].d {
			return cs[i].d < cs[j].d
		}
		return cs[i].s < cs[j].s
	})
	var out []string
	for i := 0; i < len(cs) && i < 5; i++ {
		out = append(out, cs[i].s)
	}
	return out
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
