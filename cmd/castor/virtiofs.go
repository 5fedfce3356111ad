package main

import (
	"github.com/spf13/cobra"

	"github.com/castor-nix/castor/store/compose"
	"github.com/castor-nix/castor/vmm/virtiofs/virtiofscmd"
)

// newVirtiofsCommand is `castor virtiofs`, served by vmm/virtiofs/virtiofscmd
// over the store the global flags name, opened read-only.
func newVirtiofsCommand(g *globals) *cobra.Command {
	return virtiofscmd.NewCommand(func() (*compose.Services, error) {
		svc, _, err := g.openStore(true)
		return svc, err
	})
}
