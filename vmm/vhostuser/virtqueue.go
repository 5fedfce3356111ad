package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrBadChain is wrapped by errors about a ring or descriptor chain the
// driver wrote wrongly (an index out of range, a loop, memory outside the
// table, a readable buffer after a writable one). The queue stops; the
// connection and the other queues go on.
var ErrBadChain = errors.New("virtqueue: malformed ring or descriptor chain")

const (
	descSize = 16

	descFNext     = 1
	descFWrite    = 2
	descFIndirect = 4

	availFNoInterrupt = 1

	// MaxQueueSize is the largest ring size virtio allows for split queues.
	MaxQueueSize = 32768
)

// Chain is one descriptor chain taken from the available ring. Readable
// holds the buffers the driver wrote (device reads them), Writable the
// buffers the device fills; both alias guest memory and are valid only
// until the chain is pushed back. Buffers adjacent in memory are merged,
// so the slices need not match the driver's descriptors one for one
// (virtio devices must not depend on framing anyway); the bytes, in
// order, are the same. The pages of Writable are already mapped for
// writing (see pageTable).
type Chain struct {
	Head     uint16
	Readable [][]byte
	Writable [][]byte
}

// ReadableLen is the total length of the readable buffers.
func (c *Chain) ReadableLen() int { return iovLen(c.Readable) }

// WritableLen is the total length of the writable buffers.
func (c *Chain) WritableLen() int { return iovLen(c.Writable) }

func iovLen(iov [][]byte) int {
	n := 0
	for _, b := range iov {
		n += len(b)
	}
	return n
}

// Queue is one started split virtqueue, handed to Device.RunQueue.
//
// Pop may be called from one goroutine at a time (the RunQueue goroutine);
// Push, Notify and Done may be called from any goroutine. All of them must
// stop before RunQueue returns: the memory behind the rings may be unmapped
// afterwards.
type Queue struct {
	index    int
	size     uint16
	eventIdx bool
	indirect bool

	mem   *memory
	desc  []byte // size*16
	avail []byte // flags, idx, ring[size], used_event
	used  []byte // flags, idx, ring[size]{id,len}, avail_event

	lastAvail uint16 // Pop's goroutine only

	mu             sync.Mutex // guards the used ring and the fields below
	usedIdx        uint16
	signalledUsed  uint16
	signalledValid bool
	callFD         int // -1: none
	broken         error

	// The kick eventfd, non-blocking in Go's netpoller: the session sets
	// a read deadline in the past to stop the queue, which wakes a
	// WaitKick or the reader goroutine behind Kicks.
	kick       *os.File
	kickOnce   sync.Once
	kicks      chan struct{}
	kickReader chan struct{} // closed when the reader goroutine ended; nil if never started
	log        *slog.Logger
}

// queueConfig is what the session knows about a ring when it starts it.
type queueConfig struct {
	index     int
	size      uint16
	addr      vringAddr
	lastAvail uint16
	features  uint64
	callFD    int
	kick      *os.File
}

// newQueue translates the ring addresses through mem and returns a queue
// ready to pop. The caller delivers kicks on q.kicks.
func newQueue(mem *memory, cfg queueConfig, log *slog.Logger) (*Queue, error) {
	n := uint64(cfg.size)
	if n == 0 || n > MaxQueueSize || n&(n-1) != 0 {
		return nil, protoErr("vring %d: size %d is not a power of two up to %d", cfg.index, n, MaxQueueSize)
	}
	q := &Queue{
		index:     cfg.index,
		size:      cfg.size,
		eventIdx:  cfg.features&FeatureRingEventIdx != 0,
		indirect:  cfg.features&FeatureRingIndirectDesc != 0,
		mem:       mem,
		lastAvail: cfg.lastAvail,
		callFD:    cfg.callFD,
		kick:      cfg.kick,
		log:       log,
	}
	var ok bool
	if q.desc, ok = mem.userSlice(cfg.addr.Desc, n*descSize); !ok || cfg.addr.Desc%16 != 0 {
		return nil, protoErr("vring %d: descriptor table at %#x not in guest memory or misaligned", cfg.index, cfg.addr.Desc)
	}
	if q.avail, ok = mem.userSlice(cfg.addr.Avail, 6+2*n); !ok || cfg.addr.Avail%2 != 0 {
		return nil, protoErr("vring %d: available ring at %#x not in guest memory or misaligned", cfg.index, cfg.addr.Avail)
	}
	if q.used, ok = mem.userSlice(cfg.addr.Used, 6+8*n); !ok || cfg.addr.Used%4 != 0 {
		return nil, protoErr("vring %d: used ring at %#x not in guest memory or misaligned", cfg.index, cfg.addr.Used)
	}
	if uintptr(unsafe.Pointer(&q.used[0]))%4 != 0 {
		return nil, protoErr("vring %d: used ring maps to a misaligned address", cfg.index)
	}
	q.usedIdx = load16(q.used[2:])
	return q, nil
}

