package main

import (
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/castor-nix/castor/builder/realisecmd"
	"github.com/castor-nix/castor/store/compose"
)

// builderStore opens the store for the builder's commands (realise, log,
// store import-export, store export), with build logs kept in the store's
// directory under log/ (in memory for memory:// stores) and the store's
// configuration (castor.toml there: the default builder).
func (g *globals) builderStore(cmd *cobra.Command, readOnly bool) (realisecmd.Store, func() error, error) {
	logDir := ""
	var cfg realisecmd.StoreConfig
	if dir := g.store.Store; dir != "memory://" && dir != "memory:" {
		if dir == "" {
			dir = compose.DataDir()
		}
		dir = strings.TrimPrefix(dir, "file://")
		logDir = filepath.Join(dir, "log")
		var err error
		if cfg, err = realisecmd.ReadStoreConfig(dir); err != nil {
			return realisecmd.Store{}, nil, err
		}
	}
	svc, _, err := g.openStore(readOnly)
	if err != nil {
		return realisecmd.Store{}, nil, err
	}
	return realisecmd.Store{Blobs: svc.Blobs, Directories: svc.Directories, PathInfos: svc.PathInfos, LogDir: logDir, Config: cfg}, svc.Close, nil
}
