// Package images assembles what a castor micro-VM boots: a kernel and an
// initramfs, both reproducible and cached by content digest.
//
// Kernel: Debian's cloud kernel (/boot/vmlinuz-*-cloud-amd64) is a bzImage
// whose payload is an LZ4 (or gzip/zstd) compressed vmlinux. ExtractVmlinux
// unpacks it to the uncompressed ELF, which QEMU's microvm machine and
// Cloud Hypervisor boot directly through the PVH entry point, skipping the
// in-guest decompression that costs most of a TCG boot. A path to any
// other kernel can be given instead.
//
// Initramfs: a cpio "newc" archive written by Go code (uncompressed, so the
// guest spends no time inflating it) holding the init (castor's guest
// agent, or a script for tests), the kernel modules the guest needs,
// resolved with their dependencies from the kernel's modules.dep and
// listed in load order in /etc/castor/modules, and a static busybox for
// builds that want /bin/sh. Entries are sorted and carry fixed times and
// owners, so equal inputs give byte-identical archives.
//
// Build hashes every input (file contents, not names or times) and keeps
// its outputs under CacheDir/<digest>/; a later Build with the same inputs
// returns the cached files without writing anything, and any changed input
// gives a new digest.
package images
