package vhostusertest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Request numbers and bits, repeated here on purpose: a test front-end that
// imported the backend's constants would agree with it even when both are
// wrong.
const (
	reqGetFeatures         = 1
	reqSetFeatures         = 2
	reqSetOwner            = 3
	reqSetMemTable         = 5
	reqSetVringNum         = 8
	reqSetVringAddr        = 9
	reqSetVringBase        = 10
	reqGetVringBase        = 11
	reqSetVringKick        = 12
	reqSetVringCall        = 13
	reqGetProtocolFeatures = 15
	reqSetProtocolFeatures = 16
	reqGetQueueNum         = 17
	reqSetVringEnable      = 18
	reqGetConfig           = 24
	reqAddMemReg           = 37
	reqRemMemReg           = 38

	featProtocolFeatures = 1 << 30
	featEventIdx         = 1 << 29
	featIndirect         = 1 << 28
	protoReplyAck        = 1 << 3
	protoConfig          = 1 << 9

	descNext     = 1
	descWrite    = 2
	descIndirect = 4

	// userBase makes front-end virtual addresses differ from guest
	// physical ones, as they do in a real VMM, so a backend that mixes
	// them up fails.
	userBase = 0x7f3200000000
)

// Options configure a FakeVM.
type Options struct {
	MemSize   int  // bytes of guest memory (default 16 MiB)
	SetMemTab bool // register memory with SET_MEM_TABLE (Cloud Hypervisor) instead of ADD_MEM_REG (QEMU)
	TwoRegion bool // split memory into two regions at MemSize/2
	QueueSize int  // descriptors per ring (default 64)
	EventIdx  bool // negotiate VIRTIO_RING_F_EVENT_IDX
	Features  uint64
}

// FakeVM is a connected front-end with guest memory and rings.
type FakeVM struct {
	conn     *net.UnixConn
	opts     Options
	memfd    int
	Mem      []byte // guest physical memory, address 0 at Mem[0]
	next     uint64 // bump allocator for guest memory
	features uint64
	proto    uint64
	queues   []*Ring
}

// Dial connects to the backend at path and negotiates features.
func Dial(path string, opts Options) (*FakeVM, error) {
	if opts.MemSize == 0 {
		opts.MemSize = 16 << 20
	}
	if opts.QueueSize == 0 {
		opts.QueueSize = 64
	}
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	vm := &FakeVM{conn: c, opts: opts, memfd: -1, next: 4096}
	fd, err := unix.MemfdCreate("fakevm", unix.MFD_CLOEXEC)
	if err != nil {
		vm.Close()
		return nil, err
	}
	vm.memfd = fd
	if err := unix.Ftruncate(fd, int64(opts.MemSize)); err != nil {
		vm.Close()
		return nil, err
	}
	vm.Mem, err = unix.Mmap(fd, 0, opts.MemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		vm.Close()
		return nil, err
	}
	if err := vm.negotiate(); err != nil {
		vm.Close()
		return nil, err
	}
	return vm, nil
}

func (vm *FakeVM) negotiate() error {
	f, err := vm.callU64(reqGetFeatures)
	if err != nil {
		return err
	}
	want := uint64(featProtocolFeatures|1<<32|featIndirect) | vm.opts.Features
	if vm.opts.EventIdx {
		want |= featEventIdx
	}
	if f&want != want {
		return fmt.Errorf("backend offers features %#x, want %#x", f, want)
	}
	vm.features = want
	p, err := vm.callU64(reqGetProtocolFeatures)
	if err != nil {
		return err
	}
	vm.proto = p & (protoReplyAck | protoConfig | 1 /*MQ*/ | 1<<15 /*CONFIGURE_MEM_SLOTS*/)
	if err := vm.send(reqSetProtocolFeatures, u64(vm.proto), nil, false); err != nil {
		return err
	}
	if err := vm.send(reqSetOwner, nil, nil, false); err != nil {
		return err
	}
	return vm.send(reqSetFeatures, u64(vm.features), nil, true)
}

// Close hangs up (the VM "goes away") and frees the memory.
func (vm *FakeVM) Close() error {
	for _, q := range vm.queues {
		unix.Close(q.kick)
		unix.Close(q.call)
	}
	vm.queues = nil
	if vm.conn != nil {
		vm.conn.Close()
	}
	if vm.Mem != nil {
		unix.Munmap(vm.Mem)
		vm.Mem = nil
	}
	if vm.memfd >= 0 {
		unix.Close(vm.memfd)
		vm.memfd = -1
	}
	return nil
}

