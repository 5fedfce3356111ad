package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/peterh/liner"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/castor-nix/castor/evaluator/eval"
)

const replUsage = `Usage: castor repl [options] [FILE...]

An interactive Nix evaluator. Each FILE (or <name>) is loaded as with :l.

Options:
  --arg NAME EXPR, --argstr NAME S, -I PATH, --show-trace (as for eval)

Input:
  EXPR          evaluate and print EXPR
  NAME = EXPR   bind NAME to EXPR for later lines
  :l FILE       load the attributes of FILE (or <name>) into scope
  :a EXPR       add the attributes of EXPR to scope
  :p EXPR       evaluate EXPR completely and print it
  :t EXPR       show the type of EXPR
  :q            quit
  :?            show this help
`

// NewReplCommand returns `castor repl`.
func NewReplCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "repl [options] [FILE...]",
		Short:              "Evaluate Nix expressions interactively",
		Long:               replUsage,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return RunRepl(cmd, args, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), os.LookupEnv)
		},
	}
}

// lineReader reads input lines with a prompt.
type lineReader interface {
	Prompt(prompt string) (string, error)
	AppendHistory(line string)
	Close() error
}

// plainReader reads lines from a non-terminal, echoing no prompt.
type plainReader struct{ r *bufio.Reader }

func (p *plainReader) Prompt(string) (string, error) {
	l, err := p.r.ReadString('\n')
	if err != nil && l == "" {
		return "", err
	}
	return strings.TrimRight(l, "\r\n"), nil
}
func (p *plainReader) AppendHistory(string) {}
func (p *plainReader) Close() error         { return nil }

// linerReader is a terminal with line editing and persistent history.
type linerReader struct {
	l    *liner.State
	hist string
}

func newLinerReader() *linerReader {
	l := liner.NewLiner()
	l.SetCtrlCAborts(true)
	r := &linerReader{l: l}
	dir := os.Getenv("XDG_DATA_HOME")
	if dir == "" {
		if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, ".local", "share")
		}
	}
	if dir != "" {
		r.hist = filepath.Join(dir, "castor", "repl-history")
		if f, err := os.Open(r.hist); err == nil {
			l.ReadHistory(f)
			f.Close()
		}
	}
	return r
}

func (r *linerReader) Prompt(p string) (string, error) {
	s, err := r.l.Prompt(p)
	if errors.Is(err, liner.ErrPromptAborted) {
		return "", nil
	}
	return s, err
}

func (r *linerReader) AppendHistory(line string) { r.l.AppendHistory(line) }

func (r *linerReader) Close() error {
	if r.hist != "" {
		if err := os.MkdirAll(filepath.Dir(r.hist), 0o755); err == nil {
			if f, err := os.Create(r.hist); err == nil {
				r.l.WriteHistory(f)
				f.Close()
			}
		}
	}
	return r.l.Close()
}

// repl is the state of a session: the evaluator and the scope lines see.
// A binding makes a new Scope; nothing in the evaluator is mutated.
type repl struct {
	ev        *eval.Evaluator
	scope     eval.Scope
	auto      *eval.AutoArgs
	out, err  io.Writer
	showTrace bool
	cwd       string
}

// RunRepl runs `castor repl`. When stdin is a terminal it uses line
// editing and history; otherwise it reads lines from stdin silently.
func RunRepl(cmd *cobra.Command, args []string, stdin io.Reader, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) error {
	var c common
	var files []string
	for i := 0; i < len(args); {
		n, err := c.consume(args, i)
		if err != nil {
			return err
		}
		if n > 0 {
			i += n
			continue
		}
		switch a := args[i]; {
		case a == "-h" || a == "--help":
			io.WriteString(stdout, replUsage)
			return nil
		case strings.HasPrefix(a, "-"):
			return fmt.Errorf("unrecognised flag '%s'", a)
		default:
			files = append(files, a)
		}
		i++
	}
	eval.TuneRuntime()
	ev := eval.New(cmd.Context(), eval.Options{SearchPath: c.searchPath(lookupEnv), LookupEnv: lookupEnv, TraceOutput: stderr})
	r := &repl{ev: ev, out: stdout, err: stderr, showTrace: c.showTrace}
	r.cwd, _ = os.Getwd()
	auto, err := c.autoArgs(ev)
	if err != nil {
		report(stderr, err, c.showTrace)
		return &ExitError{Code: 1, Msg: "bad --arg"}
	}
	r.auto = auto

	var lr lineReader
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) && liner.TerminalSupported() {
		lr = newLinerReader()
		fmt.Fprintln(stdout, "Welcome to castor repl. Type :? for help.")
	} else {
		lr = &plainReader{r: bufio.NewReader(stdin)}
	}
	defer lr.Close()
	for _, f := range files {
		r.load(f)
	}
	return r.loop(lr)
}

