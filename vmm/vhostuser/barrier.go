package vhostuser

import (
	"sync/atomic"
	"unsafe"
)

// Ring fields shared with the guest are accessed only through these
// helpers. sync/atomic has no 16-bit operations, so 16-bit fields are read
// with a 32-bit atomic load where the containing word is aligned and owned
// by the same side, and otherwise with a plain load in a function the
// compiler may not inline (so it cannot be hoisted out of a polling loop);
// on the little-endian, total-store-order machines vhost-user runs on here
// (amd64) an aligned 16-bit load is single-copy atomic and has acquire
// semantics.

var fenceWord uint32

// fence is a full memory barrier (LOCK XADD on amd64): stores before it are
// visible before loads after it. Virtio needs it between publishing used.idx
// and reading used_event, and between publishing avail_event and re-reading
// avail.idx.
func fence() { atomic.AddUint32(&fenceWord, 1) }

//go:noinline
func load16(b []byte) uint16 {
	_ = b[1]
	return *(*uint16)(unsafe.Pointer(&b[0]))
}

//go:noinline
func store16(b []byte, v uint16) {
	_ = b[1]
	*(*uint16)(unsafe.Pointer(&b[0])) = v
}

// loadHi16 reads the upper 16 bits of the 4-byte word b[0:4] (avail.idx
// behind avail.flags), atomically when the word is aligned.
func loadHi16(b []byte) uint16 {
	_ = b[3]
	p := unsafe.Pointer(&b[0])
	if uintptr(p)%4 == 0 {
		return uint16(atomic.LoadUint32((*uint32)(p)) >> 16)
	}
	return load16(b[2:])
}

// storeWord32 stores v into the aligned word b[0:4] with release semantics
// (XCHG on amd64, a full barrier).
func storeWord32(b []byte, v uint32) {
	_ = b[3]
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&b[0])), v)
}
