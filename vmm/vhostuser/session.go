package vhostuser

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// vring is the session's view of one virtqueue: what the driver told us
// and, while it runs, the Queue and its goroutines. Only the session's
// message loop touches it.
type vring struct {
	num     uint16
	addr    vringAddr
	addrSet bool
	base    uint16 // last_avail_idx while stopped
	kick    *os.File
	callFD  int
	errFD   int
	enabled bool
	failed  error // the device gave up on this ring; not restarted until reconfigured

	q       *Queue
	cancel  context.CancelFunc
	runDone chan struct{}
}

// session is one connection from a front-end.
type session struct {
	conn   *net.UnixConn
	dev    Device
	log    *slog.Logger
	ctx    context.Context
	vrings []*vring

	offered      uint64
	acked        uint64
	featuresSet  bool
	protoOffered uint64
	protoAcked   uint64

	mem *memory

	messages int // requests read, for Server.MaxConns
}

func newSession(ctx context.Context, conn *net.UnixConn, dev Device, log *slog.Logger) *session {
	s := &session{conn: conn, dev: dev, log: log, ctx: ctx, mem: &memory{}}
	s.offered = dev.Features() | FeatureVersion1 | FeatureRingIndirectDesc | FeatureRingEventIdx | FeatureProtocolFeatures
	s.protoOffered = ProtocolMQ | ProtocolReplyAck | ProtocolConfigureMemSlots
	if _, ok := dev.(ConfigDevice); ok {
		s.protoOffered |= ProtocolConfig
	}
	s.vrings = make([]*vring, dev.NumQueues())
	for i := range s.vrings {
		s.vrings[i] = &vring{callFD: -1, errFD: -1}
	}
	return s
}

// serve runs the message loop until the peer hangs up (nil) or the stream
// breaks (error). Everything is torn down before it returns.
func (s *session) serve() error {
	defer s.teardown()
	for {
		h, payload, fds, err := s.readMessage()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, unix.ECONNRESET) {
				return nil
			}
			return err
		}
		s.messages++
		s.log.Debug("vhost-user: request", "req", h.Request, "size", h.Size, "fds", len(fds))
		reply, herr := s.handle(h, payload, fds)
		if herr != nil {
			// Rare and worth knowing (a VMM asking for something this
			// backend does not do, or memory that does not map); the
			// connection goes on.
			s.log.Warn("vhost-user: request failed", "req", h.Request, "err", herr)
		}
		if reply == nil && h.Flags&flagNeedReply != 0 && s.protoAcked&ProtocolReplyAck != 0 {
			reply = make([]byte, 8)
			if herr != nil {
				binary.LittleEndian.PutUint64(reply, 1)
			}
		}
		if reply != nil {
			if err := s.writeReply(h.Request, reply); err != nil {
				return err
			}
		}
	}
}

// readMessage reads one message with the file descriptors sent along.
// The caller owns (and must close or keep) the fds.
func (s *session) readMessage() (header, []byte, []int, error) {
	var hb [headerSize]byte
	var fds []int
	if err := s.readFull(hb[:], &fds); err != nil {
		closeFDs(fds)
		return header{}, nil, nil, err
	}
	h, err := decodeHeader(hb[:])
	if err != nil {
		closeFDs(fds)
		return h, nil, nil, err
	}
	payload := make([]byte, h.Size)
	if err := s.readFull(payload, &fds); err != nil {
		closeFDs(fds)
		return h, nil, nil, err
	}
	return h, payload, fds, nil
}

func (s *session) readFull(b []byte, fds *[]int) error {
	oob := make([]byte, unix.CmsgSpace(4*maxMemTableRegions))
	for len(b) > 0 {
		n, oobn, _, _, err := s.conn.ReadMsgUnix(b, oob)
		if oobn > 0 {
			got, perr := parseRights(oob[:oobn])
			*fds = append(*fds, got...)
			if perr != nil {
				return perr
			}
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.EOF
		}
		b = b[n:]
	}
	return nil
}

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, protoErr("control message: %v", err)
	}
	var fds []int
	for i := range msgs {
		r, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range r {
			unix.CloseOnExec(fd)
		}
		fds = append(fds, r...)
	}
	return fds, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

