// Package vhostuser is castor's vhost-user device backend: the control
// protocol spoken over a unix socket by a VMM (QEMU, Cloud Hypervisor) and
// the split virtqueues that carry the data plane through guest memory shared
// with the backend.
//
// A Server accepts connections on a listener; each connection is one VM's
// session and gets a fresh Device from Server.NewDevice, so no state (open
// files, inodes, vsock connections) survives from one VM to the next. The
// session negotiates features, maps the guest memory the VMM passes as file
// descriptors (SET_MEM_TABLE as Cloud Hypervisor sends it, ADD_MEM_REG and
// REM_MEM_REG as QEMU 7.2 sends them), and sets the rings up. Once a ring is
// fully described and enabled, the session calls Device.RunQueue on its own
// goroutine with a Queue; the device pops descriptor chains, fills them and
// pushes them back to the used ring.
//
// Data path: Pop hands out a chain's buffers as slices of the mapped guest
// memory, buffers adjacent in memory merged into one slice (a guest sends
// a large buffer as one descriptor per page), and the pages of the
// writable ones already in this process's page tables (see pageTable), so
// a device fills them with one copy and no page faults. A device waits for
// the guest's kicks with Queue.WaitKick, which reads the kick eventfd on
// the popping goroutine itself, or on the Queue.Kicks channel when it must
// wait for other things too. A device that serves on the popping
// goroutine arms a Standby meanwhile, which wakes a waiter only if the
// guest kicks before the popper is back.
//
// Stopping is prompt by design: GET_VRING_BASE, SET_VRING_ENABLE 0,
// RESET_OWNER and the end of the connection cancel the context RunQueue got
// and wake the goroutine waiting on the kick eventfd (kick fds live in Go's
// netpoller, never in a blocking read), so the reply goes out as soon as the
// requests already taken from the ring are finished. A VMM stopping a guest
// therefore never waits on a backend blocked in read(2).
//
// Memory ordering: the rings are shared with the guest. Loads of the
// driver-owned indices and stores of the device-owned ones go through the
// helpers in barrier.go, which use sync/atomic so the compiler neither
// caches nor reorders them, and which provide the full fence virtio needs
// between publishing used.idx and reading used_event (event idx). The
// backend and the guest must share endianness and architecture, which
// vhost-user requires anyway; the code is little-endian only.
//
// Errors: a message that cannot be framed (bad header, oversized payload,
// broken stream) ends the connection with an error wrapped around
// ErrProtocol; a well-framed request the backend cannot honour (unknown
// request, bad ring address, memory that does not map) is answered with a
// failure when the front-end asked for REPLY_ACK, logged at warn, and the
// connection goes on. A malformed descriptor chain stops that queue with an
// error wrapped around ErrBadChain. Nothing ever exits the process, and
// Serve keeps accepting the next VM. Per-message logging is at slog debug
// level.
package vhostuser
