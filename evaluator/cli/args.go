package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/castor-nix/castor/evaluator/eval"
)

// ExitError reports that a command failed after printing its own
// diagnostics; Code is the exit status to use.
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }

// ExitCode returns the status the process should exit with.
func (e *ExitError) ExitCode() int { return e.Code }

// autoArg is one --arg or --argstr.
type autoArg struct {
	name, value string
	str         bool
}

// common are the options eval and repl share.
type common struct {
	search    []string
	args      []autoArg
	showTrace bool
	// inherited are the global flags (--store…), which commands that parse
	// their own arguments must recognise too.
	inherited *pflag.FlagSet
}

// consume handles a shared option at args[i]; it returns how many
// arguments it used (0 if args[i] is not one of them).
func (c *common) consume(args []string, i int) (int, error) {
	a := args[i]
	need := func(n int) error {
		if i+n >= len(args) {
			return fmt.Errorf("flag '%s' requires %d argument(s)", a, n)
		}
		return nil
	}
	switch {
	case a == "-I" || a == "--include":
		if err := need(1); err != nil {
			return 0, err
		}
		c.search = append(c.search, args[i+1])
		return 2, nil
	case strings.HasPrefix(a, "-I") && len(a) > 2:
		c.search = append(c.search, a[2:])
		return 1, nil
	case a == "--arg" || a == "--argstr":
		if err := need(2); err != nil {
			return 0, err
		}
		c.args = append(c.args, autoArg{name: args[i+1], value: args[i+2], str: a == "--argstr"})
		return 3, nil
	case a == "--show-trace":
		c.showTrace = true
		return 1, nil
	}
	return c.consumeInherited(args, i)
}

// consumeInherited sets a global flag (--store DIR, --store=DIR…) at
// args[i].
func (c *common) consumeInherited(args []string, i int) (int, error) {
	name, ok := strings.CutPrefix(args[i], "--")
	if c.inherited == nil || !ok || name == "" {
		return 0, nil
	}
	name, value, hasValue := strings.Cut(name, "=")
	f := c.inherited.Lookup(name)
	if f == nil {
		return 0, nil
	}
	n := 1
	if !hasValue {
		if f.NoOptDefVal != "" {
			value = f.NoOptDefVal
		} else {
			if i+1 >= len(args) {
				return 0, fmt.Errorf("flag '%s' requires an argument", args[i])
			}
			value, n = args[i+1], 2
		}
	}
	if err := f.Value.Set(value); err != nil {
		return 0, fmt.Errorf("flag '--%s': %w", name, err)
	}
	f.Changed = true
	return n, nil
}

// withGlobals makes c recognise cmd's global flags; after parsing, call
// applyGlobals.
func (c *common) withGlobals(cmd *cobra.Command) {
	if cmd != nil {
		c.inherited = cmd.InheritedFlags()
	}
}

// applyGlobals reruns the root command's set-up (logging) once the global
// flags among the arguments are set.
func applyGlobals(cmd *cobra.Command, args []string) error {
	if cmd == nil {
		return nil
	}
	if root := cmd.Root(); root != cmd && root.PersistentPreRunE != nil {
		return root.PersistentPreRunE(cmd, args)
	}
	return nil
}

// searchPath is -I entries, then NIX_PATH's.
func (c *common) searchPath(lookupEnv func(string) (string, bool)) []string {
	sp := append([]string(nil), c.search...)
	if np, ok := lookupEnv("NIX_PATH"); ok {
		sp = append(sp, splitNixPath(np)...)
	}
	return sp
}

// splitNixPath splits NIX_PATH at colons, except the one of a URL
// ("nixpkgs=https://…").
func splitNixPath(s string) []string {
	var out []string
	parts := strings.Split(s, ":")
	for i := 0; i < len(parts); i++ {
		p := parts[i]
		for i+1 < len(parts) && strings.HasPrefix(parts[i+1], "//") && isScheme(p) {
			p += ":" + parts[i+1]
			i++
		}
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func isScheme(p string) bool {
	if i := strings.LastIndexByte(p, '='); i >= 0 {
		p = p[i+1:]
	}
	switch p {
	case "http", "https", "file", "channel", "flake", "git+https", "git+ssh", "git":
		return true
	}
	return false
}

// autoArgs evaluates the --arg/--argstr options (lazily, for --arg).
func (c *common) autoArgs(ev *eval.Evaluator) (*eval.AutoArgs, error) {
	args := &eval.AutoArgs{}
	cwd, _ := os.Getwd()
	for _, a := range c.args {
		if a.str {
			args.Add(ev, a.name, eval.Str(a.value))
			continue
		}
		e, err := ev.ParseString(a.value, "«string»", cwd, eval.Scope{})
		if err != nil {
			return nil, err
		}
		args.Add(ev, a.name, ev.Lazy(e))
	}
	return args, nil
}
