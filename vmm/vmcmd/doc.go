// Package vmcmd is `castor vm run`: boot a micro-VM whose /nix/store is
// the castor store (served over virtio-fs by castor itself), run one
// command in it as uid 1000 with its output streamed back, and exit with
// the command's status.
package vmcmd
