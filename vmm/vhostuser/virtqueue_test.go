package vhostuser

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeGuest is fake guest memory: plain Go byte slices standing in for the
// mapped regions, with a tiny driver writing rings into them. User
// (front-end) addresses are guest addresses + fakeUserOff.
type fakeGuest struct {
	mem               *memory
	size              uint16
	desc, avail, used uint64
	availIdx          uint16
}

const fakeUserOff = 0x10000000

func newFakeGuest(t testing.TB, regionSizes []uint64, size uint16) *fakeGuest {
	m := &memory{}
	ga := uint64(0)
	for _, n := range regionSizes {
		r := region{MemoryRegion: MemoryRegion{GuestAddr: ga, Size: n, UserAddr: ga + fakeUserOff}, data: make([]byte, n)}
		var err error
		if m, err = m.with(r); err != nil {
			t.Fatal(err)
		}
		ga += n
	}
	g := &fakeGuest{mem: m, size: size, desc: 0, avail: 16 * uint64(size)}
	g.used = (g.avail + 6 + 2*uint64(size) + 3) &^ 3
	return g
}

func (g *fakeGuest) b(ga uint64, n int) []byte {
	s, ok := g.mem.slice(ga, uint32(n))
	if !ok {
		panic("fakeGuest: address outside memory")
	}
	return s
}

