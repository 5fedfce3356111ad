package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Request is a vhost-user front-end message type (QEMU docs/interop/vhost-user.rst).
type Request uint32

// Front-end requests the backend understands or must at least recognise.
const (
	ReqGetFeatures         Request = 1
	ReqSetFeatures         Request = 2
	ReqSetOwner            Request = 3
	ReqResetOwner          Request = 4
	ReqSetMemTable         Request = 5
	ReqSetLogBase          Request = 6
	ReqSetLogFD            Request = 7
	ReqSetVringNum         Request = 8
	ReqSetVringAddr        Request = 9
	ReqSetVringBase        Request = 10
	ReqGetVringBase        Request = 11
	ReqSetVringKick        Request = 12
	ReqSetVringCall        Request = 13
	ReqSetVringErr         Request = 14
	ReqGetProtocolFeatures Request = 15
	ReqSetProtocolFeatures Request = 16
	ReqGetQueueNum         Request = 17
	ReqSetVringEnable      Request = 18
	ReqSendRARP            Request = 19
	ReqNetSetMTU           Request = 20
	ReqSetBackendReqFD     Request = 21
	ReqIOTLBMsg            Request = 22
	ReqSetVringEndian      Request = 23
	ReqGetConfig           Request = 24
	ReqSetConfig           Request = 25
	ReqGetInflightFD       Request = 31
	ReqSetInflightFD       Request = 32
	ReqResetDevice         Request = 34
	ReqVringKick           Request = 35
	ReqGetMaxMemSlots      Request = 36
	ReqAddMemReg           Request = 37
	ReqRemMemReg           Request = 38
	ReqSetStatus           Request = 39
	ReqGetStatus           Request = 40
)

var requestNames = map[Request]string{
	ReqGetFeatures: "GET_FEATURES", ReqSetFeatures: "SET_FEATURES",
	ReqSetOwner: "SET_OWNER", ReqResetOwner: "RESET_OWNER",
	ReqSetMemTable: "SET_MEM_TABLE", ReqSetLogBase: "SET_LOG_BASE",
	ReqSetLogFD: "SET_LOG_FD", ReqSetVringNum: "SET_VRING_NUM",
	ReqSetVringAddr: "SET_VRING_ADDR", ReqSetVringBase: "SET_VRING_BASE",
	ReqGetVringBase: "GET_VRING_BASE", ReqSetVringKick: "SET_VRING_KICK",
	ReqSetVringCall: "SET_VRING_CALL", ReqSetVringErr: "SET_VRING_ERR",
	ReqGetProtocolFeatures: "GET_PROTOCOL_FEATURES", ReqSetProtocolFeatures: "SET_PROTOCOL_FEATURES",
	ReqGetQueueNum: "GET_QUEUE_NUM", ReqSetVringEnable: "SET_VRING_ENABLE",
	ReqSendRARP: "SEND_RARP", ReqNetSetMTU: "NET_SET_MTU",
	ReqSetBackendReqFD: "SET_BACKEND_REQ_FD", ReqIOTLBMsg: "IOTLB_MSG",
	ReqSetVringEndian: "SET_VRING_ENDIAN", ReqGetConfig: "GET_CONFIG",
	ReqSetConfig: "SET_CONFIG", ReqGetInflightFD: "GET_INFLIGHT_FD",
	ReqSetInflightFD: "SET_INFLIGHT_FD", ReqResetDevice: "RESET_DEVICE",
	ReqVringKick: "VRING_KICK", ReqGetMaxMemSlots: "GET_MAX_MEM_SLOTS",
	ReqAddMemReg: "ADD_MEM_REG", ReqRemMemReg: "REM_MEM_REG",
	ReqSetStatus: "SET_STATUS", ReqGetStatus: "GET_STATUS",
}

func (r Request) String() string {
	if n, ok := requestNames[r]; ok {
		return n
	}
	return fmt.Sprintf("REQUEST_%d", uint32(r))
}

// Virtio feature bits handled by the transport (this package) rather than
// by a device.
const (
	FeatureNotifyOnEmpty    = 1 << 24
	FeatureRingIndirectDesc = 1 << 28
	FeatureRingEventIdx     = 1 << 29
	// FeatureProtocolFeatures is VHOST_USER_F_PROTOCOL_FEATURES.
	FeatureProtocolFeatures = 1 << 30
	FeatureVersion1         = 1 << 32
)

