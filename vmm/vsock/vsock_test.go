package vsock_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/castor-nix/castor/vmm/vhostuser"
	"github.com/castor-nix/castor/vmm/vhostuser/vhostusertest"
	"github.com/castor-nix/castor/vmm/vsock"
)

const guard = 20 * time.Second

const guestCID = 42

// Header fields and ops, spelled out here rather than imported, so the
// test is an independent reading of the virtio spec.
const (
	opRequest, opResponse, opRST, opShutdown, opRW, opCreditUpdate, opCreditRequest = 1, 2, 3, 4, 5, 6, 7
)

type pkt struct {
	srcCID, dstCID          uint64
	srcPort, dstPort        uint32
	typ, op                 uint16
	flags, bufAlloc, fwdCnt uint32
	data                    []byte
}

func (p pkt) encode() []byte {
	b := make([]byte, 44)
	le := binary.LittleEndian
	le.PutUint64(b, p.srcCID)
	le.PutUint64(b[8:], p.dstCID)
	le.PutUint32(b[16:], p.srcPort)
	le.PutUint32(b[20:], p.dstPort)
	le.PutUint32(b[24:], uint32(len(p.data)))
	le.PutUint16(b[28:], p.typ)
	le.PutUint16(b[30:], p.op)
	le.PutUint32(b[32:], p.flags)
	le.PutUint32(b[36:], p.bufAlloc)
	le.PutUint32(b[40:], p.fwdCnt)
	return b
}

func decode(b []byte) pkt {
	le := binary.LittleEndian
	p := pkt{
		srcCID: le.Uint64(b), dstCID: le.Uint64(b[8:]), srcPort: le.Uint32(b[16:]), dstPort: le.Uint32(b[20:]),
		typ: le.Uint16(b[28:]), op: le.Uint16(b[30:]), flags: le.Uint32(b[32:]), bufAlloc: le.Uint32(b[36:]), fwdCnt: le.Uint32(b[40:]),
	}
	n := le.Uint32(b[24:])
	p.data = b[44 : 44+n]
	return p
}

// fakeGuest drives the device as a guest's virtio-vsock driver would.
type fakeGuest struct {
	t      *testing.T
	vm     *vhostusertest.FakeVM
	rx, tx *vhostusertest.Ring
	queued []pkt
}

func (g *fakeGuest) postRx(n int) {
	for i := 0; i < n; i++ {
		// Header and data in separate descriptors, as Linux 6.1 posts them.
		if _, err := g.rx.Submit([]vhostusertest.Buf{{Len: 44, Writable: true}, {Len: 4096, Writable: true}}, false); err != nil {
			g.t.Fatal(err)
		}
	}
}

func (g *fakeGuest) send(p pkt) {
	g.t.Helper()
	if p.srcCID == 0 {
		p.srcCID, p.dstCID, p.typ = guestCID, 2, 1
	}
	bufs := []vhostusertest.Buf{{Data: p.encode()}}
	if len(p.data) > 0 {
		bufs = append(bufs, vhostusertest.Buf{Data: p.data})
	}
	if _, err := g.tx.Submit(bufs, false); err != nil {
		g.t.Fatal(err)
	}
	if _, err := g.tx.WaitUsed(1, guard); err != nil {
		g.t.Fatal(err)
	}
}

// recv returns the next packet the device put in the rx ring and posts a
// fresh buffer in its place.
func (g *fakeGuest) recv() pkt {
	g.t.Helper()
	if len(g.queued) == 0 {
		used, err := g.rx.WaitUsed(1, guard)
		if err != nil {
			g.t.Fatal(err)
		}
		for _, u := range used {
			ha, _ := g.rx.DescAddr(u.Head, 0)
			da, _ := g.rx.DescAddr(u.Head, 1)
			b := append(g.vm.Read(ha, 44), g.vm.Read(da, int(u.Len)-44)...)
			g.queued = append(g.queued, decode(b))
		}
		g.postRx(len(used))
	}
	p := g.queued[0]
	g.queued = g.queued[1:]
	return p
}

// recvOne waits for exactly one packet (the rx ring is polled one at a time).
func (g *fakeGuest) expect(op uint16) pkt {
	g.t.Helper()
	p := g.recv()
	if p.op != op {
		g.t.Fatalf("got op %d (%+v), want %d", p.op, p, op)
	}
	if p.srcCID != 2 || p.dstCID != guestCID || p.typ != 1 {
		g.t.Fatalf("bad addressing %+v", p)
	}
	return p
}