// Index is the queue's number within the device.
func (q *Queue) Index() int { return q.index }

// Size is the number of descriptors in the ring.
func (q *Queue) Size() int { return int(q.size) }

// Kicks delivers a value whenever the driver kicked the queue since the
// last receive (notifications coalesce), and one at the start. It is
// never closed: select on it together with the context RunQueue got. It
// costs a goroutine and a hand-off per kick; a device that has nothing
// else to wait for uses WaitKick instead. A queue uses one or the other.
func (q *Queue) Kicks() <-chan struct{} {
	q.kickOnce.Do(func() {
		q.kicks = make(chan struct{}, 1)
		// A kick may have come before anyone listened: look at the ring once.
		q.kicks <- struct{}{}
		if q.kick != nil {
			q.kickReader = make(chan struct{})
			go kickReader(q.kick, q.kicks, q.kickReader)
		}
	})
	return q.kicks
}

// ErrStopped is returned by WaitKick when the queue is being stopped.
var ErrStopped = errors.New("virtqueue: stopped")

// WaitKick blocks until the driver kicks the queue (or kicked it since the
// last WaitKick), or until the queue stops, then ErrStopped. It reads the
// kick eventfd itself, so the goroutine that wakes up is the one that
// pops: no hand-off on the way from the guest's kick to the request. Call
// it from one goroutine at a time (the one that pops), after Pop came back
// empty.
func (q *Queue) WaitKick() error {
	if q.kick == nil {
		return ErrStopped
	}
	var buf [8]byte
	for {
		_, err := q.kick.Read(buf[:])
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EAGAIN):
			continue
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, os.ErrClosed):
			return ErrStopped
		default:
			return fmt.Errorf("virtqueue %d: kick eventfd: %w", q.index, err)
		}
	}
}

// waitKickReader waits for the goroutine behind Kicks, if one was started;
// the caller has stopped the kick file and RunQueue has returned.
func (q *Queue) waitKickReader() {
	q.kickOnce.Do(func() {}) // a late Kicks may not start one any more
	if q.kickReader != nil {
		<-q.kickReader
	}
}

// Pop takes the next available descriptor chain, or returns nil when the
// ring is empty (after arranging, with event idx, for the driver to kick on
// the next one, so waiting on Kicks is then race-free). An error wrapping
// ErrBadChain means the driver broke the ring; the queue is unusable.
func (q *Queue) Pop() (*Chain, error) {
	if err := q.brokenErr(); err != nil {
		return nil, err
	}
	availIdx := loadHi16(q.avail)
	if availIdx == q.lastAvail && q.eventIdx {
		// Ask for a kick on the next entry, then look again: the driver
		// may have published one before it saw our avail_event.
		store16(q.used[4+8*int(q.size):], q.lastAvail)
		fence()
		availIdx = loadHi16(q.avail)
	}
	if availIdx == q.lastAvail {
		return nil, nil
	}
	if pending := availIdx - q.lastAvail; pending > q.size {
		return nil, q.fail(fmt.Errorf("%w: queue %d: avail.idx %d is %d ahead of %d entries", ErrBadChain, q.index, availIdx, pending, q.size))
	}
	slot := int(q.lastAvail % q.size)
	head := binary.LittleEndian.Uint16(q.avail[4+2*slot:])
	q.lastAvail++
	c, err := q.walk(head)
	if err != nil {
		return nil, q.fail(err)
	}
	return c, nil
}

// Unpop gives back c, which must be the chain the last Pop returned, as
// if it had not been popped: the driver will see it again at the next Pop.
// A device that popped a buffer before knowing it had something to put in
// it uses this instead of keeping the buffer.
func (q *Queue) Unpop(c *Chain) {
	slot := int((q.lastAvail - 1) % q.size)
	if binary.LittleEndian.Uint16(q.avail[4+2*slot:]) == c.Head {
		q.lastAvail--
	}
}