func (s *session) writeReply(req Request, payload []byte) error {
	b := make([]byte, headerSize+len(payload))
	header{Request: req, Flags: flagVersion | flagReply, Size: uint32(len(payload))}.encode(b)
	copy(b[headerSize:], payload)
	_, err := s.conn.Write(b)
	return err
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, v)
	return b
}

// handle executes one request. It returns the reply payload for requests
// that have one, and always takes ownership of fds.
func (s *session) handle(h header, p []byte, fds []int) (reply []byte, err error) {
	if want, ok := expectedFDs[h.Request]; ok && len(fds) < want {
		closeFDs(fds)
		return nil, protoErr("%v: got %d fds, want %d", h.Request, len(fds), want)
	}
	// take removes the first fd from fds; whatever is left is closed.
	take := func() int {
		fd := fds[0]
		fds = fds[1:]
		return fd
	}
	defer func() { closeFDs(fds) }()

	switch h.Request {
	case ReqGetFeatures:
		return u64(s.offered), nil
	case ReqSetFeatures:
		f, err := decodeU64(p)
		if err != nil {
			return nil, err
		}
		if f&^s.offered != 0 {
			return nil, protoErr("SET_FEATURES %#x: not offered: %#x", f, f&^s.offered)
		}
		s.acked, s.featuresSet = f, true
		return nil, nil
	case ReqGetProtocolFeatures:
		return u64(s.protoOffered), nil
	case ReqSetProtocolFeatures:
		f, err := decodeU64(p)
		if err != nil {
			return nil, err
		}
		s.protoAcked = f & s.protoOffered
		return nil, nil
	case ReqSetOwner:
		return nil, nil
	case ReqResetOwner, ReqResetDevice:
		s.stopAll()
		for i := range s.vrings {
			s.vrings[i].reset()
		}
		s.acked, s.featuresSet = 0, false
		return nil, nil
	case ReqGetQueueNum:
		return u64(uint64(len(s.vrings))), nil
	case ReqGetMaxMemSlots:
		return u64(maxMemSlots), nil
	case ReqSetMemTable:
		regs, err := decodeMemTable(p)
		if err != nil {
			return nil, err
		}
		if len(fds) < len(regs) {
			return nil, protoErr("SET_MEM_TABLE: %d regions, %d fds", len(regs), len(fds))
		}
		m := &memory{}
		for _, r := range regs {
			mr, err := mapRegion(take(), r)
			if err == nil {
				m, err = m.with(mr)
				if err != nil {
					_ = mr.unmap()
				}
			}
			if err != nil {
				m.unmapAll()
				return nil, err
			}
		}
		s.memChange(func() *memory {
			old := s.mem
			s.mem = m
			return old
		})
		return nil, nil
	case ReqAddMemReg:
		r, err := decodeMemReg(p)
		if err != nil {
			return nil, err
		}
		if len(s.mem.regions) >= maxMemSlots {
			return nil, protoErr("ADD_MEM_REG: all %d slots used", maxMemSlots)
		}
		mr, err := mapRegion(take(), r)
		if err != nil {
			return nil, err
		}
		m, err := s.mem.with(mr)
		if err != nil {
			_ = mr.unmap()
			return nil, err
		}
		// Running queues hold the old table: restart them on the new one
		// (existing mappings stay, so nothing is unmapped).
		s.memChange(func() *memory {
			s.mem = m
			return &memory{}
		})
		return nil, nil
	case ReqRemMemReg:
		r, err := decodeMemReg(p)
		if err != nil {
			return nil, err
		}
		if _, _, ok := s.mem.without(r); !ok {
			return nil, protoErr("REM_MEM_REG: no region %#x+%#x", r.GuestAddr, r.Size)
		}
		s.memChange(func() *memory {
			m, gone, _ := s.mem.without(r)
			s.mem = m
			return &memory{regions: []region{gone}}
		})
		return nil, nil
	case ReqSetVringNum, ReqSetVringBase, ReqSetVringEnable, ReqGetVringBase:
		st, err := decodeVringState(p)
		if err != nil {
			return nil, err
		}
		vr, err := s.vring(st.Index)
		if err != nil {
			if h.Request == ReqGetVringBase {
				return make([]byte, 8), err
			}
			return nil, err
		}
		return s.vringState(h.Request, st, vr)
	case ReqSetVringAddr:
		a, err := decodeVringAddr(p)
		if err != nil {
			return nil, err
		}
		vr, err := s.vring(a.Index)
		if err != nil {
			return nil, err
		}
		if vr.running() {
			return nil, protoErr("SET_VRING_ADDR on running vring %d", a.Index)
		}
		vr.addr, vr.addrSet, vr.failed = a, true, nil
		s.startReady()
		return nil, nil
	case ReqSetVringKick, ReqSetVringCall, ReqSetVringErr:
		v, err := decodeU64(p)
		if err != nil {
			return nil, err
		}
		vr, err := s.vring(uint32(v & vringIndexMask))
		if err != nil {
			return nil, err
		}
		fd := -1
		if v&vringNoFD == 0 {
			if len(fds) == 0 {
				return nil, protoErr("%v: no fd", h.Request)
			}
			fd = take()
		}
		return nil, s.vringFD(h.Request, int(v&vringIndexMask), vr, fd)
	case ReqGetConfig:
		c, err := decodeConfig(p)
		if err != nil {
			return make([]byte, 12), err
		}
		out := make([]byte, 12+c.Size)
		copy(out, p[:12])
		if cd, ok := s.dev.(ConfigDevice); ok {
			cfg := cd.Config()
			if int(c.Offset) < len(cfg) {
				copy(out[12:], cfg[c.Offset:])
			}
		} else {
			// A zero-size reply tells the front-end it failed.
			return make([]byte, 12), protoErr("GET_CONFIG: device has no config space")
		}
		return out, nil
	case ReqSetConfig:
		// Config spaces served here are read-only for the driver.
		return nil, nil
	case ReqSetLogBase, ReqSetLogFD, ReqSetBackendReqFD, ReqSetInflightFD:
		return nil, protoErr("%v: not supported (feature not offered)", h.Request)
	default:
		return nil, protoErr("%v: not supported", h.Request)
	}
}

