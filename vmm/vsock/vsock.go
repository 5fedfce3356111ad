package vsock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/castor-nix/castor/vmm/vhostuser"
)

// Config configures a Backend.
type Config struct {
	// GuestCID is the guest's context id (at least 3).
	GuestCID uint64
	// Socket is the host-side unix socket: host->guest connections come
	// in here, guest->host connections go to Socket_<port>.
	Socket string
	// BufAlloc is the receive buffer advertised per connection, bounding
	// what a guest may send ahead of the host reading it (default 256 KiB).
	BufAlloc uint32
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

const (
	defaultBufAlloc = 256 << 10
	// maxPending bounds what is read from a host connection ahead of the
	// guest taking it.
	maxPending = 256 << 10
	// maxPayload is the largest payload a guest may send in one packet
	// (VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
	maxPayload = 64 << 10
	// firstHostPort is where ports for host-initiated connections start.
	firstHostPort = 1 << 16
)

// Backend is the host side of one guest's vsock device: the unix listener
// and, while a VM is connected, its session.
type Backend struct {
	cfg Config
	log *slog.Logger
	l   *net.UnixListener

	mu  sync.Mutex
	cur *session

	done chan struct{}
}

// New listens on cfg.Socket (removing a stale socket file, refusing a live
// one) and returns a backend ready to give devices to a vhostuser.Server.
func New(cfg Config) (*Backend, error) {
	if cfg.GuestCID < 3 || cfg.GuestCID > 0xffffffff {
		return nil, fmt.Errorf("vsock: guest CID %d: must be between 3 and 2^32-1", cfg.GuestCID)
	}
	if cfg.Socket == "" {
		return nil, errors.New("vsock: no host socket path")
	}
	if cfg.BufAlloc == 0 {
		cfg.BufAlloc = defaultBufAlloc
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l, err := vhostuser.Listen(cfg.Socket)
	if err != nil {
		return nil, fmt.Errorf("vsock: %w", err)
	}
	b := &Backend{cfg: cfg, log: cfg.Logger, l: l, done: make(chan struct{})}
	go b.acceptLoop()
	return b, nil
}

// Close stops listening, removes the socket and ends the current
// session's connections.
func (b *Backend) Close() error {
	err := b.l.Close()
	<-b.done
	b.mu.Lock()
	s := b.cur
	b.mu.Unlock()
	if s != nil {
		s.Close()
	}
	return err
}

// NewDevice returns the device for a VM that just connected. Only one VM
// at a time can use a backend (the host socket names one guest).
func (b *Backend) NewDevice(ctx context.Context) (vhostuser.Device, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur != nil {
		return nil, fmt.Errorf("vsock: %s already serves a connected VM", b.cfg.Socket)
	}
	s := &session{
		b:        b,
		log:      b.log,
		conns:    map[connKey]*conn{},
		nextPort: firstHostPort,
		wake:     make(chan struct{}, 1),
	}
	b.cur = s
	return s, nil
}

func (b *Backend) session() *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur
}

func (b *Backend) acceptLoop() {
	defer close(b.done)
	for {
		uc, err := b.l.AcceptUnix()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				b.log.Warn("vsock: accept", "err", err)
			}
			return
		}
		go b.handshake(uc)
	}
}

// handshake reads "CONNECT <port>\n" and asks the guest for a connection.
func (b *Backend) handshake(uc *net.UnixConn) {
	uc.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := readLine(uc, 64)
	uc.SetReadDeadline(time.Time{})
	if err != nil {
		b.log.Debug("vsock: host connection handshake", "err", err)
		uc.Close()
		return
	}
	ps, ok := strings.CutPrefix(line, "CONNECT ")
	port, perr := strconv.ParseUint(strings.TrimSpace(ps), 10, 32)
	if !ok || perr != nil {
		b.log.Debug("vsock: bad handshake", "line", line)
		uc.Close()
		return
	}
	s := b.session()
	if s == nil {
		b.log.Debug("vsock: host connection while no VM is connected", "port", port)
		uc.Close()
		return
	}
	s.connectToGuest(uc, uint32(port))
}

