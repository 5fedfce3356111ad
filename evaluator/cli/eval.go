package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/castor-nix/castor/builder/realisecmd"
	"github.com/castor-nix/castor/evaluator/eval"
	"github.com/castor-nix/castor/evaluator/evalstore"
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
      --read-write-mode evaluate against the castor store: paths are added
                        to it, import from derivation builds (needs root)
  -h, --help            show this help
`

// NewEvalCommand returns `castor eval`; open opens the store for
// --read-write-mode (nil: evaluation never uses a store).
func NewEvalCommand(open realisecmd.OpenFunc) *cobra.Command {
	return &cobra.Command{
		Use:                "eval [options] [FILE... | -E EXPR...]",
		Short:              "Evaluate a Nix expression (nix-instantiate --eval)",
		Long:               evalUsage,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return RunEvalStore(cmd, args, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), os.LookupEnv, open)
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
	readWrite  bool
	help       bool
}

func parseEvalArgs(cmd *cobra.Command, args []string) (*evalOpts, error) {
	o := &evalOpts{}
	o.withGlobals(cmd)
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
		case "--read-write-mode":
			o.readWrite = true
		case "--readonly-mode":
			o.readWrite = false
		case "--eval":
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

// RunEval runs `castor eval` with the given arguments and streams,
// without a store.
func RunEval(cmd *cobra.Command, args []string, stdin io.Reader, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) error {
	return RunEvalStore(cmd, args, stdin, stdout, stderr, lookupEnv, nil)
}

// RunEvalStore runs `castor eval`. Like nix-instantiate --eval, it
// evaluates in read-only mode (store paths are computed, nothing is
// written, derivations are not built) unless --read-write-mode asks for
// the castor store, which open opens.
func RunEvalStore(cmd *cobra.Command, args []string, stdin io.Reader, stdout, stderr io.Writer, lookupEnv func(string) (string, bool), open realisecmd.OpenFunc) error {
	o, err := parseEvalArgs(cmd, args)
	if err != nil {
		return err
	}
	if err := applyGlobals(cmd, args); err != nil {
		return err
	}
	if o.help {
		io.WriteString(stdout, evalUsage)
		return nil
	}
	eval.TuneRuntime()
	ctx := cmd.Context()
	opts := eval.Options{SearchPath: o.searchPath(lookupEnv), LookupEnv: lookupEnv, TraceOutput: stderr}
	if o.readWrite {
		if open == nil {
			return errors.New("--read-write-mode: no store to write to")
		}
		rs, closeStore, err := open(cmd, false)
		if err != nil {
			return err
		}
		defer closeStore()
		opts.Store = &evalstore.Store{Blobs: rs.Blobs, Directories: rs.Directories, PathInfos: rs.PathInfos,
			Realiser: &lazyRealiser{st: rs, opts: realisecmd.RealiseOptions{Jobs: 1}, logw: stderr}}
	}
	ev := eval.New(ctx, opts)
	fail := func(err error) error {
		report(stderr, err, o.showTrace)
		return &ExitError{Code: 1, Msg: "evaluation failed"}
	}
	exprs, err := parseSources(ev, o.files, o.exprMode, stdin)
	if err != nil {
		return fail(err)
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

// parseSources parses what the command line names: expressions (-E),
// files, "-" for standard input, <name> for a search path lookup, and
// ./default.nix when nothing is named.
func parseSources(ev *eval.Evaluator, files []string, exprMode bool, stdin io.Reader) ([]*eval.Expr, error) {
	cwd, _ := os.Getwd()
	var exprs []*eval.Expr
	sources := files
	if len(sources) == 0 && !exprMode {
		sources = []string{"./default.nix"}
	}
	for _, s := range sources {
		var e *eval.Expr
		var err error
		switch {
		case exprMode && s != "-":
			e, err = ev.ParseString(s, "«string»", cwd, eval.Scope{})
		case s == "-":
			src, rerr := io.ReadAll(stdin)
			if rerr != nil {
				return nil, rerr
			}
			e, err = ev.ParseString(string(src), "«stdin»", cwd, eval.Scope{})
		case strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">"):
			e, err = ev.ParseString(s, "«string»", cwd, eval.Scope{})
		default:
			e, err = ev.ParseFile(filepath.Clean(s))
		}
		if err != nil {
			return nil, err
		}
		exprs = append(exprs, e)
	}
	return exprs, nil
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