func (s *session) vring(i uint32) (*vring, error) {
	if int(i) >= len(s.vrings) {
		return nil, protoErr("vring %d: device has %d queues", i, len(s.vrings))
	}
	return s.vrings[i], nil
}

func (s *session) vringState(req Request, st vringState, vr *vring) ([]byte, error) {
	switch req {
	case ReqSetVringNum:
		if vr.running() {
			return nil, protoErr("SET_VRING_NUM on running vring %d", st.Index)
		}
		if st.Num == 0 || st.Num > MaxQueueSize || st.Num&(st.Num-1) != 0 {
			return nil, protoErr("SET_VRING_NUM %d: not a power of two up to %d", st.Num, MaxQueueSize)
		}
		vr.num = uint16(st.Num)
		return nil, nil
	case ReqSetVringBase:
		if vr.running() {
			return nil, protoErr("SET_VRING_BASE on running vring %d", st.Index)
		}
		vr.base = uint16(st.Num)
		return nil, nil
	case ReqSetVringEnable:
		vr.enabled = st.Num != 0
		if vr.enabled {
			s.startReady()
		} else {
			s.stop(int(st.Index))
		}
		return nil, nil
	default: // ReqGetVringBase
		// Stopping waits only for the requests already popped; the
		// reply is what lets the VMM finish stopping the guest.
		s.stop(int(st.Index))
		if vr.kick != nil {
			vr.kick.Close()
			vr.kick = nil
		}
		b := make([]byte, 8)
		binary.LittleEndian.PutUint32(b, st.Index)
		binary.LittleEndian.PutUint32(b[4:], uint32(vr.base))
		return b, nil
	}
}