func (r *repl) loop(lr lineReader) error {
	var pending string
	for {
		prompt := "nix-repl> "
		if pending != "" {
			prompt = "          "
		}
		line, err := lr.Prompt(prompt)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		input := line
		if pending != "" {
			input = pending + "\n" + line
		}
		if strings.TrimSpace(input) == "" {
			pending = ""
			continue
		}
		quit, incomplete := r.handle(input)
		if incomplete {
			pending = input
			continue
		}
		pending = ""
		lr.AppendHistory(input)
		if quit {
			return nil
		}
	}
}

// handle processes one input; it reports whether to quit and whether the
// input is an incomplete expression that needs more lines.
func (r *repl) handle(input string) (quit, incomplete bool) {
	s := strings.TrimSpace(input)
	if strings.HasPrefix(s, ":") {
		cmd, arg, _ := strings.Cut(s, " ")
		arg = strings.TrimSpace(arg)
		switch cmd {
		case ":q", ":quit":
			return true, false
		case ":?", ":help":
			io.WriteString(r.out, replUsage)
		case ":l", ":load":
			r.load(arg)
		case ":a", ":add":
			if v, ok, inc := r.eval(arg); ok {
				r.addAttrs(v)
			} else if inc {
				return false, true
			}
		case ":p", ":print":
			if v, ok, inc := r.eval(arg); ok {
				fmt.Fprintln(r.out, r.ev.ReplString(v, 1<<30))
			} else if inc {
				return false, true
			}
		case ":t", ":type":
			if v, ok, inc := r.eval(arg); ok {
				fmt.Fprintln(r.out, r.ev.ShowType(v))
			} else if inc {
				return false, true
			}
		default:
			fmt.Fprintf(r.err, "error: unknown command '%s'\n", cmd)
		}
		return false, false
	}
	if name, expr, ok := splitBinding(s); ok {
		e, err := r.ev.ParseString(expr, "«string»", r.cwd, r.scope)
		if err != nil {
			if isIncomplete(err) {
				return false, true
			}
			report(r.err, err, r.showTrace)
			return false, false
		}
		r.scope = r.scope.With(name, r.ev.Lazy(e))
		return false, false
	}
	if v, ok, inc := r.eval(s); ok {
		fmt.Fprintln(r.out, r.ev.ReplString(v, 1))
	} else if inc {
		return false, true
	}
	return false, false
}

// eval parses and evaluates src in the current scope to WHNF.
func (r *repl) eval(src string) (v eval.Value, ok, incomplete bool) {
	e, err := r.ev.ParseString(src, "«string»", r.cwd, r.scope)
	if err != nil {
		if isIncomplete(err) {
			return v, false, true
		}
		report(r.err, err, r.showTrace)
		return v, false, false
	}
	v, err = r.ev.Eval(e)
	if err != nil {
		report(r.err, err, r.showTrace)
		return v, false, false
	}
	return v, true, false
}

func isIncomplete(err error) bool {
	var e *eval.Error
	return errors.As(err, &e) && errors.Is(err, eval.ErrParse) && strings.Contains(e.Msg, "unexpected end of file")
}

// load evaluates a file (auto-called with --arg values) and adds its
// attributes to the scope.
func (r *repl) load(arg string) {
	src := arg
	if !(strings.HasPrefix(arg, "<") && strings.HasSuffix(arg, ">")) {
		abs, err := filepath.Abs(arg)
		if err != nil {
			report(r.err, err, r.showTrace)
			return
		}
		src = "import " + quote(abs)
	} else {
		src = "import " + arg
	}
	v, ok, _ := r.eval(src)
	if !ok {
		return
	}
	v, err := r.ev.AutoCall(v, r.auto)
	if err != nil {
		report(r.err, err, r.showTrace)
		return
	}
	r.addAttrs(v)
}

func quote(s string) string {
	return "\"" + strings.NewReplacer("\\", "\\\\", "\"", "\\\"", "$", "\\$").Replace(s) + "\""
}

func (r *repl) addAttrs(v eval.Value) {
	v, err := r.ev.Force(v)
	if err != nil {
		report(r.err, err, r.showTrace)
		return
	}
	names := r.ev.AttrNames(v)
	if names == nil && v.Type() != "set" {
		fmt.Fprintf(r.err, "error: value is %s while a set was expected\n", r.ev.ShowType(v))
		return
	}
	sort.Strings(names)
	for _, n := range names {
		a, _ := r.ev.Attr(v, n)
		r.scope = r.scope.With(n, a)
	}
	fmt.Fprintf(r.out, "Added %d variables.\n", len(names))
}

// splitBinding recognises "name = expr" (but not "a == b").
func splitBinding(s string) (string, string, bool) {
	i := 0
	for i < len(s) && (s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z' || s[i] == '_' ||
		i > 0 && (s[i] >= '0' && s[i] <= '9' || s[i] == '\'' || s[i] == '-')) {
		i++
	}
	if i == 0 {
		return "", "", false
	}
	name := s[:i]
	rest := strings.TrimLeft(s[i:], " \t")
	if !strings.HasPrefix(rest, "=") || strings.HasPrefix(rest, "==") {
		return "", "", false
	}
	switch name {
	case "if", "then", "else", "assert", "with", "let", "in", "rec", "inherit", "or":
		return "", "", false
	}
	return name, strings.TrimSpace(rest[1:]), true
}
