package main

import (
	"github.com/spf13/cobra"

	"github.com/castor-nix/castor/fs/mountcmd"
)

// newMountCommand is `castor mount`, served by fs/mountcmd over the store
// the global flags name. Without substituters the store is opened
// read-only (the mount never writes, other readers may share it); with
// them it is opened for writing, since fetched paths are recorded.
func newMountCommand(g *globals) *cobra.Command {
	return mountcmd.NewCommand(func(cmd *cobra.Command) (mountcmd.Store, func() error, error) {
		svc, _, err := g.openStore(len(g.store.Substituters) == 0)
		if err != nil {
			return mountcmd.Store{}, nil, err
		}
		return mountcmd.Store{Blobs: svc.Blobs, Directories: svc.Directories, PathInfos: svc.PathInfos}, svc.Close, nil
	})
}