// QueueNum asks GET_QUEUE_NUM.
func (vm *FakeVM) QueueNum() (uint64, error) { return vm.callU64(reqGetQueueNum) }

// Config asks GET_CONFIG for n bytes at offset 0.
func (vm *FakeVM) Config(n int) ([]byte, error) {
	p := make([]byte, 12+n)
	binary.LittleEndian.PutUint32(p[4:], uint32(n))
	if err := vm.writeMsg(reqGetConfig, 0, p, nil); err != nil {
		return nil, err
	}
	r, err := vm.readReply(reqGetConfig)
	if err != nil {
		return nil, err
	}
	if len(r) < 12 {
		return nil, fmt.Errorf("GET_CONFIG: %d-byte reply", len(r))
	}
	return r[12:], nil
}

// Alloc reserves n bytes of guest memory (aligned to 64) and returns the
// guest physical address.
func (vm *FakeVM) Alloc(n int) uint64 {
	a := (vm.next + 63) &^ 63
	if a+uint64(n) > uint64(len(vm.Mem)) {
		panic("fakevm: out of guest memory")
	}
	vm.next = a + uint64(n)
	return a
}

// MapMemory registers guest memory with the backend.
func (vm *FakeVM) MapMemory() error { return vm.memory(false) }

// UnmapMemory removes the regions MapMemory registered with REM_MEM_REG,
// as QEMU does when memory is unplugged or reconfigured (not valid with
// SetMemTab).
func (vm *FakeVM) UnmapMemory() error { return vm.memory(true) }

func (vm *FakeVM) memory(remove bool) error {
	type reg struct{ ga, size uint64 }
	regs := []reg{{0, uint64(len(vm.Mem))}}
	if vm.opts.TwoRegion {
		h := uint64(len(vm.Mem) / 2)
		regs = []reg{{0, h}, {h, uint64(len(vm.Mem)) - h}}
	}
	enc := func(b []byte, r reg) {
		binary.LittleEndian.PutUint64(b, r.ga)
		binary.LittleEndian.PutUint64(b[8:], r.size)
		binary.LittleEndian.PutUint64(b[16:], userBase+r.ga)
		binary.LittleEndian.PutUint64(b[24:], r.ga) // mmap offset in the memfd
	}
	if vm.opts.SetMemTab && !remove {
		p := make([]byte, 8+32*len(regs))
		binary.LittleEndian.PutUint32(p, uint32(len(regs)))
		fds := make([]int, len(regs))
		for i, r := range regs {
			enc(p[8+32*i:], r)
			fds[i] = vm.memfd
		}
		return vm.send(reqSetMemTable, p, fds, true)
	}
	req := uint32(reqAddMemReg)
	if remove {
		req = reqRemMemReg
	}
	for _, r := range regs {
		p := make([]byte, 40)
		enc(p[8:], r)
		if err := vm.send(req, p, []int{vm.memfd}, true); err != nil {
			return err
		}
	}
	return nil
}

// Ring is the driver side of one split virtqueue.
type Ring struct {
	vm          *FakeVM
	Index       int
	size        uint16
	desc, avail uint64 // guest addresses
	used        uint64
	kick, call  int
	mu          sync.Mutex
	freeDesc    []uint16
	availIdx    uint16
	lastUsed    uint16
	chains      map[uint16][]uint16 // head -> descriptors to free
	kept        map[uint16]bool     // prepared chains: reused, never freed
}

