// Package virtiofscmd is the `castor virtiofs` command: it serves the
// store's /nix/store (the same filesystem `castor mount` shows) to VMs over
// a vhost-user-fs socket. It is CLI glue, like cmd/castor, kept beside the
// package it drives; vmm/virtiofs itself knows nothing of the store.
package virtiofscmd
