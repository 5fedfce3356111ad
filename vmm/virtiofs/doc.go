// Package virtiofs serves a go-fuse fuse.RawFileSystem to a VM as a
// vhost-user-fs device (virtio-fs), on castor's own vhost-user backend
// (vmm/vhostuser).
//
// A virtio-fs device has one high-priority queue (queue 0), which carries
// only FORGET and BATCH_FORGET and gets no replies, and one or more request
// queues. Each descriptor chain on a request queue is one FUSE request: the
// guest-readable buffers hold the request exactly as /dev/fuse would carry
// it, the writable ones receive the reply. Chains are decoded and answered
// by go-fuse's fuse.ProtocolServer, concurrently up to Options.Workers per
// queue, reading file data straight into guest memory (into the guest's
// scattered pages when the filesystem's READ answer has a Readv method,
// as castor's has). The goroutine the guest's kick wakes serves the
// request it pops, so no request waits for a hand-off; a
// vhostuser.Standby wakes another goroutine to pop only if the guest
// sends more while it serves.
//
// Every VM connection is a new FUSE session: the VM's kernel sends INIT
// again, and the filesystem comes fresh from the NewFS function, so no
// inode numbers or lookup counts leak from one VM to the next. When the
// VMM stops a queue (guest shutdown), requests already taken are finished
// and the queue stops at once.
//
// Metadata speed over virtio-fs is decided by the entry and attribute
// timeouts the filesystem returns (a store is immutable: make them long).
package virtiofs