// SetupQueue allocates ring i in guest memory, sends its description to
// the backend and enables it.
func (vm *FakeVM) SetupQueue(i int) (*Ring, error) {
	n := vm.opts.QueueSize
	r := &Ring{vm: vm, Index: i, size: uint16(n), chains: map[uint16][]uint16{}, kept: map[uint16]bool{}}
	r.desc = vm.Alloc(16 * n)
	r.avail = vm.Alloc(6 + 2*n)
	r.used = vm.Alloc(6 + 8*n)
	for d := n - 1; d >= 0; d-- {
		r.freeDesc = append(r.freeDesc, uint16(d))
	}
	var err error
	if r.kick, err = unix.Eventfd(0, unix.EFD_CLOEXEC); err != nil {
		return nil, err
	}
	if r.call, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, err
	}
	vm.queues = append(vm.queues, r)
	st := func(num uint32) []byte {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint32(b, uint32(i))
		binary.LittleEndian.PutUint32(b[4:], num)
		return b
	}
	if err := vm.send(reqSetVringNum, st(uint32(n)), nil, true); err != nil {
		return nil, err
	}
	if err := vm.send(reqSetVringBase, st(0), nil, true); err != nil {
		return nil, err
	}
	a := make([]byte, 40)
	binary.LittleEndian.PutUint32(a, uint32(i))
	binary.LittleEndian.PutUint64(a[8:], userBase+r.desc)
	binary.LittleEndian.PutUint64(a[16:], userBase+r.used)
	binary.LittleEndian.PutUint64(a[24:], userBase+r.avail)
	if err := vm.send(reqSetVringAddr, a, nil, true); err != nil {
		return nil, err
	}
	if err := vm.send(reqSetVringCall, u64(uint64(i)), []int{r.call}, true); err != nil {
		return nil, err
	}
	if err := vm.send(reqSetVringKick, u64(uint64(i)), []int{r.kick}, true); err != nil {
		return nil, err
	}
	if err := vm.send(reqSetVringEnable, st(1), nil, true); err != nil {
		return nil, err
	}
	return r, nil
}

// Disable sends SET_VRING_ENABLE 0 and waits for the acknowledgement.
func (r *Ring) Disable() error { return r.setEnable(0) }

// Enable sends SET_VRING_ENABLE 1 and waits for the acknowledgement.
func (r *Ring) Enable() error { return r.setEnable(1) }

func (r *Ring) setEnable(v uint32) error {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, uint32(r.Index))
	binary.LittleEndian.PutUint32(b[4:], v)
	return r.vm.send(reqSetVringEnable, b, nil, true)
}

// GetBase sends GET_VRING_BASE (stopping the ring) and returns the
// backend's last available index.
func (r *Ring) GetBase() (uint16, error) {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, uint32(r.Index))
	if err := r.vm.writeMsg(reqGetVringBase, 0, b, nil); err != nil {
		return 0, err
	}
	rep, err := r.vm.readReply(reqGetVringBase)
	if err != nil {
		return 0, err
	}
	if len(rep) != 8 {
		return 0, fmt.Errorf("GET_VRING_BASE: %d-byte reply", len(rep))
	}
	return uint16(binary.LittleEndian.Uint32(rep[4:])), nil
}

// Buf is one buffer of a chain being submitted: Data for a readable one,
// Len bytes for a writable one.
type Buf struct {
	Data     []byte
	Len      int
	Writable bool
	// Addr, if not zero, is where in guest memory the buffer lies (from
	// Alloc, by the caller): buffers laid out apart, as a guest's page
	// cache pages are, keep a backend from merging them. Zero allocates
	// a fresh buffer after the last one.
	Addr uint64
}

// Submit writes a chain (copying readable data into guest memory), makes
// it available and kicks. With indirect, the chain goes through one
// indirect descriptor table. It returns the head index.
func (r *Ring) Submit(bufs []Buf, indirect bool) (uint16, error) {
	return r.submit(bufs, indirect, false)
}

