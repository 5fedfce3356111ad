package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/castor-nix/castor/builder/realise"
	"github.com/castor-nix/castor/builder/realisecmd"
	"github.com/castor-nix/castor/evaluator/eval"
	"github.com/castor-nix/castor/evaluator/evalio"
	"github.com/castor-nix/castor/evaluator/evalstore"
)

const instantiateUsage = `Usage: castor instantiate [options] [FILE... | -E EXPR...]

Evaluate Nix expressions to derivations and write their .drv files (and
the sources they need) into the castor store, printing each .drv path as
nix-instantiate does ("!OUTPUT" is appended when a derivation value stands
for an output other than out). Without FILE or -E, ./default.nix is used;
"-" reads standard input; <name> looks name up in the search path.

Options:
  -E, --expr            the arguments are expressions, not files
  -A, --attr PATH       select an attribute path (repeatable)
      --arg NAME EXPR   pass NAME = EXPR to a top-level function
      --argstr NAME S   pass NAME = "S" to a top-level function
  -I PATH               add PATH (or prefix=PATH) to the search path
      --readonly-mode   compute the paths without writing anything
      --show-trace      show the trace of errors
      --eval            evaluate only, as castor eval (takes its options)
  -h, --help            show this help
` + buildFlagsUsage

const buildUsage = `Usage: castor build [options] [FILE... | -E EXPR...]

Instantiate Nix expressions as castor instantiate does, build the
derivations hermetically (as castor realise does: in a namespace sandbox or
a micro-VM that sees only each build's inputs) and print the output path
each derivation value stands for, as nix-build does. No result symlink is
made unless -o asks for one. Building needs root and /dev/fuse.

Options:
  -E, --expr            the arguments are expressions, not files
  -A, --attr PATH       select an attribute path (repeatable)
      --arg NAME EXPR   pass NAME = EXPR to a top-level function
      --argstr NAME S   pass NAME = "S" to a top-level function
  -I PATH               add PATH (or prefix=PATH) to the search path
  -o, --out-link PATH   make PATH (PATH-2, PATH-dev…) a symlink to the output
      --no-out-link     make no symlink (the default)
      --show-trace      show the trace of errors
  -h, --help            show this help
` + buildFlagsUsage

const buildFlagsUsage = `
Building (also for import from derivation during evaluation):
  -j, --max-jobs N      how many builds run at once (default 1)
  -k, --keep-going      keep building what does not depend on a failed build
      --cores N         NIX_BUILD_CORES for builds (default: the number of CPUs)
      --timeout DUR     kill a build that runs longer (Go duration, 0: no limit)
      --max-log-size N  kill a build that logs more bytes (0: no limit)
      --scratch-dir DIR where builds run (default: $TMPDIR)
      --bin-sh FILE     static shell provided as /bin/sh (default: busybox)
      --sandbox-path P  host path every build sees read-only (repeatable)
  -K, --keep-failed     keep the root of failed builds
  -Q, --no-build-output do not show build logs and progress
      --build-as-root   run builders as the host's root (default: nobody)
      --builder B       sandbox or microvm (default: the store's castor.toml
                        [build] builder, else sandbox)
      --hypervisor H    micro-VM builds: qemu or cloud-hypervisor
      --vm-cpus N       micro-VM builds: CPUs per VM
      --vm-memory SIZE  micro-VM builds: memory per VM (1G)
      --vm-scratch SIZE micro-VM builds: what a build may write
      --kernel FILE     micro-VM builds: the kernel to boot
`

// NewInstantiateCommand returns `castor instantiate`; open opens the store
// the global flags name.
func NewInstantiateCommand(open realisecmd.OpenFunc) *cobra.Command {
	return &cobra.Command{
		Use:                "instantiate [options] [FILE... | -E EXPR...]",
		Short:              "Instantiate Nix expressions into .drv files in the store (nix-instantiate)",
		Long:               instantiateUsage,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return RunInstantiate(cmd, args, open, os.LookupEnv)
		},
	}
}

