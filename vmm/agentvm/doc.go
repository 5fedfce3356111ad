// Package agentvm boots castor's micro-VMs with the guest agent as /init
// and drives the agent: the machinery under `castor vm run` and the
// micro-VM build executor.
//
// Boot builds (or finds cached) the image (images.AgentImage), creates
// and starts a vmm.Machine with the given virtio-fs devices and a vsock
// device, and waits for the agent to connect to the host's control port
// (a guest-to-host vsock connection, arriving on the hybrid socket's
// <socket>_1024 listener, which is closed once the agent is in so nothing
// else in the guest can reach the host). The VM is then ready for Setup
// (mounts, directories, files), Run (a command, its output streamed back,
// its exit status) and SendDir (a tree as a NAR, over a host-to-guest
// vsock connection to the agent's data port), and Shutdown (the agent
// powers the guest off; the VMM exits).
//
// When the guest dies under a call (a kernel panic, the VMM killed), the
// call's error is the VM's: vmm.ErrGuestReset with the kernel's panic
// line, vmm.ErrVMMExited, and so on, rather than a broken connection.
package agentvm