func (r *Ring) submit(bufs []Buf, indirect, prepareOnly bool) (uint16, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	vm := r.vm
	need := len(bufs)
	if indirect {
		need = 1
	}
	if len(r.freeDesc) < need {
		return 0, errors.New("fakevm: ring full")
	}
	take := func() uint16 {
		d := r.freeDesc[len(r.freeDesc)-1]
		r.freeDesc = r.freeDesc[:len(r.freeDesc)-1]
		return d
	}
	addrs := make([]uint64, len(bufs))
	for i, b := range bufs {
		n := b.Len
		if !b.Writable {
			n = len(b.Data)
		}
		addrs[i] = b.Addr
		if addrs[i] == 0 {
			addrs[i] = vm.Alloc(max(n, 1))
		}
		if !b.Writable {
			copy(vm.Mem[addrs[i]:], b.Data)
		}
	}
	writeDesc := func(at uint64, addr uint64, n int, flags, next uint16) {
		binary.LittleEndian.PutUint64(vm.Mem[at:], addr)
		binary.LittleEndian.PutUint32(vm.Mem[at+8:], uint32(n))
		binary.LittleEndian.PutUint16(vm.Mem[at+12:], flags)
		binary.LittleEndian.PutUint16(vm.Mem[at+14:], next)
	}
	blen := func(b Buf) int {
		if b.Writable {
			return b.Len
		}
		return len(b.Data)
	}
	var head uint16
	var used []uint16
	if indirect {
		tbl := vm.Alloc(16 * len(bufs))
		for i, b := range bufs {
			var flags uint16
			if b.Writable {
				flags |= descWrite
			}
			if i+1 < len(bufs) {
				flags |= descNext
			}
			writeDesc(tbl+uint64(16*i), addrs[i], blen(b), flags, uint16(i+1))
		}
		head = take()
		used = []uint16{head}
		writeDesc(r.desc+16*uint64(head), tbl, 16*len(bufs), descIndirect, 0)
	} else {
		ids := make([]uint16, len(bufs))
		for i := range ids {
			ids[i] = take()
		}
		for i, b := range bufs {
			var flags, next uint16
			if b.Writable {
				flags |= descWrite
			}
			if i+1 < len(bufs) {
				flags |= descNext
				next = ids[i+1]
			}
			writeDesc(r.desc+16*uint64(ids[i]), addrs[i], blen(b), flags, next)
		}
		head, used = ids[0], ids
	}
	r.chains[head] = used
	if prepareOnly {
		r.kept[head] = true
		return head, nil
	}
	r.publishLocked(head)
	return head, r.Kick()
}

func (r *Ring) publishLocked(head uint16) {
	mem := r.vm.Mem
	slot := r.avail + 4 + 2*uint64(r.availIdx%r.size)
	binary.LittleEndian.PutUint16(mem[slot:], head)
	r.availIdx++
	binary.LittleEndian.PutUint16(mem[r.avail+2:], r.availIdx) // amd64: stores are ordered
}

// Prepare writes a chain like Submit but does not make it available:
// Publish does, as often as the caller likes (benchmarks reuse chains
// instead of allocating guest memory per request).
func (r *Ring) Prepare(bufs []Buf, indirect bool) (uint16, error) {
	return r.submit(bufs, indirect, true)
}

// Publish makes a prepared chain available again and kicks.
func (r *Ring) Publish(head uint16) error {
	r.mu.Lock()
	r.publishLocked(head)
	r.mu.Unlock()
	return r.Kick()
}

// Kick notifies the backend.
func (r *Ring) Kick() error {
	_, err := unix.Write(r.kick, u64(1))
	return err
}

// SetUsedEvent writes used_event (event idx): the backend should call
// only once used.idx passes it.
func (r *Ring) SetUsedEvent(v uint16) {
	binary.LittleEndian.PutUint16(r.vm.Mem[r.avail+4+2*uint64(r.size):], v)
}

// Used is one completed chain.
type Used struct {
	Head uint16
	Len  uint32
}

// PollUsed returns the completions published since the last call.
func (r *Ring) PollUsed() []Used {
	r.mu.Lock()
	defer r.mu.Unlock()
	mem := r.vm.Mem
	idx := binary.LittleEndian.Uint16(mem[r.used+2:])
	var out []Used
	for r.lastUsed != idx {
		e := r.used + 4 + 8*uint64(r.lastUsed%r.size)
		u := Used{Head: uint16(binary.LittleEndian.Uint32(mem[e:])), Len: binary.LittleEndian.Uint32(mem[e+4:])}
		out = append(out, u)
		if !r.kept[u.Head] {
			r.freeDesc = append(r.freeDesc, r.chains[u.Head]...)
			delete(r.chains, u.Head)
		}
		r.lastUsed++
	}
	return out
}

// WaitCall waits for the backend to signal the call eventfd, up to d. It
// reports whether a call came.
func (r *Ring) WaitCall(d time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(r.call), Events: unix.POLLIN}}
	n, _ := unix.Poll(fds, int(d/time.Millisecond))
	if n > 0 {
		var b [8]byte
		unix.Read(r.call, b[:])
		return true
	}
	return false
}

