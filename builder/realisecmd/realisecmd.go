package realisecmd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/castor-nix/castor/builder"
	"github.com/castor-nix/castor/builder/realise"
	"github.com/castor-nix/castor/builder/sandbox"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/nixexport"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// Store is an opened store.
type Store struct {
	Blobs       castore.BlobService
	Directories castore.DirectoryService
	PathInfos   pathinfo.Service
	// LogDir keeps build logs; empty keeps them in memory only (for
	// memory:// stores).
	LogDir string
	// Config is the store's configuration (ReadStoreConfig): its default
	// builder.
	Config StoreConfig
}

// OpenFunc opens the store the command line names; the returned function
// closes it.
type OpenFunc func(cmd *cobra.Command, readOnly bool) (Store, func() error, error)

func (s Store) logs() realise.LogStore {
	if s.LogDir == "" {
		return &realise.MemoryLogs{}
	}
	return realise.LogDir(s.LogDir)
}

// RealiseOptions are `castor realise`'s flags.
type RealiseOptions struct {
	BuilderOptions
	Jobs        int
	KeepGoing   bool
	Cores       int
	Timeout     time.Duration
	MaxLogSize  int64
	ScratchDir  string
	Shell       string
	KeepFailed  bool
	Quiet       bool
	RunAsRoot   bool
	SandboxPath []string
}

// NewRealiser returns a Realiser that builds into st with the builder
// opts names (the namespace sandbox, or micro-VMs; the store's
// configuration says which when opts does not), configured as `castor
// realise`'s flags say; build logs and progress go to logw.
func NewRealiser(st Store, opts RealiseOptions, logw io.Writer) (*realise.Realiser, error) {
	x, err := newExecutor(st, opts.BuilderOptions, sandbox.Options{
		Directories: st.Directories,
		Blobs:       st.Blobs,
		ScratchDir:  opts.ScratchDir,
		Shell:       opts.Shell,
		RunAsRoot:   opts.RunAsRoot,
		KeepFailed:  opts.KeepFailed,
	})
	if err != nil {
		return nil, err
	}
	exec := builder.Limit(x, builder.Limits{Timeout: opts.Timeout, MaxLogBytes: opts.MaxLogSize})
	if opts.Quiet {
		logw = io.Discard
	}
	return realise.New(realise.Store{Blobs: st.Blobs, Directories: st.Directories, PathInfos: st.PathInfos}, realise.Options{
		Executor:  exec,
		Jobs:      opts.Jobs,
		KeepGoing: opts.KeepGoing,
		Build:     builder.Options{Cores: opts.Cores, SandboxPaths: opts.SandboxPath},
		Logs:      st.logs(),
		Output:    logw,
	}), nil
}

// Realise builds drvPaths into st and writes their output paths to out,
// one per line (every output of each derivation, in output name order);
// build logs and progress go to logw.
func Realise(ctx context.Context, st Store, drvPaths []string, opts RealiseOptions, out, logw io.Writer) error {
	r, err := NewRealiser(st, opts, logw)
	if err != nil {
		return err
	}
	var abs []string
	for _, p := range drvPaths {
		a, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		// A result symlink or a path through a mounted store is fine.
		if r, err := filepath.EvalSymlinks(a); err == nil && strings.HasPrefix(r, nixpath.StoreDir+"/") {
			a = r
		}
		abs = append(abs, a)
	}
	results, err := r.Realise(ctx, abs)
	for _, res := range results {
		for _, name := range slices.Sorted(maps.Keys(res.Outputs)) {
			fmt.Fprintln(out, res.Outputs[name].Absolute())
		}
	}
	return err
}

