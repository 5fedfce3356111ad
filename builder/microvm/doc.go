// Package microvm runs builds in micro-VMs: a builder.Executor whose
// boundary is a hypervisor instead of namespaces.
//
// # What a build sees
//
// Each build boots its own VM (vmm/agentvm: Cloud Hypervisor when KVM
// works and it is installed, QEMU otherwise) from castor's agent image.
// The VM's one virtio-fs device is a castor filesystem that knows only the
// build's inputs, so nothing else of the store exists for the guest. The
// agent builds the same root the namespace sandbox builds, on a tmpfs of
// Options.ScratchMiB: the inputs bind-mounted read-only at
// /nix/store/<name> from that filesystem (symlink inputs as symlinks), the
// outputs written beside them (/nix/store is 1775, group nixbld), /build
// (0700, the working directory, with the build's additional files), /etc
// with passwd, group and hosts as Nix writes them, a minimal /dev (null,
// zero, full, random, urandom, tty, pts, shm), /proc, /tmp, and /bin/sh (the
// image's static busybox) when the build asks for one. The builder runs
// chrooted there as uid 1000, gid 100, with exactly the Build's
// environment; its output streams to the build log over vsock as it
// comes. When it exits, every process it left is killed.
//
// There is no network device unless the build may use the network (a
// fixed-output derivation): then it gets QEMU's user-mode network (slirp;
// the host is 10.0.2.2), which Cloud Hypervisor lacks, so such builds run
// under QEMU (with KVM when it works).
//
// # Outputs, limits, failures
//
// A successful build's outputs stay in the VM until they are ingested:
// Outputs.WriteNAR asks the agent for each output tree as a NAR over its
// own vsock connection, so builder.Ingest, the one ingestion path of
// every executor, streams it straight into the castore with reference
// scanning. Outputs.Close powers the VM off.
//
// CPUs and memory come from Options, overridden per build by the
// derivation attributes castorVmCpus and castorVmMemory ("2", "2G"), and
// memory is raised to the build's MinMemory. A build past its timeout
// (builder.Limit cancels the context) has its VM killed. A builder that
// fills its scratch space gets ENOSPC and fails like any failing builder.
// A VM that dies under the build (a kernel panic, the VMM killed) fails
// the build with the VM's error, and the console's last lines (the panic)
// go to the build log so the failure's log tail shows them. Nothing of a
// build outlives Run but a successful build's VM, until Outputs.Close.
//
// Host paths (Nix's sandbox-paths) cannot be shown inside a VM; a build
// that asks for them fails with builder.ErrUnsupported.
package microvm
