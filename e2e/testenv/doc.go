// Package testenv is the one place tests ask for what they need from the
// machine: a binary (Nix 2.8, QEMU, fusermount3…), root, /dev/fuse or
// /dev/kvm. When something is missing the test is skipped with a message
// that names it and how to get it; CI installs everything but KVM, so in CI
// only the Cloud Hypervisor tests skip.
//
// It also runs Nix 2.8 as an oracle in a throw-away store (Nix), so tests
// never touch the host's /nix.
package testenv