// readLine reads up to '\n' one byte at a time, so nothing after the line
// is consumed.
func readLine(c net.Conn, max int) (string, error) {
	var b [1]byte
	var line []byte
	for len(line) < max {
		if _, err := c.Read(b[:]); err != nil {
			return "", err
		}
		if b[0] == '\n' {
			return string(line), nil
		}
		line = append(line, b[0])
	}
	return "", fmt.Errorf("vsock: handshake line longer than %d bytes", max)
}

// ErrRefused is returned by Dial when the guest has no listener on the
// port (or no VM is connected).
var ErrRefused = errors.New("vsock: connection refused by the guest")

// Dial connects to the guest's port through the hybrid socket at path:
// it writes "CONNECT <port>\n" and reads the "OK <port>\n" answer byte by
// byte, so the returned connection starts exactly at the guest's first
// byte. Callers waiting for a guest to boot retry on ErrRefused.
func Dial(ctx context.Context, path string, port uint32) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		c.Close()
		return nil, err
	}
	line, err := readLine(c, 64)
	if err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w (port %d: %v)", ErrRefused, port, err)
	}
	if !strings.HasPrefix(line, "OK ") {
		c.Close()
		return nil, fmt.Errorf("vsock: unexpected handshake answer %q", line)
	}
	return c, nil
}

type connKey struct {
	local uint32 // host-side port
	peer  uint32 // guest-side port
}

type connState int

const (
	stateDialing    connState = iota // guest asked, dialing Socket_<port>
	stateConnecting                  // host asked, waiting for the guest's RESPONSE
	stateEstablished
)

// conn is one stream. All fields are guarded by session.mu.
type conn struct {
	key   connKey
	uc    *net.UnixConn
	state connState
	gone  bool

	// guest -> host
	out         []byte // received from the guest, not yet written to uc
	preamble    []byte // "OK <port>\n" for host-initiated connections
	rxCnt       uint32 // bytes received from the guest
	fwdCnt      uint32 // bytes written to uc
	lastFwdSent uint32 // fwdCnt as last told to the guest
	guestDone   bool   // guest will send no more (SHUTDOWN SEND)
	rstAfter    bool   // send RST once out is flushed (guest closed)
	outCond     *sync.Cond

	// host -> guest
	pending         []byte // read from uc, not yet sent
	txCnt           uint32 // bytes sent to the guest
	peerBufAlloc    uint32
	peerFwdCnt      uint32
	hostEOF         bool
	shutdownSent    bool
	creditRequested bool
	inCond          *sync.Cond
}

func (c *conn) credit() uint32 {
	used := c.txCnt - c.peerFwdCnt
	if used >= c.peerBufAlloc {
		return 0
	}
	return c.peerBufAlloc - used
}

// session is one VM's vsock device.
type session struct {
	b   *Backend
	log *slog.Logger

	mu       sync.Mutex
	conns    map[connKey]*conn
	ctrl     []header // control packets for the guest, in order
	nextPort uint32
	closed   bool
	wake     chan struct{}
}

var _ vhostuser.ConfigDevice = (*session)(nil)

// Features: stream sockets only (no VIRTIO_VSOCK_F_SEQPACKET).
func (s *session) Features() uint64 { return 0 }

// NumQueues: rx, tx, event.
func (s *session) NumQueues() int { return 3 }

// Config is struct virtio_vsock_config: the guest CID.
func (s *session) Config() []byte {
	b := make([]byte, 8)
	for i := 0; i < 8; i++ {
		b[i] = byte(s.b.cfg.GuestCID >> (8 * i))
	}
	return b
}

// Close ends the session: every connection is closed.
func (s *session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for k, c := range s.conns {
		s.dropLocked(k, c)
	}
	s.mu.Unlock()
	s.b.mu.Lock()
	if s.b.cur == s {
		s.b.cur = nil
	}
	s.b.mu.Unlock()
	return nil
}

