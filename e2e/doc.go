// Package e2e runs the built castor binary against real components: Nix
// 2.8 as the oracle, real bbolt files and chunk stores on disk, FUSE mounts
// in private mount namespaces, QEMU under TCG. TestMain builds the binary
// once; each test gets its own store directory.
package e2e
