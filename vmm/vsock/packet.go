package vsock

import (
	"encoding/binary"
	"fmt"
)

// HostCID is the host's context id (VMADDR_CID_HOST).
const HostCID = 2

// Packet header (struct virtio_vsock_hdr, little-endian, 44 bytes).
const hdrSize = 44

const (
	typeStream = 1

	opRequest       = 1
	opResponse      = 2
	opRST           = 3
	opShutdown      = 4
	opRW            = 5
	opCreditUpdate  = 6
	opCreditRequest = 7

	shutdownRcv  = 1
	shutdownSend = 2
)

type header struct {
	SrcCID   uint64
	DstCID   uint64
	SrcPort  uint32
	DstPort  uint32
	Len      uint32
	Type     uint16
	Op       uint16
	Flags    uint32
	BufAlloc uint32
	FwdCnt   uint32
}

func decodeHeader(b []byte) (header, error) {
	if len(b) < hdrSize {
		return header{}, fmt.Errorf("vsock: packet of %d bytes, header needs %d", len(b), hdrSize)
	}
	le := binary.LittleEndian
	return header{
		SrcCID: le.Uint64(b), DstCID: le.Uint64(b[8:]),
		SrcPort: le.Uint32(b[16:]), DstPort: le.Uint32(b[20:]),
		Len: le.Uint32(b[24:]), Type: le.Uint16(b[28:]), Op: le.Uint16(b[30:]),
		Flags: le.Uint32(b[32:]), BufAlloc: le.Uint32(b[36:]), FwdCnt: le.Uint32(b[40:]),
	}, nil
}

func (h header) encode(b []byte) {
	le := binary.LittleEndian
	le.PutUint64(b, h.SrcCID)
	le.PutUint64(b[8:], h.DstCID)
	le.PutUint32(b[16:], h.SrcPort)
	le.PutUint32(b[20:], h.DstPort)
	le.PutUint32(b[24:], h.Len)
	le.PutUint16(b[28:], h.Type)
	le.PutUint16(b[30:], h.Op)
	le.PutUint32(b[32:], h.Flags)
	le.PutUint32(b[36:], h.BufAlloc)
	le.PutUint32(b[40:], h.FwdCnt)
}

var opNames = map[uint16]string{
	opRequest: "REQUEST", opResponse: "RESPONSE", opRST: "RST", opShutdown: "SHUTDOWN",
	opRW: "RW", opCreditUpdate: "CREDIT_UPDATE", opCreditRequest: "CREDIT_REQUEST",
}

func opName(op uint16) string {
	if n, ok := opNames[op]; ok {
		return n
	}
	return fmt.Sprintf("OP_%d", op)
}

// gather copies n bytes starting at off of the iov into a new slice; it
// returns false when the iov is shorter.
func gather(iov [][]byte, off, n int) ([]byte, bool) {
	out := make([]byte, 0, n)
	for _, b := range iov {
		if off >= len(b) {
			off -= len(b)
			continue
		}
		b = b[off:]
		off = 0
		k := min(len(b), n-len(out))
		out = append(out, b[:k]...)
		if len(out) == n {
			return out, true
		}
	}
	return out, len(out) == n
}

// scatter writes src into the iov from its start and returns the count.
func scatter(iov [][]byte, src ...[]byte) int {
	n, i, off := 0, 0, 0
	for _, s := range src {
		for len(s) > 0 && i < len(iov) {
			k := copy(iov[i][off:], s)
			s, off, n = s[k:], off+k, n+k
			if off == len(iov[i]) {
				i, off = i+1, 0
			}
		}
	}
	return n
}