func (g *fakeGuest) queue(t testing.TB, features uint64) *Queue {
	q, err := newQueue(g.mem, queueConfig{
		size: g.size, features: features, callFD: -1,
		addr: vringAddr{Desc: g.desc + fakeUserOff, Avail: g.avail + fakeUserOff, Used: g.used + fakeUserOff},
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func (g *fakeGuest) setDesc(tableGA uint64, i uint16, addr uint64, n uint32, flags, next uint16) {
	d := g.b(tableGA+16*uint64(i), 16)
	binary.LittleEndian.PutUint64(d, addr)
	binary.LittleEndian.PutUint32(d[8:], n)
	binary.LittleEndian.PutUint16(d[12:], flags)
	binary.LittleEndian.PutUint16(d[14:], next)
}

func (g *fakeGuest) publish(head uint16) {
	binary.LittleEndian.PutUint16(g.b(g.avail+4+2*uint64(g.availIdx%g.size), 2), head)
	g.availIdx++
	binary.LittleEndian.PutUint16(g.b(g.avail+2, 2), g.availIdx)
}

func TestPopSimpleChainAndPush(t *testing.T) {
	g := newFakeGuest(t, []uint64{1 << 20}, 8)
	copy(g.b(0x8000, 5), "hello")
	g.setDesc(g.desc, 3, 0x8000, 5, descFNext, 5)
	g.setDesc(g.desc, 5, 0x9000, 100, descFWrite, 0)
	g.publish(3)
	q := g.queue(t, 0)
	c, err := q.Pop()
	if err != nil || c == nil {
		t.Fatalf("Pop = %v, %v", c, err)
	}
	if c.Head != 3 || len(c.Readable) != 1 || string(c.Readable[0]) != "hello" || c.WritableLen() != 100 {
		t.Fatalf("chain = head %d readable %q writable %d", c.Head, c.Readable, c.WritableLen())
	}
	copy(c.Writable[0], "world")
	if c2, err := q.Pop(); c2 != nil || err != nil {
		t.Fatalf("second Pop = %v, %v; want empty", c2, err)
	}
	q.Push(c, 5)
	if got := binary.LittleEndian.Uint16(g.b(g.used+2, 2)); got != 1 {
		t.Errorf("used.idx = %d, want 1", got)
	}
	e := g.b(g.used+4, 8)
	if id, n := binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[4:]); id != 3 || n != 5 {
		t.Errorf("used elem = {%d, %d}, want {3, 5}", id, n)
	}
	if string(g.b(0x9000, 5)) != "world" {
		t.Errorf("guest buffer = %q", g.b(0x9000, 5))
	}
}

func TestPopBufferAcrossRegions(t *testing.T) {
	g := newFakeGuest(t, []uint64{64 << 10, 64 << 10}, 4)
	// 0x10000 is the region boundary; a 32-byte buffer straddles it.
	src := []byte("0123456789abcdef0123456789ABCDEF")
	copy(g.b(0xfff0, 16), src[:16])
	copy(g.b(0x10000, 16), src[16:])
	g.setDesc(g.desc, 0, 0xfff0, 32, 0, 0)
	g.publish(0)
	c, err := g.queue(t, 0).Pop()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Readable) != 2 || !bytes.Equal(bytes.Join(c.Readable, nil), src) {
		t.Fatalf("readable = %q", c.Readable)
	}
}

func TestPopIndirect(t *testing.T) {
	g := newFakeGuest(t, []uint64{1 << 20}, 4)
	tbl := uint64(0x4000)
	copy(g.b(0x8000, 3), "abc")
	g.setDesc(tbl, 0, 0x8000, 3, descFNext, 1)
	g.setDesc(tbl, 1, 0x9000, 10, descFWrite|descFNext, 2)
	g.setDesc(tbl, 2, 0xa000, 20, descFWrite, 0)
	g.setDesc(g.desc, 2, tbl, 48, descFIndirect, 0)
	g.publish(2)
	c, err := g.queue(t, FeatureRingIndirectDesc).Pop()
	if err != nil {
		t.Fatal(err)
	}
	if c.Head != 2 || string(c.Readable[0]) != "abc" || len(c.Writable) != 2 || c.WritableLen() != 30 {
		t.Fatalf("chain = %+v", c)
	}

	// Without the feature negotiated the same ring is refused.
	g2 := newFakeGuest(t, []uint64{1 << 20}, 4)
	g2.setDesc(g2.desc, 0, tbl, 48, descFIndirect, 0)
	g2.publish(0)
	if _, err := g2.queue(t, 0).Pop(); !errors.Is(err, ErrBadChain) {
		t.Fatalf("indirect without feature: err = %v", err)
	}
}

func TestPopRejectsMalformedChains(t *testing.T) {
	cases := []struct {
		name  string
		setup func(g *fakeGuest)
	}{
		{"head out of range", func(g *fakeGuest) { g.publish(9) }},
		{"loop", func(g *fakeGuest) {
			g.setDesc(g.desc, 0, 0x8000, 1, descFNext, 1)
			g.setDesc(g.desc, 1, 0x8000, 1, descFNext, 0)
			g.publish(0)
		}},
		{"next out of range", func(g *fakeGuest) {
			g.setDesc(g.desc, 0, 0x8000, 1, descFNext, 200)
			g.publish(0)
		}},
		{"readable after writable", func(g *fakeGuest) {
			g.setDesc(g.desc, 0, 0x8000, 1, descFWrite|descFNext, 1)
			g.setDesc(g.desc, 1, 0x8000, 1, 0, 0)
			g.publish(0)
		}},
		{"buffer outside memory", func(g *fakeGuest) {
			g.setDesc(g.desc, 0, 1<<40, 16, 0, 0)
			g.publish(0)
		}},
		{"buffer wraps address space", func(g *fakeGuest) {
			g.setDesc(g.desc, 0, ^uint64(0)-3, 16, 0, 0)
			g.publish(0)
		}},
		{"indirect with next", func(g *fakeGuest) {
			g.setDesc(g.desc, 0, 0x4000, 16, descFIndirect|descFNext, 1)
			g.publish(0)
		}},
		{"nested indirect", func(g *fakeGuest) {
			g.setDesc(0x4000, 0, 0x5000, 16, descFIndirect, 0)
			g.setDesc(g.desc, 0, 0x4000, 16, descFIndirect, 0)
			g.publish(0)
		}},
		{"indirect table size", func(g *fakeGuest) {
			g.setDesc(g.desc, 0, 0x4000, 15, descFIndirect, 0)
			g.publish(0)
		}},
		{"indirect loop", func(g *fakeGuest) {
			g.setDesc(0x4000, 0, 0x8000, 1, descFNext, 1)
			g.setDesc(0x4000, 1, 0x8000, 1, descFNext, 0)
			g.setDesc(g.desc, 0, 0x4000, 32, descFIndirect, 0)
			g.publish(0)
		}},
		{"avail idx runs ahead", func(g *fakeGuest) {
			binary.LittleEndian.PutUint16(g.b(g.avail+2, 2), 100)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGuest(t, []uint64{1 << 20}, 8)
			tc.setup(g)
			q := g.queue(t, FeatureRingIndirectDesc)
			c, err := q.Pop()
			if !errors.Is(err, ErrBadChain) {
				t.Fatalf("Pop = %v, %v; want ErrBadChain", c, err)
			}
			// The queue stays broken rather than guessing.
			if _, err := q.Pop(); !errors.Is(err, ErrBadChain) {
				t.Fatalf("second Pop err = %v", err)
			}
		})
	}
}

func TestEventIdxNotification(t *testing.T) {
	g := newFakeGuest(t, []uint64{1 << 20}, 8)
	q := g.queue(t, FeatureRingEventIdx)
	usedEvent := g.b(g.avail+4+2*8, 2)
	for i := uint16(0); i < 4; i++ {
		g.setDesc(g.desc, i, 0x8000, 1, descFWrite, 0)
		g.publish(i)
	}
	// The driver wants an interrupt once used.idx passes 2 (3 entries).
	binary.LittleEndian.PutUint16(usedEvent, 2)
	var want []bool = []bool{true /*first: never signalled*/, false, true, false}
	for i, w := range want {
		c, err := q.Pop()
		if err != nil || c == nil {
			t.Fatal(c, err)
		}
		q.Push(c, 1)
		q.mu.Lock()
		got := q.needNotifyLocked()
		q.mu.Unlock()
		if got != w {
			t.Errorf("push %d: notify = %v, want %v", i, got, w)
		}
	}
	// Empty ring: Pop publishes avail_event = last_avail so the driver
	// kicks for the next entry.
	if c, err := q.Pop(); c != nil || err != nil {
		t.Fatal(c, err)
	}
	if got := binary.LittleEndian.Uint16(g.b(g.used+4+8*8, 2)); got != 4 {
		t.Errorf("avail_event = %d, want 4", got)
	}
}

func TestNoInterruptFlag(t *testing.T) {
	g := newFakeGuest(t, []uint64{1 << 20}, 8)
	q := g.queue(t, 0)
	binary.LittleEndian.PutUint16(g.b(g.avail, 2), availFNoInterrupt)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.needNotifyLocked() {
		t.Error("notify despite VRING_AVAIL_F_NO_INTERRUPT")
	}
	binary.LittleEndian.PutUint16(g.b(g.avail, 2), 0)
	if !q.needNotifyLocked() {
		t.Error("no notify without VRING_AVAIL_F_NO_INTERRUPT")
	}
}

func TestNeedEvent(t *testing.T) {
	for _, tc := range []struct {
		event, newIdx, old uint16
		want               bool
	}{
		{0, 1, 0, true},
		{1, 1, 0, false},
		{1, 2, 0, true},
		{5, 3, 2, false},
		{65535, 0, 65535, true}, // wrap-around
		{10, 12, 11, false},     // already signalled past the event
	} {
		if got := needEvent(tc.event, tc.newIdx, tc.old); got != tc.want {
			t.Errorf("needEvent(%d, %d, %d) = %v, want %v", tc.event, tc.newIdx, tc.old, got, tc.want)
		}
	}
}

func TestNewQueueRejectsBadRings(t *testing.T) {
	g := newFakeGuest(t, []uint64{64 << 10}, 8)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	good := vringAddr{Desc: g.desc + fakeUserOff, Avail: g.avail + fakeUserOff, Used: g.used + fakeUserOff}
	for name, cfg := range map[string]queueConfig{
		"size not power of two":           {size: 6, addr: good},
		"desc outside memory":             {size: 8, addr: vringAddr{Desc: 1 << 40, Avail: good.Avail, Used: good.Used}},
		"used misaligned":                 {size: 8, addr: vringAddr{Desc: good.Desc, Avail: good.Avail, Used: good.Used + 2}},
		"guest address, not user address": {size: 8, addr: vringAddr{Desc: g.desc + 64<<10, Avail: g.avail, Used: g.used}},
	} {
		cfg.callFD = -1
		if _, err := newQueue(g.mem, cfg, log); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: err = %v, want ErrProtocol", name, err)
		}
	}
}