func (s *session) RunQueue(ctx context.Context, q *vhostuser.Queue) error {
	switch q.Index() {
	case 0:
		return s.runRx(ctx, q)
	case 1:
		return s.runTx(ctx, q)
	default:
		// The event queue only carries transport resets (migration).
		<-ctx.Done()
		return nil
	}
}

func (s *session) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// hdrFor returns a header from the host side of c to the guest.
func (s *session) hdrFor(c *conn, op uint16) header {
	c.lastFwdSent = c.fwdCnt
	return header{
		SrcCID: HostCID, DstCID: s.b.cfg.GuestCID,
		SrcPort: c.key.local, DstPort: c.key.peer,
		Type: typeStream, Op: op,
		BufAlloc: s.b.cfg.BufAlloc, FwdCnt: c.fwdCnt,
	}
}

func (s *session) queueCtrlLocked(h header) {
	s.ctrl = append(s.ctrl, h)
	s.kick()
}

// rstLocked answers a guest packet with a reset.
func (s *session) rstLocked(h header) {
	if h.Op == opRST {
		return
	}
	s.queueCtrlLocked(header{
		SrcCID: HostCID, DstCID: s.b.cfg.GuestCID,
		SrcPort: h.DstPort, DstPort: h.SrcPort,
		Type: typeStream, Op: opRST, BufAlloc: s.b.cfg.BufAlloc,
	})
}

// dropLocked forgets c and closes its host side.
func (s *session) dropLocked(k connKey, c *conn) {
	if c.gone {
		return
	}
	c.gone = true
	delete(s.conns, k)
	if c.uc != nil {
		c.uc.Close()
	}
	c.outCond.Broadcast()
	c.inCond.Broadcast()
}

func (s *session) newConnLocked(k connKey, uc *net.UnixConn, st connState) *conn {
	c := &conn{key: k, uc: uc, state: st}
	c.outCond = sync.NewCond(&s.mu)
	c.inCond = sync.NewCond(&s.mu)
	s.conns[k] = c
	return c
}

// connectToGuest starts a host-initiated connection to the guest's port.
func (s *session) connectToGuest(uc *net.UnixConn, port uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		uc.Close()
		return
	}
	local := s.nextPort
	for {
		inUse := false
		for k := range s.conns {
			if k.local == local {
				inUse = true
				break
			}
		}
		if !inUse {
			break
		}
		local++
		if local < firstHostPort {
			local = firstHostPort
		}
	}
	s.nextPort = local + 1
	if s.nextPort < firstHostPort {
		s.nextPort = firstHostPort
	}
	c := s.newConnLocked(connKey{local: local, peer: port}, uc, stateConnecting)
	c.preamble = []byte(fmt.Sprintf("OK %d\n", local))
	s.queueCtrlLocked(s.hdrFor(c, opRequest))
	s.log.Debug("vsock: host connects to guest", "port", port, "local", local)
}

// startLocked runs c's pumps once it is established.
func (s *session) startLocked(c *conn) {
	c.state = stateEstablished
	go s.writer(c)
	go s.reader(c)
}

