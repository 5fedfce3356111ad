// Package mountcmd is `castor mount`: it serves a store's path infos,
// directories and blobs as a read-only /nix/store (or any mountpoint)
// through FUSE, in the foreground, until SIGINT or SIGTERM. The CLI
// (cmd/castor) only opens the store from its flags and hands it over;
// tests call Run directly.
package mountcmd