func (s *session) vringFD(req Request, idx int, vr *vring, fd int) error {
	switch req {
	case ReqSetVringKick:
		s.stop(idx)
		if vr.kick != nil {
			vr.kick.Close()
			vr.kick = nil
		}
		if fd < 0 {
			return protoErr("SET_VRING_KICK without fd: polling mode not supported")
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return fmt.Errorf("kick fd: %w", err)
		}
		// A non-blocking fd becomes pollable: reads park in the netpoller
		// and a read deadline wakes them when the ring stops.
		vr.kick = os.NewFile(uintptr(fd), fmt.Sprintf("vring%d-kick", idx))
		vr.failed = nil
		// Without VHOST_USER_F_PROTOCOL_FEATURES a ring starts enabled.
		if s.acked&FeatureProtocolFeatures == 0 {
			vr.enabled = true
		}
		s.startReady()
	case ReqSetVringCall:
		if vr.callFD >= 0 {
			if vr.q != nil {
				vr.q.mu.Lock()
				vr.q.callFD = fd
				vr.q.mu.Unlock()
			}
			unix.Close(vr.callFD)
		} else if vr.q != nil {
			vr.q.mu.Lock()
			vr.q.callFD = fd
			vr.q.mu.Unlock()
		}
		vr.callFD = fd
	case ReqSetVringErr:
		if vr.errFD >= 0 {
			unix.Close(vr.errFD)
		}
		vr.errFD = fd
	}
	return nil
}

func (vr *vring) running() bool { return vr.q != nil }

func (vr *vring) ready(mem *memory) bool {
	return vr.q == nil && vr.failed == nil && vr.enabled && vr.kick != nil && vr.addrSet && vr.num != 0 && len(mem.regions) > 0
}

// reset forgets everything about the ring; it must be stopped.
func (vr *vring) reset() {
	if vr.kick != nil {
		vr.kick.Close()
	}
	closeFDs([]int{vr.callFD, vr.errFD})
	*vr = vring{callFD: -1, errFD: -1}
}

// startReady starts every ring that is fully described and enabled.
func (s *session) startReady() {
	for i, vr := range s.vrings {
		if !vr.ready(s.mem) {
			continue
		}
		q, err := newQueue(s.mem, queueConfig{
			index: i, size: vr.num, addr: vr.addr, lastAvail: vr.base, features: s.acked, callFD: vr.callFD, kick: vr.kick,
		}, s.log)
		if err != nil {
			// The rings are not (or not yet) in mapped memory, e.g.
			// between REM_MEM_REG and ADD_MEM_REG: retried at the next
			// memory or ring change.
			s.log.Debug("vhost-user: queue not startable", "queue", i, "err", err)
			continue
		}
		ctx, cancel := context.WithCancel(s.ctx)
		vr.q, vr.cancel = q, cancel
		vr.runDone = make(chan struct{})
		_ = vr.kick.SetReadDeadline(time.Time{})
		go func(vr *vring, q *Queue, done chan struct{}) {
			defer close(done)
			err := s.dev.RunQueue(ctx, q)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("vhost-user: queue stopped", "queue", q.index, "err", err)
			}
		}(vr, q, vr.runDone)
		s.log.Debug("vhost-user: queue started", "queue", i, "size", vr.num, "base", vr.base)
	}
}

// stop stops ring i if it runs and waits for its goroutines, keeping its
// position in vr.base.
func (s *session) stop(i int) {
	vr := s.vrings[i]
	if vr.q == nil {
		return
	}
	vr.cancel()
	_ = vr.kick.SetReadDeadline(time.Unix(1, 0))
	<-vr.runDone
	vr.q.waitKickReader()
	vr.base = vr.q.lastAvail
	if err := vr.q.brokenErr(); err != nil {
		vr.failed = err
	}
	vr.q, vr.cancel, vr.runDone = nil, nil, nil
	s.log.Debug("vhost-user: queue stopped", "queue", i, "base", vr.base)
}

func (s *session) stopAll() {
	for i := range s.vrings {
		s.stop(i)
	}
}

// memChange stops the running rings (their pointers go through the old
// table), applies swap, unmaps what swap returns and restarts the rings.
func (s *session) memChange(swap func() (unmap *memory)) {
	s.stopAll()
	old := swap()
	old.unmapAll()
	s.startReady()
}

func (s *session) teardown() {
	s.stopAll()
	for _, vr := range s.vrings {
		vr.reset()
	}
	if err := s.dev.Close(); err != nil {
		s.log.Debug("vhost-user: device close", "err", err)
	}
	s.mem.unmapAll()
	s.mem = &memory{}
}