// WaitUsed waits until at least n completions arrived or timeout passes
// (a guard against a hang, not a timing assertion).
func (r *Ring) WaitUsed(n int, timeout time.Duration) ([]Used, error) {
	var out []Used
	deadline := time.Now().Add(timeout)
	for {
		out = append(out, r.PollUsed()...)
		if len(out) >= n {
			return out, nil
		}
		if r.vm.features&featEventIdx != 0 {
			// As a Linux driver does before it sleeps: ask for a call
			// on the next completion, then look once more.
			r.mu.Lock()
			r.SetUsedEvent(r.lastUsed)
			r.mu.Unlock()
			if out = append(out, r.PollUsed()...); len(out) >= n {
				return out, nil
			}
		}
		if time.Now().After(deadline) {
			return out, fmt.Errorf("fakevm: queue %d: %d of %d completions after %v", r.Index, len(out), n, timeout)
		}
		r.WaitCall(50 * time.Millisecond)
	}
}

// Read returns n bytes of guest memory at the writable buffer i of a
// submitted chain; callers keep the addresses via Submit's Bufs order.
func (vm *FakeVM) Read(ga uint64, n int) []byte {
	return append([]byte(nil), vm.Mem[ga:ga+uint64(n)]...)
}

// DescAddr returns the guest address of descriptor d's buffer (for
// reading what the backend wrote), following an indirect table if the
// head is indirect.
func (r *Ring) DescAddr(head uint16, i int) (uint64, uint32) {
	mem := r.vm.Mem
	at := r.desc + 16*uint64(head)
	if binary.LittleEndian.Uint16(mem[at+12:])&descIndirect != 0 {
		tbl := binary.LittleEndian.Uint64(mem[at:])
		at = tbl + 16*uint64(i)
	} else {
		for ; i > 0; i-- {
			at = r.desc + 16*uint64(binary.LittleEndian.Uint16(mem[at+14:]))
		}
	}
	return binary.LittleEndian.Uint64(mem[at:]), binary.LittleEndian.Uint32(mem[at+8:])
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, v)
	return b
}

func (vm *FakeVM) callU64(req uint32) (uint64, error) {
	if err := vm.writeMsg(req, 0, nil, nil); err != nil {
		return 0, err
	}
	p, err := vm.readReply(req)
	if err != nil {
		return 0, err
	}
	if len(p) != 8 {
		return 0, fmt.Errorf("request %d: %d-byte reply", req, len(p))
	}
	return binary.LittleEndian.Uint64(p), nil
}

// send writes a request; with ack (and REPLY_ACK negotiated) it waits for
// the backend's status.
func (vm *FakeVM) send(req uint32, p []byte, fds []int, ack bool) error {
	var flags uint32
	ack = ack && vm.proto&protoReplyAck != 0
	if ack {
		flags = 0x8
	}
	if err := vm.writeMsg(req, flags, p, fds); err != nil {
		return err
	}
	if !ack {
		return nil
	}
	r, err := vm.readReply(req)
	if err != nil {
		return err
	}
	if len(r) != 8 || binary.LittleEndian.Uint64(r) != 0 {
		return fmt.Errorf("request %d: backend answered failure %x", req, r)
	}
	return nil
}

// Raw sends arbitrary bytes as if they were a message (for error tests).
func (vm *FakeVM) Raw(b []byte) error {
	_, err := vm.conn.Write(b)
	return err
}

func (vm *FakeVM) writeMsg(req, flags uint32, p []byte, fds []int) error {
	b := make([]byte, 12+len(p))
	binary.LittleEndian.PutUint32(b, req)
	binary.LittleEndian.PutUint32(b[4:], 1|flags)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(p)))
	copy(b[12:], p)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err := vm.conn.WriteMsgUnix(b, oob, nil)
	return err
}

func (vm *FakeVM) readReply(req uint32) ([]byte, error) {
	var h [12]byte
	if err := readFull(vm.conn, h[:]); err != nil {
		return nil, err
	}
	if got := binary.LittleEndian.Uint32(h[:]); got != req {
		return nil, fmt.Errorf("reply to %d, want %d", got, req)
	}
	if binary.LittleEndian.Uint32(h[4:])&0x4 == 0 {
		return nil, errors.New("reply flag not set")
	}
	p := make([]byte, binary.LittleEndian.Uint32(h[8:]))
	return p, readFull(vm.conn, p)
}

func readFull(c *net.UnixConn, b []byte) error {
	for len(b) > 0 {
		n, err := c.Read(b)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// SetDeadline bounds every later exchange with the backend, so a backend
// that never answers fails the test instead of hanging it.
func (vm *FakeVM) SetDeadline(t time.Time) error { return vm.conn.SetDeadline(t) }