// FuzzPop feeds arbitrary ring contents to Pop: it must never panic, never
// hand out memory outside the fake guest, and either return chains or
// ErrBadChain.
func FuzzPop(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0}, []byte{0x00, 0x80, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 2, 0, 1, 0, 0, 0}, []byte{0x00, 0x40, 0, 0, 0, 0, 0, 0, 32, 0, 0, 0, 4, 0, 0, 0})
	f.Fuzz(func(t *testing.T, avail, desc []byte) {
		g := newFakeGuest(t, []uint64{32 << 10, 32 << 10}, 8)
		copy(g.b(g.avail, 6+2*8), avail)
		copy(g.b(g.desc, 16*8), desc)
		// Also let the fuzzer shape a would-be indirect table at 0x4000.
		copy(g.b(0x4000, 16*8), desc)
		q := g.queue(t, FeatureRingIndirectDesc|FeatureRingEventIdx)
		for i := 0; i < 20; i++ {
			c, err := q.Pop()
			if err != nil {
				if !errors.Is(err, ErrBadChain) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if c == nil {
				return
			}
			if c.ReadableLen()+c.WritableLen() > 8*16*(1<<16) {
				t.Fatalf("chain too long")
			}
			q.Push(c, 0)
		}
	})
}

// A guest describes a large buffer one page per descriptor; pages that are
// adjacent in guest memory come out as one slice, so the device can fill
// it in one copy. Gaps, region boundaries and the readable/writable split
// still separate slices, and the bytes in order are the driver's.
func TestPopMergesAdjacentBuffers(t *testing.T) {
	g := newFakeGuest(t, []uint64{64 << 10, 64 << 10}, 16)
	copy(g.b(0x8000, 8), "helloabc")
	bufs := []struct {
		addr  uint64
		n     uint32
		flags uint16
	}{
		{0x8000, 5, 0}, {0x8005, 3, 0}, // readable, adjacent
		{0x8008, 16, descFWrite},                               // writable, adjacent to the readable ones
		{0xa000, 4096, descFWrite}, {0xb000, 4096, descFWrite}, // adjacent pages
		{0xd000, 10, descFWrite},                            // after a gap
		{0xfff0, 16, descFWrite}, {0x10000, 16, descFWrite}, // adjacent guest addresses, two regions
	}
	for i, b := range bufs {
		flags := b.flags
		if i+1 < len(bufs) {
			flags |= descFNext
		}
		g.setDesc(g.desc, uint16(i), b.addr, b.n, flags, uint16(i+1))
	}
	g.publish(0)
	c, err := g.queue(t, 0).Pop()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Readable) != 1 || string(c.Readable[0]) != "helloabc" {
		t.Errorf("readable = %q, want one slice %q", c.Readable, "helloabc")
	}
	var lens []int
	for _, w := range c.Writable {
		lens = append(lens, len(w))
	}
	if want := []int{16, 8192, 10, 16, 16}; !slices.Equal(lens, want) {
		t.Fatalf("writable lengths = %v, want %v", lens, want)
	}
	c.Writable[1][4096] = 'x'
	if g.b(0xb000, 1)[0] != 'x' {
		t.Error("merged slice does not alias the second page")
	}
}

