package difftest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"

	"github.com/castor-nix/castor/evaluator/eval"
)

// Result is the outcome of evaluating one expression: the printed value,
// or the first line of the error message.
type Result struct {
	Out string // printed value, without the final newline
	Err string // "" on success, else the error's first line without "error: "
}

func (r Result) String() string {
	if r.Err != "" {
		return "error: " + r.Err
	}
	return r.Out
}

// Nix evaluates expressions with nix-instantiate --eval --strict in
// read-only mode against the dummy store (nothing is written anywhere).
type Nix struct {
	Bin string // path of nix-instantiate
	Dir string // working directory (relative paths)
}

// EvalAll evaluates exprs in as few nix-instantiate runs as possible: one
// run prints one line per expression and stops at the first error, so a
// batch is rerun from the expression after a failing one.
func (n *Nix) EvalAll(ctx context.Context, exprs []string) ([]Result, error) {
	return n.EvalAllMode(ctx, exprs, "--strict")
}

// EvalAllMode is EvalAll with other output flags ("--strict", "--json",
// "" for the lazy printer…); the output of each value must be one line.
func (n *Nix) EvalAllMode(ctx context.Context, exprs []string, mode ...string) ([]Result, error) {
	res := make([]Result, len(exprs))
	for start := 0; start < len(exprs); {
		args := []string{"--eval", "--readonly-mode"}
		for _, m := range mode {
			if m != "" {
				args = append(args, m)
			}
		}
		args = append(args, "-E")
		args = append(args, exprs[start:]...)
		cmd := exec.CommandContext(ctx, n.Bin, args...)
		cmd.Dir = n.Dir
		cmd.Env = append(os.Environ(), "NIX_REMOTE=dummy://", "NIX_PATH=", "NIX_CONFIG=")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		lines := strings.Split(stdout.String(), "\n")
		if len(lines) > 0 && lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		}
		for i, l := range lines {
			res[start+i] = Result{Out: l}
		}
		if err == nil {
			if len(lines) != len(exprs)-start {
				return nil, errors.New("nix-instantiate printed an unexpected number of lines (a value spanning lines?)")
			}
			break
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return nil, err
		}
		failed := start + len(lines)
		if failed >= len(exprs) {
			return nil, errors.New("nix-instantiate failed after printing every value: " + stderr.String())
		}
		res[failed] = Result{Err: firstErrorLine(stderr.String())}
		start = failed + 1
	}
	return res, nil
}

func firstErrorLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "error: ") {
			l = strings.TrimPrefix(l, "error: ")
			// Bison's list of expected tokens is not reproduced.
			if strings.HasPrefix(l, "syntax error, ") {
				if i := strings.Index(l, ", expecting "); i >= 0 {
					l = l[:i]
				}
			}
			return l
		}
	}
	return strings.TrimSpace(s)
}

// Castor evaluates expr with a fresh evaluator as `castor eval --strict -E`
// does, with dir as the base directory.
func Castor(ctx context.Context, expr, dir string) Result {
	return CastorMode(ctx, expr, dir, eval.PrintOptions{Strict: true})
}

// CastorMode is Castor with other print options.
func CastorMode(ctx context.Context, expr, dir string, opts eval.PrintOptions) Result {
	ev := eval.New(ctx, eval.Options{LookupEnv: func(k string) (string, bool) {
		if k == "NIX_PATH" {
			return "", false
		}
		return os.LookupEnv(k)
	}, TraceOutput: discard{}})
	e, err := ev.ParseString(expr, "«string»", dir, eval.Scope{})
	if err != nil {
		return errResult(err)
	}
	v, err := ev.Eval(e)
	if err != nil {
		return errResult(err)
	}
	var out bytes.Buffer
	if err := ev.Print(&out, v, opts); err != nil {
		return errResult(err)
	}
	return Result{Out: strings.TrimSuffix(out.String(), "\n")}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func errResult(err error) Result {
	var e *eval.Error
	if errors.As(err, &e) {
		return Result{Err: firstErrorLine(e.Format(false))}
	}
	return Result{Err: err.Error()}
}

// castorFileError evaluates a file strictly and returns the formatted
// error ("" if it succeeds).
func castorFileError(ctx context.Context, path string, showTrace bool) string {
	ev := eval.New(ctx, eval.Options{TraceOutput: discard{}})
	e, err := ev.ParseFile(path)
	if err == nil {
		var v eval.Value
		if v, err = ev.Eval(e); err == nil {
			err = ev.Print(discard{}, v, eval.PrintOptions{Strict: true})
		}
	}
	var ee *eval.Error
	if errors.As(err, &ee) {
		return ee.Format(showTrace)
	}
	if err != nil {
		return err.Error()
	}
	return ""
}