// walk follows the descriptor chain starting at head, validating every
// index and length: the driver is not trusted.
func (q *Queue) walk(head uint16) (*Chain, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: queue %d chain %d: %s", ErrBadChain, q.index, head, fmt.Sprintf(format, args...))
	}
	if head >= q.size {
		return nil, bad("head out of range (%d entries)", q.size)
	}
	rd, wr := iovBuilder{}, iovBuilder{prefault: true}
	table, limit := q.desc, uint32(q.size)
	i, seen, indirect := uint32(head), uint32(0), false
	for {
		d := table[i*descSize : (i+1)*descSize]
		addr := binary.LittleEndian.Uint64(d)
		n := binary.LittleEndian.Uint32(d[8:])
		flags := binary.LittleEndian.Uint16(d[12:])
		next := binary.LittleEndian.Uint16(d[14:])
		if flags&descFIndirect != 0 {
			switch {
			case !q.indirect:
				return nil, bad("indirect descriptor without VIRTIO_F_INDIRECT_DESC")
			case indirect:
				return nil, bad("nested indirect descriptor")
			case flags&descFNext != 0:
				return nil, bad("indirect descriptor with NEXT")
			case n == 0 || n%descSize != 0 || n/descSize > MaxQueueSize:
				return nil, bad("indirect table of %d bytes", n)
			case seen != 0:
				return nil, bad("indirect descriptor inside a chain")
			}
			t, ok := q.mem.slice(addr, n)
			if !ok || addr%8 != 0 {
				return nil, bad("indirect table %#x+%d outside guest memory", addr, n)
			}
			table, limit, i, indirect = t, n/descSize, 0, true
			continue
		}
		seen++
		if seen > limit {
			return nil, bad("loop (more than %d descriptors)", limit)
		}
		var ok bool
		if flags&descFWrite != 0 {
			ok = wr.add(q.mem, addr, n)
		} else {
			if !wr.empty() {
				return nil, bad("readable descriptor after a writable one")
			}
			ok = rd.add(q.mem, addr, n)
		}
		if !ok {
			return nil, bad("buffer %#x+%d outside guest memory", addr, n)
		}
		if flags&descFNext == 0 {
			return &Chain{Head: head, Readable: rd.done(), Writable: wr.done()}, nil
		}
		if uint32(next) >= limit {
			return nil, bad("next %d out of range", next)
		}
		i = uint32(next)
	}
}

// Push returns c to the driver through the used ring, recording that the
// device wrote written bytes into its writable buffers. It does not
// interrupt the guest; call Notify (or use Done).
func (q *Queue) Push(c *Chain, written uint32) {
	q.mu.Lock()
	defer q.mu.Unlock()
	slot := 4 + 8*int(q.usedIdx%q.size)
	binary.LittleEndian.PutUint32(q.used[slot:], uint32(c.Head))
	binary.LittleEndian.PutUint32(q.used[slot+4:], written)
	q.usedIdx++
	// used.flags stays 0 (we never ask the driver not to kick); publishing
	// the word with an atomic store orders the element before the index.
	storeWord32(q.used, uint32(q.usedIdx)<<16)
}

// Notify interrupts the guest through the call eventfd if the driver wants
// to hear about the entries pushed since the last notification.
func (q *Queue) Notify() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.needNotifyLocked() || q.callFD < 0 {
		return
	}
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(q.callFD, one[:]); err != nil && !errors.Is(err, unix.EAGAIN) {
		q.log.Debug("vhost-user: call eventfd write", "queue", q.index, "err", err)
	}
}

// Done is Push followed by Notify.
func (q *Queue) Done(c *Chain, written uint32) {
	q.Push(c, written)
	q.Notify()
}

func (q *Queue) needNotifyLocked() bool {
	fence() // used.idx must be visible before we read the driver's wishes
	if !q.eventIdx {
		return load16(q.avail)&availFNoInterrupt == 0
	}
	usedEvent := load16(q.avail[4+2*int(q.size):])
	old := q.signalledUsed
	valid := q.signalledValid
	q.signalledUsed, q.signalledValid = q.usedIdx, true
	return !valid || needEvent(usedEvent, q.usedIdx, old)
}

// needEvent is virtio's vring_need_event: has new_idx moved past event
// since old?
func needEvent(event, newIdx, old uint16) bool {
	return newIdx-event-1 < newIdx-old
}

func (q *Queue) fail(err error) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.broken == nil {
		q.broken = err
	}
	return q.broken
}

func (q *Queue) brokenErr() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.broken
}

// kickReader turns a kick eventfd into notifications on q.kicks until the
// file's read deadline is set in the past (stop) or it is closed. The fd
// is non-blocking and registered with Go's netpoller, so stopping never
// waits for the guest.
func kickReader(f *os.File, kicks chan<- struct{}, done chan<- struct{}) {
	defer close(done)
	var buf [8]byte
	for {
		if _, err := f.Read(buf[:]); err != nil {
			if errors.Is(err, unix.EAGAIN) {
				continue
			}
			return
		}
		select {
		case kicks <- struct{}{}:
		default:
		}
	}
}