// NewRealiseCommand is `castor realise DRVPATH… [-j N]`.
func NewRealiseCommand(open OpenFunc) *cobra.Command {
	var opts RealiseOptions
	cmd := &cobra.Command{
		Use:   "realise DRVPATH...",
		Short: "Build derivations hermetically and register their outputs; print the output paths",
		Long: `Realise builds the given .drv store paths and everything they need that is
not yet valid in the store, in dependency order, in a Linux namespace
sandbox that sees only each build's inputs (through castor's FUSE
filesystem). builtin:fetchurl derivations are fetched. Build logs stream to
stderr, each line prefixed with the derivation's name, and are kept for
'castor log'. The output paths are printed on stdout.

Builds run in the namespace sandbox (--builder sandbox, the default), or
each in a micro-VM of its own (--builder microvm) whose /nix/store shows
exactly the build's inputs over castor's virtio-fs. The store's default is
set in castor.toml in its directory:
  [build]
  builder = "microvm"

The .drv files and their sources must be in the store, for instance with
  nix-store --export $(nix-store -qR DRV) | castor store import-export
The sandbox needs root and /dev/fuse; micro-VMs need QEMU (Cloud Hypervisor
with KVM), a kernel (Debian's cloud kernel) and a static busybox.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, closeStore, err := open(cmd, false)
			if err != nil {
				return err
			}
			defer closeStore()
			return Realise(cmd.Context(), st, args, opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	addBuilderFlags(f, &opts.BuilderOptions)
	f.IntVarP(&opts.Jobs, "max-jobs", "j", 1, "how many builds run at once")
	f.BoolVarP(&opts.KeepGoing, "keep-going", "k", false, "keep building what does not depend on a failed build")
	f.IntVar(&opts.Cores, "cores", 0, "NIX_BUILD_CORES for builds (default: the number of CPUs)")
	f.DurationVar(&opts.Timeout, "timeout", 0, "kill a build that runs longer (0: no limit)")
	f.Int64Var(&opts.MaxLogSize, "max-log-size", 0, "kill a build that logs more bytes (0: no limit)")
	f.StringVar(&opts.ScratchDir, "scratch-dir", "", "where build roots and outputs live while building (default: $TMPDIR)")
	f.StringVar(&opts.Shell, "bin-sh", "", "static shell provided as /bin/sh (default: busybox from PATH)")
	f.StringArrayVar(&opts.SandboxPath, "sandbox-path", nil, "host path every build sees read-only (repeatable)")
	f.BoolVar(&opts.KeepFailed, "keep-failed", false, "keep the root of failed builds")
	f.BoolVarP(&opts.Quiet, "quiet", "q", false, "do not show build logs and progress")
	f.BoolVar(&opts.RunAsRoot, "build-as-root", false, "run builders as the host's root, as Nix does without build users (default: nobody)")
	return cmd
}

// NewLogCommand is `castor log DRVPATH|OUTPUTPATH`.
func NewLogCommand(open OpenFunc) *cobra.Command {
	return &cobra.Command{
		Use:   "log DRVPATH|OUTPUTPATH",
		Short: "Print the log of the last build of a derivation (or of the derivation that built a path)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, closeStore, err := open(cmd, true)
			if err != nil {
				return err
			}
			defer closeStore()
			return Log(cmd.Context(), st, args[0], cmd.OutOrStdout())
		},
	}
}

// Log writes the kept log of the derivation p (or of the deriver of the
// output path p) to w.
func Log(ctx context.Context, st Store, p string, w io.Writer) error {
	sp, err := nixpath.ParseAbsolute(p)
	if err != nil {
		return err
	}
	drvPath := sp.Absolute()
	if !sp.IsDerivation() {
		info, err := st.PathInfos.Get(ctx, sp.Digest)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if info.Deriver == nil {
			return fmt.Errorf("%s: no deriver is recorded, so no build log", p)
		}
		drvPath = info.Deriver.Absolute()
	}
	rc, err := st.logs().Open(drvPath)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(w, rc)
	return err
}

func exportStore(st Store) nixexport.Store {
	return nixexport.Store{Blobs: st.Blobs, Directories: st.Directories, PathInfos: st.PathInfos}
}

// NewImportExportCommand is `castor store import-export [FILE]`.
func NewImportExportCommand(open OpenFunc) *cobra.Command {
	return &cobra.Command{
		Use:   "import-export [FILE]",
		Short: "Import store paths from a nix-store --export stream (stdin or FILE); print their paths",
		Long: `Import-export reads the format of 'nix-store --export' (what 'nix-store
--import' reads) and registers each path in it with its references and
deriver, under its exact name:
  nix-store --export $(nix-store -qR DRV) | castor store import-export`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := cmd.InOrStdin()
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			st, closeStore, err := open(cmd, false)
			if err != nil {
				return err
			}
			defer closeStore()
			out := cmd.OutOrStdout()
			_, err = nixexport.Import(cmd.Context(), in, exportStore(st), func(info *pathinfo.PathInfo) {
				fmt.Fprintln(out, info.StorePath.Absolute())
			})
			return err
		},
	}
}

// NewExportCommand is `castor store export PATH…`.
func NewExportCommand(open OpenFunc) *cobra.Command {
	return &cobra.Command{
		Use:   "export STOREPATH...",
		Short: "Write store paths as a nix-store --export stream on stdout (for nix-store --import)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var paths []nixpath.StorePath
			for _, a := range args {
				sp, err := nixpath.ParseAbsolute(a)
				if err != nil {
					return err
				}
				paths = append(paths, sp)
			}
			st, closeStore, err := open(cmd, true)
			if err != nil {
				return err
			}
			defer closeStore()
			w := bufio.NewWriter(cmd.OutOrStdout())
			if err := nixexport.Export(cmd.Context(), w, exportStore(st), paths); err != nil {
				return err
			}
			return w.Flush()
		},
	}
}
