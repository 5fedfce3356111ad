package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strings"

	"github.com/spf13/cobra"

	"github.com/castor-nix/castor/builder/realisecmd"
	evalcli "github.com/castor-nix/castor/evaluator/cli"
	"github.com/castor-nix/castor/store/compose"
	"github.com/castor-nix/castor/store/nixstore"
)

// globals are the flags every subcommand shares.
type globals struct {
	store      compose.Config
	logLevel   string
	logFormat  string
	cpuProfile string
	tracePath  string
}

// exitError carries a specific exit status out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// run executes the CLI with the given arguments and streams and returns
// the exit status; tests call it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{}
	root := newRootCommand(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "castor: %v\n", ee.err)
		}
		return ee.code
	}
	// Commands that report their own errors in their own form (the
	// evaluator prints Nix-style errors) return one with an exit code.
	var reported interface{ ExitCode() int }
	if errors.As(err, &reported) {
		return reported.ExitCode()
	}
	fmt.Fprintf(stderr, "castor: %v\n", err)
	return 1
}

func newRootCommand(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "castor",
		Short: "A Nix store, builder and evaluator over a content-addressed store",
		Long: `Castor keeps Nix store paths in a content-addressed store (BLAKE3 blobs and
Merkle directories, as Snix does), serves them as /nix/store through FUSE or
virtiofs, fetches them lazily from binary caches, builds derivations in
sandboxes and micro-VMs, and evaluates Nix.

The store lives in ` + "`$CASTOR_HOME`" + ` (default: $XDG_DATA_HOME/castor, or
~/.local/share/castor; /var/lib/castor for root) unless --store says otherwise.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := setupLogging(cmd.ErrOrStderr(), g.logLevel, g.logFormat); err != nil {
				return err
			}
			if err := startTrace(g.tracePath); err != nil {
				return err
			}
			return startCPUProfile(g.cpuProfile)
		},
		PersistentPostRun: func(cmd *cobra.Command, args []string) {
			pprof.StopCPUProfile()
			trace.Stop()
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&g.store.Store, "store", "", "the store: a directory (file:///DIR) holding an embedded store, or memory:// (default: "+compose.DataDir()+")")
	f.StringVar(&g.store.Blobs, "blob-service", "", "override the blob service URL (memory://, objectstore+file:///DIR)")
	f.StringVar(&g.store.Directories, "directory-service", "", "override the directory service URL (memory://, bbolt:///FILE)")
	f.StringVar(&g.store.PathInfos, "path-info-service", "", "override the path info service URL (memory://, bbolt:///FILE)")
	f.StringArrayVar(&g.store.Substituters, "substituter", nil, "binary cache to fetch missing paths from, in priority order (repeatable): nix+https://HOST?trusted-public-keys=NAME:KEY, nix+file:///DIR…")
	f.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&g.cpuProfile, "cpuprofile", "", "write a Go CPU profile of the command to this file (for `go tool pprof`)")
	_ = f.MarkHidden("cpuprofile")
	f.StringVar(&g.tracePath, "trace", "", "write a Go execution trace of the command to this file (for `go tool trace`)")
	_ = f.MarkHidden("trace")

	root.AddCommand(newStoreCommand(g))
	root.AddCommand(newMountCommand(g))
	root.AddCommand(newVirtiofsCommand(g))
	root.AddCommand(newVMCommand(g))
	root.AddCommand(realisecmd.NewRealiseCommand(g.builderStore), realisecmd.NewLogCommand(g.builderStore))
	root.AddCommand(evalcli.NewEvalCommand(g.builderStore))
	root.AddCommand(evalcli.NewInstantiateCommand(g.builderStore))
	root.AddCommand(evalcli.NewBuildCommand(g.builderStore))
	root.AddCommand(evalcli.NewReplCommand())
	return root
}

func setupLogging(w io.Writer, level, format string) error {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		slog.SetDefault(slog.New(slog.NewTextHandler(w, opts)))
	case "json":
		slog.SetDefault(slog.New(slog.NewJSONHandler(w, opts)))
	default:
		return fmt.Errorf("--log-format %q: want text or json", format)
	}
	return nil
}

// startCPUProfile profiles the process into path, if set, until
// PersistentPostRun stops it.
func startCPUProfile(path string) error { return startInto(path, pprof.StartCPUProfile) }

// startTrace traces the process into path, if set, until
// PersistentPostRun stops it.
func startTrace(path string) error { return startInto(path, trace.Start) }

// startInto creates path, if set, and starts writing into it.
func startInto(path string, start func(io.Writer) error) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return start(f)
}

// openStore opens the services the global flags name.
func (g *globals) openStore(readOnly bool) (*compose.Services, *nixstore.Store, error) {
	cfg := g.store
	cfg.ReadOnly = readOnly
	svc, err := compose.Open(cfg)
	if err != nil {
		return nil, nil, err
	}
	return svc, &nixstore.Store{Blobs: svc.Blobs, Directories: svc.Directories, PathInfos: svc.PathInfos}, nil
}

// isTerminal reports whether w is a terminal (progress bars go only there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
