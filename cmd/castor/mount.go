package main

import (
	"github.com/spf13/cobra"

	"github.com/castor-nix/castor/fs/mountcmd"
)

// newMountCommand is `castor mount`, served by fs/mountcmd over the store
// the global flags name. The store is opened read-only: the mount never
// writes, and other readers may share it.
func newMountCommand(g *globals) *cobra.Command {
	return mountcmd.NewCommand(func(cmd *cobra.Command) (mountcmd.Store, func() error, error) {
		svc, _, err := g.openStore(true)
		if err != nil {
			return mountcmd.Store{}, nil, err
		}
		return mountcmd.Store{Blobs: svc.Blobs, Directories: svc.Directories, PathInfos: svc.PathInfos}, svc.Close, nil
	})
}