type env struct {
	dir   string
	hsock string
	b     *vsock.Backend
	vsock string
}

func newEnv(t *testing.T, bufAlloc uint32) *env {
	e := &env{dir: t.TempDir()}
	e.hsock = filepath.Join(e.dir, "v.sock")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := vsock.New(vsock.Config{GuestCID: guestCID, Socket: e.hsock, BufAlloc: bufAlloc, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e.b = b
	e.vsock = filepath.Join(e.dir, "vu.sock")
	l, err := vhostuser.Listen(e.vsock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&vhostuser.Server{Logger: quiet, NewDevice: b.NewDevice}).Serve(ctx, l)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		b.Close()
	})
	return e
}

func (e *env) guest(t *testing.T) *fakeGuest {
	vm, err := vhostusertest.Dial(e.vsock, vhostusertest.Options{QueueSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	vm.SetDeadline(time.Now().Add(guard))
	cfg, err := vm.Config(8)
	if err != nil || binary.LittleEndian.Uint64(cfg) != guestCID {
		t.Fatalf("config = %x, %v; want CID %d", cfg, err, guestCID)
	}
	if err := vm.MapMemory(); err != nil {
		t.Fatal(err)
	}
	g := &fakeGuest{t: t, vm: vm}
	if g.rx, err = vm.SetupQueue(0); err != nil {
		t.Fatal(err)
	}
	if g.tx, err = vm.SetupQueue(1); err != nil {
		t.Fatal(err)
	}
	if _, err = vm.SetupQueue(2); err != nil {
		t.Fatal(err)
	}
	g.postRx(8)
	return g
}

func TestHostToGuest(t *testing.T) {
	e := newEnv(t, 128<<10)
	g := e.guest(t)

	type res struct {
		c   net.Conn
		err error
	}
	dialed := make(chan res, 1)
	go func() {
		c, err := vsock.Dial(context.Background(), e.hsock, 1234)
		dialed <- res{c, err}
	}()
	req := g.expect(opRequest)
	if req.dstPort != 1234 {
		t.Fatalf("REQUEST to port %d", req.dstPort)
	}
	// Accept, and talk first at once: the host must not lose these bytes
	// behind the OK line.
	g.send(pkt{srcPort: 1234, dstPort: req.srcPort, op: opResponse, bufAlloc: 64 << 10})
	g.send(pkt{srcPort: 1234, dstPort: req.srcPort, op: opRW, bufAlloc: 64 << 10, data: []byte("hello host")})
	r := <-dialed
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.c.Close()
	r.c.SetDeadline(time.Now().Add(guard))
	got := make([]byte, 10)
	if _, err := io.ReadFull(r.c, got); err != nil || string(got) != "hello host" {
		t.Fatalf("host read %q, %v", got, err)
	}
	if _, err := r.c.Write([]byte("hello guest")); err != nil {
		t.Fatal(err)
	}
	p := g.expect(opRW)
	if string(p.data) != "hello guest" || p.dstPort != 1234 || p.srcPort != req.srcPort {
		t.Fatalf("guest got %+v", p)
	}
	// The guest closes: the host sees EOF, the guest gets its RST.
	g.send(pkt{srcPort: 1234, dstPort: req.srcPort, op: opShutdown, flags: 3, bufAlloc: 64 << 10})
	if n, err := r.c.Read(got); err != io.EOF {
		t.Fatalf("host read after guest close: %d, %v; want EOF", n, err)
	}
	g.expect(opRST)
}

func TestHostToGuestRefused(t *testing.T) {
	e := newEnv(t, 128<<10)
	// No VM: refused.
	if _, err := vsock.Dial(context.Background(), e.hsock, 1); !errors.Is(err, vsock.ErrRefused) {
		t.Fatalf("Dial without a VM: %v, want ErrRefused", err)
	}
	g := e.guest(t)
	errc := make(chan error, 1)
	go func() {
		_, err := vsock.Dial(context.Background(), e.hsock, 99)
		errc <- err
	}()
	req := g.expect(opRequest)
	g.send(pkt{srcPort: 99, dstPort: req.srcPort, op: opRST})
	if err := <-errc; !errors.Is(err, vsock.ErrRefused) {
		t.Fatalf("Dial to a port the guest refuses: %v, want ErrRefused", err)
	}
}

func TestGuestToHostWithCredit(t *testing.T) {
	e := newEnv(t, 128<<10)
	g := e.guest(t)
	l, err := net.Listen("unix", e.hsock+"_5000")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	// A port nobody listens on: reset.
	g.send(pkt{srcPort: 7001, dstPort: 5001, op: opRequest, bufAlloc: 1 << 20})
	if p := g.expect(opRST); p.dstPort != 7001 || p.srcPort != 5001 {
		t.Fatalf("RST %+v", p)
	}
	// Data for a connection that does not exist: reset.
	g.send(pkt{srcPort: 7002, dstPort: 5000, op: opRW, data: []byte("x")})
	g.expect(opRST)

	const guestBuf = 16 << 10
	g.send(pkt{srcPort: 7000, dstPort: 5000, op: opRequest, bufAlloc: guestBuf})
	resp := g.expect(opResponse)
	if resp.bufAlloc != 128<<10 {
		t.Fatalf("backend advertises buf_alloc %d", resp.bufAlloc)
	}
	hc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	hc.SetDeadline(time.Now().Add(guard))
	g.send(pkt{srcPort: 7000, dstPort: 5000, op: opRW, bufAlloc: guestBuf, data: []byte("from guest")})
	got := make([]byte, 10)
	if _, err := io.ReadFull(hc, got); err != nil || string(got) != "from guest" {
		t.Fatalf("host got %q, %v", got, err)
	}

	// The host sends more than the guest has room for; the backend must
	// stop at the guest's credit and go on when the guest frees space.
	big := make([]byte, 100<<10)
	for i := range big {
		big[i] = byte(i * 31)
	}
	go hc.Write(big)
	var recvd []byte
	var fwd uint32
	for len(recvd) < len(big) {
		p := g.recv()
		switch p.op {
		case opRW:
			recvd = append(recvd, p.data...)
			if uint32(len(recvd))-fwd > guestBuf {
				t.Fatalf("backend sent %d bytes with only %d credit", uint32(len(recvd))-fwd, guestBuf)
			}
			if uint32(len(recvd))-fwd == guestBuf {
				// Buffer full: "the application reads it", return credit.
				fwd = uint32(len(recvd))
				g.send(pkt{srcPort: 7000, dstPort: 5000, op: opCreditUpdate, bufAlloc: guestBuf, fwdCnt: fwd})
			}
		case opCreditRequest:
			fwd = uint32(len(recvd))
			g.send(pkt{srcPort: 7000, dstPort: 5000, op: opCreditUpdate, bufAlloc: guestBuf, fwdCnt: fwd})
		default:
			t.Fatalf("unexpected %+v", p)
		}
	}
	if !bytes.Equal(recvd, big) {
		t.Fatal("guest received different bytes")
	}

}

// A guest sending more than the backend's advertised buffer is reset.
func TestGuestOverrunIsReset(t *testing.T) {
	e := newEnv(t, 16<<10)
	g := e.guest(t)
	l, err := net.Listen("unix", e.hsock+"_5000")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	g.send(pkt{srcPort: 7000, dstPort: 5000, op: opRequest, bufAlloc: 1 << 20})
	if p := g.expect(opResponse); p.bufAlloc != 16<<10 {
		t.Fatalf("buf_alloc %d", p.bufAlloc)
	}
	g.send(pkt{srcPort: 7000, dstPort: 5000, op: opRW, bufAlloc: 1 << 20, data: make([]byte, 20<<10)})
	g.expect(opRST)
}

func TestHostCloseShutsDownGuestSide(t *testing.T) {
	e := newEnv(t, 128<<10)
	g := e.guest(t)
	l, err := net.Listen("unix", e.hsock+"_6000")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	g.send(pkt{srcPort: 7000, dstPort: 6000, op: opRequest, bufAlloc: 1 << 20})
	g.expect(opResponse)
	hc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	hc.Write([]byte("bye"))
	hc.Close()
	if p := g.expect(opRW); string(p.data) != "bye" {
		t.Fatalf("got %q", p.data)
	}
	if p := g.expect(opShutdown); p.flags&2 == 0 {
		t.Fatalf("SHUTDOWN flags %d, want SEND", p.flags)
	}
}

func TestNextVMGetsFreshSession(t *testing.T) {
	e := newEnv(t, 128<<10)
	g := e.guest(t)
	g.vm.Close()
	// The first session ends asynchronously; the second VM connects once
	// it has.
	deadline := time.Now().Add(guard)
	for {
		vm, err := vhostusertest.Dial(e.vsock, vhostusertest.Options{})
		if err == nil {
			_, err = vm.Config(8)
			vm.Close()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("second VM refused: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
