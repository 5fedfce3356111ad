package virtiofscmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/spf13/cobra"

	castorfs "github.com/castor-nix/castor/fs"
	"github.com/castor-nix/castor/fs/storeroots"
	"github.com/castor-nix/castor/store/compose"
	"github.com/castor-nix/castor/vmm/vhostuser"
	"github.com/castor-nix/castor/vmm/virtiofs"
)

// OpenStore opens the store the command serves (read-only is enough); the
// caller of NewCommand decides where it comes from (the global --store
// flags in cmd/castor).
type OpenStore func() (*compose.Services, error)

// NewCommand returns the `virtiofs` subcommand.
func NewCommand(open OpenStore) *cobra.Command {
	var o Options
	cmd := &cobra.Command{
		Use:   "virtiofs --socket PATH [--list-root] [--once]",
		Short: "Serve the store as a VM's /nix/store over virtiofs (vhost-user-fs)",
		Long: `Serve the store to virtual machines through a vhost-user-fs socket, for
QEMU (-chardev socket,path=PATH -device vhost-user-fs-device,chardev=…,tag=…)
or Cloud Hypervisor (--fs tag=…,socket=PATH). Store paths appear on first
access, as with castor mount; the root is listable with --list-root. Each VM
that connects gets a fresh filesystem session; by default the command keeps
serving the next VM until interrupted, with --once it exits when the first
VM goes away. A stale socket file is replaced; a socket another process
serves is an error.

In the guest, mount it with "mount -t virtiofs TAG /nix/store". Linux gives
the mount 128 KiB of read-ahead; raising it makes sequential reads go out
in 1 MiB requests (castor's own VMs do this):
  echo 2048 > /sys/class/bdi/$(mountpoint -d /nix/store)/read_ahead_kb`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return Run(cmd.Context(), open, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Socket, "socket", "", "vhost-user socket path to listen on (required)")
	f.BoolVar(&o.ListRoot, "list-root", false, "allow listing /nix/store (walks the whole store)")
	f.BoolVar(&o.Once, "once", false, "exit after the first VM disconnects")
	f.IntVar(&o.RequestQueues, "queues", 1, "number of request queues offered")
	cmd.MarkFlagRequired("socket")
	return cmd
}

// Options are the command's flags.
type Options struct {
	Socket        string
	ListRoot      bool
	Once          bool
	RequestQueues int
	Logger        *slog.Logger // nil: slog.Default()
}

// Run serves until ctx is done (nil), or with Once until the first VM has
// gone (nil). A socket in use, or a store that does not open, is an error
// before anything is served.
func Run(ctx context.Context, open OpenStore, o Options) error {
	if o.Socket == "" {
		return errors.New("virtiofs: --socket is required")
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	svc, err := open()
	if err != nil {
		return err
	}
	defer svc.Close()
	l, err := vhostuser.Listen(o.Socket)
	if err != nil {
		return err
	}
	roots := &storeroots.Resolver{Infos: svc.PathInfos}
	newFS := func(ctx context.Context) (fuse.RawFileSystem, error) {
		log.Debug("virtiofs: new filesystem session", "socket", o.Socket)
		return castorfs.New(roots, svc.Directories, svc.Blobs, castorfs.Options{ListRoot: o.ListRoot, Logger: log})
	}
	log.Info("virtiofs: serving", "socket", o.Socket, "list_root", o.ListRoot)
	err = virtiofs.Serve(ctx, l, newFS, &virtiofs.Options{RequestQueues: o.RequestQueues, Logger: log}, o.Once)
	if err != nil {
		return fmt.Errorf("virtiofs: %w", err)
	}
	return nil
}
