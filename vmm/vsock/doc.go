// Package vsock is castor's vhost-user-vsock device backend with Cloud
// Hypervisor's "hybrid vsock" semantics, so the host side of castor talks
// to a guest the same way under QEMU (through this backend) and under
// Cloud Hypervisor (which implements them itself):
//
//   - host -> guest: connect to the unix socket at Config.Socket, write
//     "CONNECT <port>\n", read "OK <host port>\n" (byte by byte: the guest's
//     first bytes may follow at once), then the connection is a plain byte
//     stream to the guest's listener on <port>. If nothing listens there,
//     the unix connection is closed. See Dial.
//   - guest -> host: a guest connecting to CID 2 (the host), port P, is
//     connected to the unix socket "<Config.Socket>_<P>"; if nobody listens
//     there the guest gets a reset (ECONNRESET/ECONNREFUSED).
//
// The virtio-vsock device has three queues: rx (0, device to guest), tx
// (1, guest to device) and event (2, unused). Streams follow the virtio
// spec's credit-based flow control: every packet carries the sender's
// receive buffer size (buf_alloc) and how much of it it has consumed
// (fwd_cnt); the backend never sends a guest more than the guest has room
// for, advertises its own per-connection buffer, sends credit updates as
// the host side drains it, and resets a guest that overruns it. Packets for
// connections the backend does not know are answered with RST, as are
// SEQPACKET and other unsupported types.
//
// One Backend owns the host-side listener for its lifetime; each VM
// connecting to the vhost-user socket gets a fresh session with no
// connections, and a VM going away closes all of its connections.
package vsock
