// Package fstest helps test code that mounts castor filesystems: it runs a
// test binary in a private mount namespace (so mounts, even over
// /nix/store, never reach the host), skips with one clear message where
// FUSE is not available, mounts with cleanup, and builds castore trees
// from compact Go values (Dir, File, Symlink) or random generators, and
// writes the same trees to disk for comparisons.
package fstest
