package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/castor-nix/castor/evaluator/eval"
	"github.com/castor-nix/castor/evaluator/syntax"
)

const evalUsage = `Usage: castor eval [options] [FILE... | -E EXPR...]

Evaluate Nix expressions and print the result, as nix-instantiate --eval
does. Without FILE or -E, ./default.nix is evaluated; "-" reads standard
input; <name> looks name up in the search path.

Options:
  -E, --expr            the arguments are expressions, not files
  -f, --file FILE       evaluate FILE
  -A, --attr PATH       select an attribute path (repeatable)
      --arg NAME EXPR   pass NAME = EXPR to a top-level function
      --argstr NAME S   pass NAME = "S" to a top-level function
  -I PATH               add PATH (or prefix=PATH) to the search path
      --strict          evaluate the result completely
      --json            print JSON
      --xml             print XML
      --no-location     omit source locations from XML
      --show-trace      show the trace of errors
      --parse           print the parsed expression instead of evaluating
  -h, --help            show this help
`

// NewEvalCommand returns `castor eval`.
func NewEvalCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "eval [options] [FILE... | -E EXPR...]",
		Short:              "Evaluate a Nix expression (nix-instantiate --eval)",
		Long:               evalUsage,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return RunEval(cmd, args, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), os.LookupEnv)
		},
	}
}

type evalOpts struct {
	common
	exprMode   bool
	files      []string
	attrPaths  []string
	strict     bool
	json, xml  bool
	noLocation bool
	parseOnly  bool
	help       bool
}

func parseEvalArgs(args []string) (*evalOpts, error) {
	o := &evalOpts{}
	for i := 0; i < len(args); {
		if n, err := o.consume(args, i); err != nil {
			return nil, err
		} else if n > 0 {
			i += n
			continue
		}
		a := args[i]
		next := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("flag '%s' requires an argument", a)
			}
			i++
			return args[i], nil
		}
		switch a {
		case "-E", "--expr":
			o.exprMode = true
		case "-f", "--file":
			f, err := next()
			if err != nil {
				return nil, err
			}
			o.files = append(o.files, f)
		case "-A", "--attr":
			p, err := next()
			if err != nil {
				return nil, err
			}
			o.attrPaths = append(o.attrPaths, p)
		case "--strict":
			o.strict = true
		case "--json":
			o.json = true
		case "--xml":
			o.xml = true
		case "--no-location":
			o.noLocation = true
		case "--parse":
			o.parseOnly = true
		case "--eval", "--read-write-mode", "--readonly-mode":
			// accepted for compatibility with nix-instantiate command lines
		case "-h", "--help":
			o.help = true
		case "-":
			o.files = append(o.files, "-")
		default:
			if strings.HasPrefix(a, "-") {
				return nil, fmt.Errorf("unrecognised flag '%s'", a)
			}
			o.files = append(o.files, a)
		}
		i++
	}
	return o, nil
}

// RunEval runs `castor eval` with the given arguments and streams.
func RunEval(cmd *cobra.Command, args []string, stdin io.Reader, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) error {
	o, err := parseEvalArgs(args)
	if err != nil {
		return err
	}
	if o.help {
		io.WriteString(stdout, evalUsage)
		return nil
	}
	eval.TuneRuntime()
	ctx := cmd.Context()
	ev := eval.New(ctx, eval.Options{SearchPath: o.searchPath(lookupEnv), LookupEnv: lookupEnv, TraceOutput: stderr})
	fail := func(err error) error {
		report(stderr, err, o.showTrace)
		return &ExitError{Code: 1, Msg: "evaluation failed"}
	}
	cwd, _ := os.Getwd()

	var exprs []*eval.Expr
	sources := o.files
	if len(sources) == 0 && !o.exprMode {
		sources = []string{"./default.nix"}
	}
	for _, s := range sources {
		var e *eval.Expr
		var err error
		switch {
		case o.exprMode && s != "-":
			e, err = ev.ParseString(s, "«string»", cwd, eval.Scope{})
		case s == "-":
			src, rerr := io.ReadAll(stdin)
			if rerr != nil {
				return rerr
			}
			e, err = ev.ParseString(string(src), "«stdin»", cwd, eval.Scope{})
		case strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">"):
			e, err = ev.ParseString(s, "«string»", cwd, eval.Scope{})
		default:
			e, err = ev.ParseFile(filepath.Clean(s))
		}
		if err != nil {
			return fail(err)
		}
		exprs = append(exprs, e)
	}
	if o.parseOnly {
		for _, e := range exprs {
			fmt.Fprintln(stdout, syntax.Show(e.AST()))
		}
		return nil
	}
	auto, err := o.autoArgs(ev)
	if err != nil {
		return fail(err)
	}
	paths := o.attrPaths
	if len(paths) == 0 {
		paths = []string{""}
	}
	for _, e := range exprs {
		root, err := ev.Eval(e)
		if err != nil {
			return fail(err)
		}
		for _, p := range paths {
			v, err := ev.SelectAttrPath(root, p, auto)
			if err != nil {
				return fail(err)
			}
			if !auto.Empty() {
				if v, err = ev.AutoCall(v, auto); err != nil {
					return fail(err)
				}
			}
			if err := ev.Print(stdout, v, eval.PrintOptions{Strict: o.strict, JSON: o.json, XML: o.xml, Location: !o.noLocation}); err != nil {
				return fail(err)
			}
		}
	}
	return nil
}

// report prints an error as Nix does.
func report(w io.Writer, err error, showTrace bool) {
	var e *eval.Error
	if errors.As(err, &e) {
		io.WriteString(w, e.Format(showTrace))
		return
	}
	fmt.Fprintf(w, "error: %v\n", err)
}