// NewBuildCommand returns `castor build`.
func NewBuildCommand(open realisecmd.OpenFunc) *cobra.Command {
	return &cobra.Command{
		Use:                "build [options] [FILE... | -E EXPR...]",
		Short:              "Instantiate and build Nix expressions, print the output paths (nix-build)",
		Long:               buildUsage,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return RunBuild(cmd, args, open, os.LookupEnv)
		},
	}
}

// instOpts are the options of instantiate and build.
type instOpts struct {
	common
	exprMode  bool
	files     []string
	attrPaths []string
	readOnly  bool
	evalOnly  bool
	outLink   string
	help      bool
	realise   realisecmd.RealiseOptions
}

func parseInstArgs(cmd *cobra.Command, args []string, build bool) (*instOpts, error) {
	o := &instOpts{realise: realisecmd.RealiseOptions{Jobs: 1}}
	o.withGlobals(cmd)
	for i := 0; i < len(args); i++ {
		if n, err := o.consume(args, i); err != nil {
			return nil, err
		} else if n > 0 {
			i += n - 1
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
		num := func() (int64, error) {
			s, err := next()
			if err != nil {
				return 0, err
			}
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("flag '%s' requires a non-negative integer, not '%s'", a, s)
			}
			return n, nil
		}
		var err error
		var n int64
		switch a {
		case "-E", "--expr":
			o.exprMode = true
		case "-A", "--attr":
			var p string
			p, err = next()
			o.attrPaths = append(o.attrPaths, p)
		case "--readonly-mode":
			if build {
				return nil, fmt.Errorf("castor build cannot build in read-only mode")
			}
			o.readOnly = true
		case "--read-write-mode":
			o.readOnly = false
		case "--eval":
			if build {
				return nil, fmt.Errorf("unrecognised flag '%s'", a)
			}
			o.evalOnly = true
		case "-o", "--out-link":
			if !build {
				return nil, fmt.Errorf("unrecognised flag '%s'", a)
			}
			o.outLink, err = next()
		case "--no-out-link":
			o.outLink = ""
		case "-j", "--max-jobs":
			n, err = num()
			o.realise.Jobs = int(n)
		case "-k", "--keep-going":
			o.realise.KeepGoing = true
		case "--cores":
			n, err = num()
			o.realise.Cores = int(n)
		case "--timeout":
			var s string
			if s, err = next(); err == nil {
				o.realise.Timeout, err = time.ParseDuration(s)
			}
		case "--max-log-size":
			o.realise.MaxLogSize, err = num()
		case "--scratch-dir":
			o.realise.ScratchDir, err = next()
		case "--bin-sh":
			o.realise.Shell, err = next()
		case "--sandbox-path":
			var p string
			p, err = next()
			o.realise.SandboxPath = append(o.realise.SandboxPath, p)
		case "-K", "--keep-failed":
			o.realise.KeepFailed = true
		case "-Q", "--no-build-output":
			o.realise.Quiet = true
		case "--build-as-root":
			o.realise.RunAsRoot = true
		case "--builder":
			o.realise.Builder, err = next()
		case "--hypervisor":
			o.realise.Hypervisor, err = next()
		case "--vm-cpus":
			n, err = num()
			o.realise.VMCPUs = int(n)
		case "--vm-memory":
			o.realise.VMMemory, err = next()
		case "--vm-scratch":
			o.realise.VMScratch, err = next()
		case "--kernel":
			o.realise.Kernel, err = next()
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
		if err != nil {
			return nil, err
		}
	}
	return o, nil
}

// lazyRealiser makes the sandbox realiser on first use: evaluations that
// build nothing need neither root nor FUSE.
type lazyRealiser struct {
	st   realisecmd.Store
	opts realisecmd.RealiseOptions
	logw io.Writer
	r    *realise.Realiser
}

func (l *lazyRealiser) Realise(ctx context.Context, drvs []string) ([]realise.Result, error) {
	if l.r == nil {
		r, err := realisecmd.NewRealiser(l.st, l.opts, l.logw)
		if err != nil {
			return nil, fmt.Errorf("cannot build %s: %w", drvs[0], err)
		}
		l.r = r
	}
	return l.r.Realise(ctx, drvs)
}

// session is an evaluator over the store the options ask for.
type session struct {
	ev       *eval.Evaluator
	realiser *lazyRealiser // nil in read-only mode
	close    func() error
}

func (o *instOpts) open(cmd *cobra.Command, open realisecmd.OpenFunc, lookupEnv func(string) (string, bool)) (*session, error) {
	s := &session{close: func() error { return nil }}
	var st evalio.Store
	if o.readOnly {
		st = evalio.NewHost()
	} else {
		if open == nil {
			return nil, errors.New("no store to write to (use --readonly-mode)")
		}
		rs, closeStore, err := open(cmd, false)
		if err != nil {
			return nil, err
		}
		s.close = closeStore
		s.realiser = &lazyRealiser{st: rs, opts: o.realise, logw: cmd.ErrOrStderr()}
		st = &evalstore.Store{Blobs: rs.Blobs, Directories: rs.Directories, PathInfos: rs.PathInfos, Realiser: s.realiser}
	}
	eval.TuneRuntime()
	s.ev = eval.New(cmd.Context(), eval.Options{Store: st, SearchPath: o.searchPath(lookupEnv), LookupEnv: lookupEnv, TraceOutput: cmd.ErrOrStderr()})
	return s, nil
}

// derivations evaluates the sources and attribute paths and returns the
// derivations they stand for, in order (nix-instantiate's processExpr).
func (s *session) derivations(o *instOpts, stdin io.Reader) ([]*eval.DrvInfo, error) {
	exprs, err := parseSources(s.ev, o.files, o.exprMode, stdin)
	if err != nil {
		return nil, err
	}
	auto, err := o.autoArgs(s.ev)
	if err != nil {
		return nil, err
	}
	paths := o.attrPaths
	if len(paths) == 0 {
		paths = []string{""}
	}
	var all []*eval.DrvInfo
	for _, e := range exprs {
		root, err := s.ev.Eval(e)
		if err != nil {
			return nil, err
		}
		for _, p := range paths {
			v, err := s.ev.SelectAttrPath(root, p, auto)
			if err != nil {
				return nil, err
			}
			drvs, err := s.ev.Derivations(v, auto)
			if err != nil {
				return nil, err
			}
			all = append(all, drvs...)
		}
	}
	return all, nil
}

// drvOutput is one derivation value: its .drv path and the output it
// stands for.
type drvOutput struct {
	drvPath, output string
}

func query(d *eval.DrvInfo) (drvOutput, error) {
	p, err := d.DrvPath()
	if err != nil {
		return drvOutput{}, err
	}
	out, err := d.OutputName()
	if err != nil {
		return drvOutput{}, err
	}
	if out == "" {
		return drvOutput{}, fmt.Errorf("derivation '%s' lacks an 'outputName' attribute ", p)
	}
	return drvOutput{p, out}, nil
}

// failure prints err as Nix does and returns the error that makes the
// command exit with status 1.
func failure(w io.Writer, err error, showTrace bool) error {
	report(w, err, showTrace)
	return &ExitError{Code: 1, Msg: "evaluation failed"}
}

// parseCommand parses the arguments of instantiate (build false) or
// build and applies the global options. It returns nil options when the
// command is done: on an error, or after printing usage for --help.
func parseCommand(cmd *cobra.Command, args []string, build bool, usage string) (*instOpts, error) {
	o, err := parseInstArgs(cmd, args, build)
	if err != nil {
		return nil, err
	}
	if err := applyGlobals(cmd, args); err != nil {
		return nil, err
	}
	if o.help {
		io.WriteString(cmd.OutOrStdout(), usage)
		return nil, nil
	}
	return o, nil
}

// RunInstantiate runs `castor instantiate` with the given arguments.
func RunInstantiate(cmd *cobra.Command, args []string, open realisecmd.OpenFunc, lookupEnv func(string) (string, bool)) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	o, err := parseCommand(cmd, args, false, instantiateUsage)
	if o == nil {
		return err
	}
	if o.evalOnly {
		var rest []string
		for _, a := range args {
			if a != "--eval" {
				rest = append(rest, a)
			}
		}
		return RunEvalStore(cmd, rest, cmd.InOrStdin(), stdout, stderr, lookupEnv, open)
	}
	s, err := o.open(cmd, open, lookupEnv)
	if err != nil {
		return err
	}
	defer s.close()
	drvs, err := s.derivations(o, cmd.InOrStdin())
	if err != nil {
		return failure(stderr, err, o.showTrace)
	}
	for _, d := range drvs {
		q, err := query(d)
		if err != nil {
			return failure(stderr, err, o.showTrace)
		}
		if q.output != "out" {
			fmt.Fprintf(stdout, "%s!%s\n", q.drvPath, q.output)
		} else {
			fmt.Fprintln(stdout, q.drvPath)
		}
	}
	return nil
}

