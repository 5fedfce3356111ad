package mountcmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	castorfs "github.com/castor-nix/castor/fs"
	"github.com/castor-nix/castor/fs/storeroots"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/pathinfo"
)

// Store is what a mount serves.
type Store struct {
	Blobs       castore.BlobOpener
	Directories castore.DirectoryGetter
	// PathInfos resolves /nix/store names; with ListRoot it must also be
	// a pathinfo.Lister.
	PathInfos pathinfo.Getter
}

// Options are the command's flags.
type Options struct {
	Mountpoint string
	// ListRoot allows listing the mountpoint (every store path).
	ListRoot bool
	// AllowOther lets users other than the mounting one in.
	AllowOther bool
	// NoXattrs hides the user.castore.* digest attributes.
	NoXattrs bool
	// FUSEDebug logs every FUSE request.
	FUSEDebug bool
}

// Run mounts st at opts.Mountpoint, logs when the mount is ready, serves
// until ctx is done (the CLI cancels it on SIGINT and SIGTERM), then
// unmounts and returns nil. Mount errors explain their fix (stale or busy
// mountpoints, missing permissions).
func Run(ctx context.Context, st Store, opts Options, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	if opts.ListRoot {
		if _, ok := st.PathInfos.(pathinfo.Lister); !ok {
			return fmt.Errorf("--list-root: the path-info service cannot list its paths")
		}
	}
	fsys, err := castorfs.New(&storeroots.Resolver{Infos: st.PathInfos}, st.Directories, st.Blobs, castorfs.Options{
		ListRoot:      opts.ListRoot,
		DisableXattrs: opts.NoXattrs,
		Logger:        log,
	})
	if err != nil {
		return err
	}
	defer fsys.Close()
	start := time.Now()
	err = castorfs.Serve(ctx, opts.Mountpoint, fsys, castorfs.MountOptions{
		AllowOther: opts.AllowOther,
		Debug:      opts.FUSEDebug,
		Logger:     log,
	}, func(s *castorfs.Server) {
		log.Info("mounted, ready", "mountpoint", s.Mountpoint(), "list_root", opts.ListRoot, "took", time.Since(start).Round(time.Microsecond))
	})
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		log.Info("unmounted", "mountpoint", opts.Mountpoint, "reason", context.Cause(ctx))
	} else {
		log.Info("unmounted from outside", "mountpoint", opts.Mountpoint)
	}
	return nil
}

// OpenFunc opens the store the CLI's flags name; close releases it.
type OpenFunc func(cmd *cobra.Command) (st Store, close func() error, err error)

// NewCommand returns the `mount` command. The context of the command
// (cobra's ExecuteContext) ends the mount when it is done.
func NewCommand(open OpenFunc) *cobra.Command {
	var opts Options
	cmd := &cobra.Command{
		Use:   "mount [--list-root] [--allow-other] MOUNTPOINT",
		Short: "Serve the store read-only as /nix/store (or MOUNTPOINT) through FUSE",
		Long: `Mount the store read-only at MOUNTPOINT (usually /nix/store) and serve it in
the foreground until interrupted (SIGINT or SIGTERM), then unmount.

Store paths appear on first access: a name that is a store path the store
knows resolves to its tree; anything else does not exist. Listing the
mountpoint is refused unless --list-root is given. Files carry their
digests in the extended attributes user.castore.blob.digest and
user.castore.directory.digest unless --no-xattrs is given.

Mounting needs root, or fusermount3 (package fuse3) and access to /dev/fuse.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Mountpoint = args[0]
			// Check before opening the store: a stale mountpoint is
			// the commonest failure and needs no store to explain.
			if err := castorfs.CheckMountpoint(opts.Mountpoint); err != nil {
				return err
			}
			st, closeStore, err := open(cmd)
			if err != nil {
				return err
			}
			err = Run(cmd.Context(), st, opts, slog.Default())
			if cerr := closeStore(); cerr != nil && err == nil {
				err = cerr
			}
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.ListRoot, "list-root", false, "allow listing the mountpoint (streams every path info)")
	f.BoolVar(&opts.AllowOther, "allow-other", false, "let other users use the mount (non-root needs user_allow_other in /etc/fuse.conf)")
	f.BoolVar(&opts.NoXattrs, "no-xattrs", false, "do not expose digests as extended attributes")
	f.BoolVar(&opts.FUSEDebug, "fuse-debug", false, "log every FUSE request and reply")
	return cmd
}

// IsMountpointProblem reports whether err is a stale or busy mountpoint,
// for callers that choose exit codes.
func IsMountpointProblem(err error) bool {
	return errors.Is(err, castorfs.ErrMountpointStale) || errors.Is(err, castorfs.ErrMountpointBusy)
}