// Protocol feature bits (VHOST_USER_PROTOCOL_F_*).
const (
	ProtocolMQ                = 1 << 0
	ProtocolLogSHMFD          = 1 << 1
	ProtocolReplyAck          = 1 << 3
	ProtocolBackendReq        = 1 << 5
	ProtocolConfig            = 1 << 9
	ProtocolResetDevice       = 1 << 13
	ProtocolConfigureMemSlots = 1 << 15
	ProtocolStatus            = 1 << 16
)

// Header flags.
const (
	flagVersion   = 0x1
	flagVersionMk = 0x3
	flagReply     = 0x4
	flagNeedReply = 0x8
)

const (
	headerSize = 12
	// maxPayload bounds what a peer can make us allocate; the largest
	// legitimate message (SET_MEM_TABLE with 8 regions, GET_CONFIG with
	// 256 bytes of config) is far below it.
	maxPayload = 4096
	// maxMemTableRegions is VHOST_MEMORY_BASELINE_NREGIONS.
	maxMemTableRegions = 8
	// maxMemSlots is what GET_MAX_MEM_SLOTS answers (QEMU's own limit is 509).
	maxMemSlots = 32
	// vringIndexMask/vringNoFD decode the u64 of SET_VRING_KICK/CALL/ERR.
	vringIndexMask = 0xff
	vringNoFD      = 1 << 8
	// maxConfigSize is the virtio config space limit GET_CONFIG may ask.
	maxConfigSize = 256
)

// ErrProtocol is wrapped by every error caused by a malformed or
// out-of-order vhost-user message.
var ErrProtocol = errors.New("vhost-user protocol error")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// header is the fixed 12-byte message header.
type header struct {
	Request Request
	Flags   uint32
	Size    uint32
}

func decodeHeader(b []byte) (header, error) {
	if len(b) < headerSize {
		return header{}, protoErr("short header: %d bytes", len(b))
	}
	h := header{
		Request: Request(binary.LittleEndian.Uint32(b[0:])),
		Flags:   binary.LittleEndian.Uint32(b[4:]),
		Size:    binary.LittleEndian.Uint32(b[8:]),
	}
	if h.Flags&flagVersionMk != flagVersion {
		return h, protoErr("%v: unsupported version in flags %#x", h.Request, h.Flags)
	}
	if h.Flags&flagReply != 0 {
		return h, protoErr("%v: reply flag set on a request", h.Request)
	}
	if h.Size > maxPayload {
		return h, protoErr("%v: payload of %d bytes exceeds %d", h.Request, h.Size, maxPayload)
	}
	return h, nil
}

func (h header) encode(b []byte) {
	binary.LittleEndian.PutUint32(b[0:], uint32(h.Request))
	binary.LittleEndian.PutUint32(b[4:], h.Flags)
	binary.LittleEndian.PutUint32(b[8:], h.Size)
}

// MemoryRegion is one region of guest memory as the front-end describes it.
type MemoryRegion struct {
	GuestAddr  uint64 // guest physical address
	Size       uint64
	UserAddr   uint64 // front-end's virtual address, used by SET_VRING_ADDR
	MmapOffset uint64 // offset of the region in the passed fd
}

const memRegionSize = 32

func decodeRegion(b []byte) MemoryRegion {
	return MemoryRegion{
		GuestAddr:  binary.LittleEndian.Uint64(b[0:]),
		Size:       binary.LittleEndian.Uint64(b[8:]),
		UserAddr:   binary.LittleEndian.Uint64(b[16:]),
		MmapOffset: binary.LittleEndian.Uint64(b[24:]),
	}
}

func (r MemoryRegion) encode(b []byte) {
	binary.LittleEndian.PutUint64(b[0:], r.GuestAddr)
	binary.LittleEndian.PutUint64(b[8:], r.Size)
	binary.LittleEndian.PutUint64(b[16:], r.UserAddr)
	binary.LittleEndian.PutUint64(b[24:], r.MmapOffset)
}

