package vhostuser

import "context"

// Device is one VM's session of a virtio device behind a vhost-user
// socket. Server.NewDevice makes a fresh one per connection; nothing is
// shared between sessions unless the device's maker shares it.
type Device interface {
	// Features returns the device-specific virtio feature bits offered to
	// the driver. The session adds the transport bits itself
	// (VERSION_1, INDIRECT_DESC, EVENT_IDX, PROTOCOL_FEATURES).
	Features() uint64

	// NumQueues is the number of virtqueues the device has.
	NumQueues() int

	// RunQueue serves q from its own goroutine once the driver has set
	// it up and enabled it. It must return soon after ctx is done, and
	// before returning it must have pushed (or given up) every chain it
	// popped and stopped every goroutine that touches q: the guest memory
	// may be unmapped right after. A returned error other than ctx's is
	// logged and leaves the queue stopped until the driver restarts it.
	// The same queue index may be run again later (after a vring
	// disable/enable, or a memory table change) with a new *Queue.
	RunQueue(ctx context.Context, q *Queue) error

	// Close ends the session. It is called once, after every RunQueue
	// has returned, when the connection is gone.
	Close() error
}

// ConfigDevice is implemented by devices with a virtio configuration
// space (vsock's guest CID, for instance). The session then offers
// VHOST_USER_PROTOCOL_F_CONFIG and answers GET_CONFIG from Config.
type ConfigDevice interface {
	Device
	// Config returns the configuration space, little-endian as virtio
	// defines it. The caller does not modify it.
	Config() []byte
}
