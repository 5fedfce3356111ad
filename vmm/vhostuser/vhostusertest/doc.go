// Package vhostusertest provides FakeVM, a fake virtual machine for tests
// of vhost-user backends: a vhost-user front-end written in Go (what QEMU
// or Cloud Hypervisor would be) together with a minimal virtio split-ring
// driver (what the guest kernel would be), over real shared memory (a
// memfd) passed to the backend as a real file descriptor.
//
// It exists so backends can be tested quickly and deterministically
// without booting a guest; the QEMU tests elsewhere check the real thing.
package vhostusertest