// writer copies what the guest sent to the host socket and returns
// credit to the guest as it goes.
func (s *session) writer(c *conn) {
	s.mu.Lock()
	pre := c.preamble
	c.preamble = nil
	s.mu.Unlock()
	if len(pre) > 0 {
		if _, err := c.uc.Write(pre); err != nil {
			s.mu.Lock()
			s.resetLocked(c)
			s.mu.Unlock()
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		for len(c.out) == 0 && !c.gone && !c.guestDone {
			c.outCond.Wait()
		}
		if c.gone {
			return
		}
		if len(c.out) == 0 && c.guestDone {
			// Everything the guest sent is written.
			if c.rstAfter {
				s.resetLocked(c)
				return
			}
			c.uc.CloseWrite()
			return
		}
		buf := c.out
		c.out = nil
		s.mu.Unlock()
		n, err := c.uc.Write(buf)
		s.mu.Lock()
		c.fwdCnt += uint32(n)
		if err != nil {
			s.log.Debug("vsock: host write", "port", c.key.local, "err", err)
			s.resetLocked(c)
			return
		}
		if c.fwdCnt-c.lastFwdSent >= s.b.cfg.BufAlloc/4 && !c.gone {
			s.queueCtrlLocked(s.hdrFor(c, opCreditUpdate))
		}
	}
}

// resetLocked tells the guest the connection is gone and forgets it.
func (s *session) resetLocked(c *conn) {
	if c.gone {
		return
	}
	s.queueCtrlLocked(s.hdrFor(c, opRST))
	s.dropLocked(c.key, c)
}

// reader reads from the host socket ahead of the guest, up to maxPending.
func (s *session) reader(c *conn) {
	buf := make([]byte, 64<<10)
	for {
		s.mu.Lock()
		for len(c.pending) >= maxPending && !c.gone {
			c.inCond.Wait()
		}
		gone := c.gone
		s.mu.Unlock()
		if gone {
			return
		}
		n, err := c.uc.Read(buf)
		s.mu.Lock()
		if n > 0 && !c.gone {
			c.pending = append(c.pending, buf[:n]...)
			s.kick()
		}
		if err != nil {
			c.hostEOF = true
			s.kick()
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// nextPacketLocked picks the next packet for the guest whose payload fits
// in room bytes, or reports there is none.
func (s *session) nextPacketLocked(room int) (header, []byte, bool) {
	if len(s.ctrl) > 0 {
		h := s.ctrl[0]
		s.ctrl = s.ctrl[1:]
		return h, nil, true
	}
	for _, c := range s.conns {
		if c.state != stateEstablished {
			continue
		}
		if len(c.pending) > 0 {
			n := min(len(c.pending), room, int(c.credit()))
			if n <= 0 {
				if !c.creditRequested && room > 0 {
					c.creditRequested = true
					return s.hdrFor(c, opCreditRequest), nil, true
				}
				continue
			}
			data := c.pending[:n:n]
			c.pending = c.pending[n:]
			if len(c.pending) == 0 {
				c.pending = nil
			}
			c.txCnt += uint32(n)
			c.inCond.Broadcast()
			h := s.hdrFor(c, opRW)
			h.Len = uint32(n)
			return h, data, true
		}
		if c.hostEOF && !c.shutdownSent {
			c.shutdownSent = true
			h := s.hdrFor(c, opShutdown)
			h.Flags = shutdownSend
			return h, nil, true
		}
	}
	return header{}, nil, false
}

func (s *session) runRx(ctx context.Context, q *vhostuser.Queue) error {
	hb := make([]byte, hdrSize)
	for {
		for ctx.Err() == nil {
			c, err := q.Pop()
			if err != nil {
				return err
			}
			if c == nil {
				break // no buffer from the guest: wait for a kick
			}
			room := c.WritableLen() - hdrSize
			if room < 0 {
				s.log.Warn("vsock: rx buffer too small for a header", "len", c.WritableLen())
				q.Push(c, 0)
				continue
			}
			s.mu.Lock()
			h, data, ok := s.nextPacketLocked(room)
			s.mu.Unlock()
			if !ok {
				q.Unpop(c)
				break
			}
			h.encode(hb)
			n := scatter(c.Writable, hb, data)
			q.Push(c, uint32(n))
			s.log.Debug("vsock: to guest", "op", opName(h.Op), "src", h.SrcPort, "dst", h.DstPort, "len", h.Len)
		}
		q.Notify()
		select {
		case <-ctx.Done():
			return nil
		case <-q.Kicks():
		case <-s.wake:
		}
	}
}

func (s *session) runTx(ctx context.Context, q *vhostuser.Queue) error {
	for {
		for ctx.Err() == nil {
			c, err := q.Pop()
			if err != nil {
				return err
			}
			if c == nil {
				break
			}
			s.fromGuest(c)
			q.Push(c, 0)
		}
		q.Notify()
		select {
		case <-ctx.Done():
			return nil
		case <-q.Kicks():
		}
	}
}

// fromGuest handles one packet the guest sent.
func (s *session) fromGuest(ch *vhostuser.Chain) {
	hb, ok := gather(ch.Readable, 0, hdrSize)
	if !ok {
		s.log.Debug("vsock: short packet from guest", "len", ch.ReadableLen())
		return
	}
	h, _ := decodeHeader(hb)
	s.log.Debug("vsock: from guest", "op", opName(h.Op), "src", h.SrcPort, "dst", h.DstPort, "len", h.Len)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if h.SrcCID != s.b.cfg.GuestCID || h.DstCID != HostCID {
		// Not ours to answer (a guest talking to another CID).
		s.log.Debug("vsock: packet with foreign addresses dropped", "src_cid", h.SrcCID, "dst_cid", h.DstCID)
		return
	}
	if h.Type != typeStream {
		s.rstLocked(h)
		return
	}
	var data []byte
	if h.Op == opRW {
		if h.Len > maxPayload {
			s.rstLocked(h)
			return
		}
		if data, ok = gather(ch.Readable, hdrSize, int(h.Len)); !ok {
			s.rstLocked(h)
			return
		}
	}
	k := connKey{local: h.DstPort, peer: h.SrcPort}
	c := s.conns[k]
	if c != nil {
		if h.BufAlloc != c.peerBufAlloc || h.FwdCnt != c.peerFwdCnt {
			c.creditRequested = false
			s.kick()
		}
		c.peerBufAlloc, c.peerFwdCnt = h.BufAlloc, h.FwdCnt
	}
	switch h.Op {
	case opRequest:
		if c != nil {
			s.rstLocked(h)
			return
		}
		c = s.newConnLocked(k, nil, stateDialing)
		c.peerBufAlloc, c.peerFwdCnt = h.BufAlloc, h.FwdCnt
		go s.dialHost(c)
	case opResponse:
		if c == nil || c.state != stateConnecting {
			s.rstLocked(h)
			return
		}
		s.startLocked(c)
	case opRW:
		if c == nil || c.state != stateEstablished || c.guestDone {
			s.rstLocked(h)
			return
		}
		if c.rxCnt+h.Len-c.fwdCnt > s.b.cfg.BufAlloc {
			s.log.Warn("vsock: guest overran its credit; resetting", "port", c.key.local)
			s.resetLocked(c)
			return
		}
		c.rxCnt += h.Len
		c.out = append(c.out, data...)
		c.outCond.Broadcast()
	case opCreditUpdate:
		if c == nil {
			s.rstLocked(h)
		}
	case opCreditRequest:
		if c == nil {
			s.rstLocked(h)
			return
		}
		s.queueCtrlLocked(s.hdrFor(c, opCreditUpdate))
	case opShutdown:
		if c == nil {
			s.rstLocked(h)
			return
		}
		if h.Flags&shutdownRcv != 0 {
			c.pending = nil
			c.hostEOF = true
			c.shutdownSent = true
			c.inCond.Broadcast()
		}
		if h.Flags&shutdownSend != 0 {
			c.guestDone = true
			if h.Flags&shutdownRcv != 0 {
				// The guest closed: flush what it sent, then reset.
				c.rstAfter = true
			}
			c.outCond.Broadcast()
			if c.state != stateEstablished {
				s.resetLocked(c)
			}
		}
	case opRST:
		if c != nil {
			s.dropLocked(k, c)
		}
	default:
		s.rstLocked(h)
	}
}

// dialHost connects a guest-initiated stream to Socket_<port>.
func (s *session) dialHost(c *conn) {
	path := fmt.Sprintf("%s_%d", s.b.cfg.Socket, c.key.local)
	uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.gone || s.closed {
		if uc != nil {
			uc.Close()
		}
		return
	}
	if err != nil {
		s.log.Debug("vsock: guest connects to a port nobody listens on", "port", c.key.local, "err", err)
		s.resetLocked(c)
		return
	}
	c.uc = uc
	s.queueCtrlLocked(s.hdrFor(c, opResponse))
	s.startLocked(c)
}