// RunBuild runs `castor build` with the given arguments.
func RunBuild(cmd *cobra.Command, args []string, open realisecmd.OpenFunc, lookupEnv func(string) (string, bool)) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	o, err := parseCommand(cmd, args, true, buildUsage)
	if o == nil {
		return err
	}
	s, err := o.open(cmd, open, lookupEnv)
	if err != nil {
		return err
	}
	defer s.close()
	drvs, err := s.derivations(o, cmd.InOrStdin())
	if err != nil {
		return failure(stderr, err, o.showTrace)
	}
	var wanted []drvOutput
	var drvPaths []string
	seen := map[string]bool{}
	for _, d := range drvs {
		q, err := query(d)
		if err != nil {
			return failure(stderr, err, o.showTrace)
		}
		wanted = append(wanted, q)
		if !seen[q.drvPath] {
			seen[q.drvPath] = true
			drvPaths = append(drvPaths, q.drvPath)
		}
	}
	if len(drvPaths) == 0 {
		return nil
	}
	results, err := s.realiser.Realise(cmd.Context(), drvPaths)
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return &ExitError{Code: 1, Msg: "build failed"}
	}
	outputs := map[string]map[string]string{}
	for _, r := range results {
		m := map[string]string{}
		for name, p := range r.Outputs {
			m[name] = p.Absolute()
		}
		outputs[r.DrvPath] = m
	}
	for i, q := range wanted {
		p, ok := outputs[q.drvPath][q.output]
		if !ok {
			fmt.Fprintf(stderr, "error: derivation '%s' does not have an output named '%s'\n", q.drvPath, q.output)
			return &ExitError{Code: 1, Msg: "build failed"}
		}
		if o.outLink != "" {
			if err := outLink(o.outLink, i, q.output, p); err != nil {
				return err
			}
		}
		fmt.Fprintln(stdout, p)
	}
	return nil
}

// outLink makes the i-th result symlink as nix-build names it: PATH,
// PATH-2, … with -OUTPUT for outputs other than out. An existing symlink
// is replaced; anything else there is an error.
func outLink(base string, i int, output, target string) error {
	name := base
	if i > 0 {
		name += "-" + strconv.Itoa(i+1)
	}
	if output != "out" {
		name += "-" + output
	}
	name, err := filepath.Abs(name)
	if err != nil {
		return err
	}
	if fi, err := os.Lstat(name); err == nil {
		if fi.Mode()&os.ModeSymlink == 0 {
			return fmt.Errorf("cannot make the result symlink %s: a file that is not a symlink is in the way", name)
		}
		if err := os.Remove(name); err != nil {
			return err
		}
	}
	return os.Symlink(target, name)
}