// Pages the device is about to write are mapped ahead (pageTable), once:
// the writes then take no page faults, and the guest's bytes are intact.
func TestPopPrefaultsWritablePages(t *testing.T) {
	const size = 1 << 20
	fd, err := unix.MemfdCreate("guest", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, size); err != nil {
		t.Fatal(err)
	}
	// The VMM's mapping: the guest has written every page.
	vmm, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(vmm)
	for i := range vmm {
		vmm[i] = byte(i / 4096)
	}
	dup, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	r, err := mapRegion(dup, MemoryRegion{GuestAddr: 0, Size: size, UserAddr: fakeUserOff})
	if err != nil {
		t.Fatal(err)
	}
	m, err := (&memory{}).with(r)
	if err != nil {
		t.Fatal(err)
	}
	defer m.unmapAll()
	pt := m.regions[0].mapped

	// Ring in the first pages, a 64 KiB buffer as 16 page descriptors.
	g := &fakeGuest{mem: m, size: 32, desc: 0, avail: 16 * 32}
	g.used = (g.avail + 6 + 2*32 + 3) &^ 3
	const buf, pages = 0x40000, 16
	for i := uint16(0); i < pages; i++ {
		flags := uint16(descFWrite)
		if i+1 < pages {
			flags |= descFNext
		}
		g.setDesc(g.desc, i, buf+4096*uint64(i), 4096, flags, i+1)
	}
	g.publish(0)
	c, err := g.queue(t, 0).Pop()
	if err != nil {
		t.Fatal(err)
	}
	if pt.off.Load() {
		t.Skip("this kernel cannot populate the mapping (MADV_POPULATE_READ)")
	}
	for p := uint64(buf / 4096); p < buf/4096+pages; p++ {
		if !pt.has(p) {
			t.Fatalf("page %d not recorded as mapped", p)
		}
	}
	if pt.has(buf/4096 + pages) {
		t.Error("page after the buffer recorded as mapped")
	}
	if len(c.Writable) != 1 || len(c.Writable[0]) != pages*4096 {
		t.Fatalf("writable = %d slices", len(c.Writable))
	}
	// Write one byte a page, without reading first (a read fault would
	// map the page as well), then look through the VMM's mapping.
	w := c.Writable[0]
	faults := threadFaults(func() {
		for i := 0; i < len(w); i += 4096 {
			w[i+1] = 0xee
		}
	})
	// (The race detector's shadow memory takes faults of its own.)
	if faults > pages/4 && !raceEnabled {
		t.Errorf("%d page faults writing %d populated pages", faults, pages)
	}
	for i := buf; i < buf+pages*4096; i += 4096 {
		if vmm[i] != byte(i/4096) || vmm[i+1] != 0xee {
			t.Fatalf("page at %#x starts %d %d, want the guest's %d and the device's 0xee", i, vmm[i], vmm[i+1], byte(i/4096))
		}
	}
}

// threadFaults counts the minor page faults f takes on its thread.
func threadFaults(f func()) int64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var before, after unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &before)
	f()
	unix.Getrusage(unix.RUSAGE_THREAD, &after)
	return after.Minflt - before.Minflt
}