func (r MemoryRegion) validate() error {
	if r.Size == 0 {
		return protoErr("memory region of size 0")
	}
	if r.GuestAddr+r.Size < r.GuestAddr || r.UserAddr+r.Size < r.UserAddr || r.MmapOffset+r.Size < r.MmapOffset {
		return protoErr("memory region %#x+%#x overflows", r.GuestAddr, r.Size)
	}
	return nil
}

// decodeMemTable decodes SET_MEM_TABLE: u32 count, u32 padding, regions.
func decodeMemTable(p []byte) ([]MemoryRegion, error) {
	if len(p) < 8 {
		return nil, protoErr("SET_MEM_TABLE: payload of %d bytes", len(p))
	}
	n := binary.LittleEndian.Uint32(p)
	if n > maxMemTableRegions {
		return nil, protoErr("SET_MEM_TABLE: %d regions, at most %d", n, maxMemTableRegions)
	}
	if len(p) < 8+int(n)*memRegionSize {
		return nil, protoErr("SET_MEM_TABLE: %d regions in %d bytes", n, len(p))
	}
	regs := make([]MemoryRegion, n)
	for i := range regs {
		regs[i] = decodeRegion(p[8+i*memRegionSize:])
		if err := regs[i].validate(); err != nil {
			return nil, err
		}
	}
	return regs, nil
}

// decodeMemReg decodes ADD_MEM_REG/REM_MEM_REG: u64 padding, one region.
func decodeMemReg(p []byte) (MemoryRegion, error) {
	if len(p) < 8+memRegionSize {
		return MemoryRegion{}, protoErr("memory region message of %d bytes", len(p))
	}
	r := decodeRegion(p[8:])
	return r, r.validate()
}

// vringState is the payload of SET_VRING_NUM/BASE/ENABLE and GET_VRING_BASE.
type vringState struct {
	Index uint32
	Num   uint32
}

func decodeVringState(p []byte) (vringState, error) {
	if len(p) < 8 {
		return vringState{}, protoErr("vring state of %d bytes", len(p))
	}
	return vringState{binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint32(p[4:])}, nil
}

// vringAddr is the payload of SET_VRING_ADDR; the addresses are front-end
// virtual addresses, translated through MemoryRegion.UserAddr.
type vringAddr struct {
	Index uint32
	Flags uint32
	Desc  uint64
	Used  uint64
	Avail uint64
	Log   uint64
}

func decodeVringAddr(p []byte) (vringAddr, error) {
	if len(p) < 40 {
		return vringAddr{}, protoErr("vring address of %d bytes", len(p))
	}
	le := binary.LittleEndian
	return vringAddr{
		Index: le.Uint32(p), Flags: le.Uint32(p[4:]),
		Desc: le.Uint64(p[8:]), Used: le.Uint64(p[16:]), Avail: le.Uint64(p[24:]), Log: le.Uint64(p[32:]),
	}, nil
}

func decodeU64(p []byte) (uint64, error) {
	if len(p) < 8 {
		return 0, protoErr("u64 payload of %d bytes", len(p))
	}
	return binary.LittleEndian.Uint64(p), nil
}

// configMsg is the payload of GET_CONFIG/SET_CONFIG.
type configMsg struct {
	Offset uint32
	Size   uint32
	Flags  uint32
	Data   []byte
}

func decodeConfig(p []byte) (configMsg, error) {
	if len(p) < 12 {
		return configMsg{}, protoErr("config payload of %d bytes", len(p))
	}
	c := configMsg{
		Offset: binary.LittleEndian.Uint32(p),
		Size:   binary.LittleEndian.Uint32(p[4:]),
		Flags:  binary.LittleEndian.Uint32(p[8:]),
	}
	if c.Size > maxConfigSize || c.Offset > maxConfigSize || int(c.Size) > len(p)-12 {
		return c, protoErr("config offset %d size %d in %d bytes", c.Offset, c.Size, len(p))
	}
	c.Data = p[12 : 12+c.Size]
	return c, nil
}

// expectedFDs is how many file descriptors a request carries; requests not
// listed carry none. SET_VRING_KICK/CALL/ERR carry one unless the
// no-fd bit is set in their payload, which the session checks itself.
var expectedFDs = map[Request]int{
	ReqSetLogBase:      1,
	ReqSetLogFD:        1,
	ReqSetBackendReqFD: 1,
	ReqAddMemReg:       1,
	ReqSetInflightFD:   1,
}
