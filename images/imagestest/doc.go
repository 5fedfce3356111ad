// Package imagestest boots images under QEMU for tests: Debian's cloud
// kernel and an initramfs built by package images, on QEMU's microvm
// machine under TCG with shared (memfd) memory so vhost-user devices work,
// with the settings TESTING.md found reliable. Every VM is killed and
// waited for in t.Cleanup.
package imagestest
