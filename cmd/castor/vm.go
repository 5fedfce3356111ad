package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/castor-nix/castor/vmm/vmcmd"
)

// newVMCommand is `castor vm`, served by vmm/vmcmd over the store the
// global flags name, opened read-only; the command's exit status becomes
// castor's.
func newVMCommand(g *globals) *cobra.Command {
	cmd := vmcmd.NewCommand(func(cmd *cobra.Command) (vmcmd.Store, func() error, error) {
		svc, _, err := g.openStore(true)
		if err != nil {
			return vmcmd.Store{}, nil, err
		}
		return vmcmd.Store{Blobs: svc.Blobs, Directories: svc.Directories, PathInfos: svc.PathInfos}, svc.Close, nil
	})
	for _, sub := range cmd.Commands() {
		run := sub.RunE
		sub.RunE = func(cmd *cobra.Command, args []string) error {
			err := run(cmd, args)
			var st *vmcmd.ExitStatus
			if errors.As(err, &st) && st.Err != nil {
				// castor's own failure: say it, with the status.
				return &exitError{code: st.Code, err: st.Err}
			}
			// nil, or the command's own status (ExitCode, quietly).
			return err
		}
	}
	return cmd
}
