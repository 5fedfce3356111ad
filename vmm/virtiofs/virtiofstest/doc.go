// Package virtiofstest drives a virtio-fs device from tests: a FUSE client
// that puts requests on a vhostusertest.FakeVM's request queue.
package virtiofstest
