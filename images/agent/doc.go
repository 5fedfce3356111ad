// Package agent is castor's guest agent, the /init of its micro-VMs, and
// the host's side of the agent's protocol.
//
// # In the guest
//
// Main (built as the static binary castor-agent, see images.BuildAgent)
// mounts /dev and /proc, loads the kernel modules the initramfs lists
// (images.ModuleList) except those the host said to skip on the kernel
// command line (castor.skipmod=…), connects to the host over vsock (CID 2,
// ControlPort) with github.com/mdlayher/vsock, says Hello, and then does
// what the host asks, one request at a time:
//
//   - Setup: the host name, the loopback interface (and eth0 for QEMU's
//     user-mode network when asked), then steps in order: directories,
//     mounts (virtio-fs, tmpfs, proc, devtmpfs, devpts, read-only binds),
//     files and symlinks. The first failing step is reported.
//   - Run: a command, as the given uid/gid with no supplementary groups,
//     in its own session, optionally chrooted, with exactly the given
//     environment (a program named without a slash is looked up in that
//     PATH), stdin /dev/null, stdout and stderr streamed to the host as
//     they come. When it exits, every other process in the guest is killed
//     (the agent is PID 1 and reaps everything), so nothing of a command
//     outlives it; then the exit status (or signal) goes back.
//   - PowerOff, or the host hanging up: sync and power off, so the VMM
//     exits. Whatever goes wrong, the agent ends by powering off.
//
// After the first set-up the agent also listens on DataPort for the
// host's DirRequests, one per connection and only from CID 2: the tree at
// a path comes back as a NAR (as nix-store --dump writes it) in frames,
// then a Result. Several may run at once.
//
// # The protocol
//
// Every message is a frame: a type byte, a big-endian 32-bit length (at
// most 4 MiB) and a payload, JSON for structured messages, raw bytes for
// output and NAR data. Malformed frames are errors wrapping ErrProtocol;
// the host never trusts a length it has not bounded.
//
// # On the host
//
// Accept waits for the agent's connection and Hello; Conn's Setup, Run
// and PowerOff drive it; SendDir fetches a tree over a connection the
// caller dialled to DataPort (vsock.Dial on the VM's hybrid socket).
// Failures the agent reports are *GuestError (a missing path unwraps to
// fs.ErrNotExist); a connection that breaks is the VM's business (see
// vmm/agentvm, which turns it into the VM's exit).
package agent
