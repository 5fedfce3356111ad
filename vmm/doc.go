// Package vmm runs castor's micro-VMs: one interface for a VM's life
// (VM: Create, Start, Wait, Stop, Kill, Console, Close) over two
// hypervisors, QEMU and Cloud Hypervisor, with the same devices on both:
// virtio-fs for the store, virtio-vsock for control, a serial console for
// the kernel's log.
//
// # Life of a VM
//
// New picks the hypervisor (Select: Cloud Hypervisor when KVM works and
// its binary is on PATH, QEMU otherwise; Config.Hypervisor overrides) and
// returns a Machine whose life is two named, editable step lists in the
// style of firecracker-go-sdk: Handlers.Create (check the configuration,
// make a private working directory, start castor's device backends, start
// the VMM with the guest not yet running, connect its control channel,
// hand it the VM's configuration) and Handlers.Start (let the guest run).
// A caller may insert, swap or remove steps between New and Create.
//
//   - QEMU runs the microvm machine (virtio-mmio, the PVH kernel booted
//     directly, no firmware) under KVM when it works and TCG otherwise,
//     paused (-S) until Start sends "cont" over QMP. QMP comes over a
//     socket pair passed as a descriptor, as do castor's own vhost-user
//     backends (virtio-fs and vhost-user-vsock): no socket files but the
//     vsock's. -no-reboot turns a guest reset (a kernel panic, with the
//     panic=-1 castor puts on the command line) into QEMU's exit, and
//     QMP's SHUTDOWN event says which it was.
//   - Cloud Hypervisor gets a listening API socket and an event-monitor
//     pipe as descriptors; the VM is created (vm.create) and booted
//     (vm.boot) through the REST client in vmm/cloudhypervisor. Its
//     "rebooting" event ends the VM, as -no-reboot does for QEMU.
//
// Wait classifies the end: nil when the guest powered off (or Stop asked),
// ErrGuestReset (with the kernel's panic line when the console shows one),
// ErrVMMExited when the VMM died on its own, ErrKilled when castor killed
// it. Close kills what still runs, stops the backends, and removes the
// working directory with its sockets; the VMM also dies with castor
// (parent-death signal), so no VM outlives the process that made it.
//
// # vsock, one code path
//
// Cloud Hypervisor exposes guest vsock as a unix socket with "hybrid
// vsock" semantics; under QEMU, castor serves the same semantics from its
// own vhost-user-vsock backend (package vsock). Either way the host dials
// Config.Vsock.Socket with vsock.Dial to reach a guest port, and listens
// on Socket_<port> for the guest's connections.
//
// # KVM
//
// KVMUsable decides: /dev/kvm must open and the CPU must advertise
// vmx/svm. Some VMs expose /dev/kvm without nested virtualisation; QEMU's
// KVM guests hang or abort there, so castor uses TCG.
package vmm
