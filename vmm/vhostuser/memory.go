package vhostuser

import (
	"fmt"
	"sort"

	"golang.org/x/sys/unix"
)

// region is one mapped region of guest memory. data covers exactly
// [GuestAddr, GuestAddr+Size).
type region struct {
	MemoryRegion
	data   []byte
	unmap  func() error // nil for memory the backend did not map (fakes)
	mapped *pageTable   // nil for memory the backend did not map (fakes)
}

// memory is an immutable table of mapped regions sorted by guest address.
// A session swaps whole tables, so a Queue holding a *memory never sees a
// region disappear under it; regions are unmapped only once no queue runs
// (see session.memChange).
type memory struct {
	regions []region
}

// mapRegion mmaps fd for r. The fd is closed whether or not mapping works:
// the mapping keeps the memory alive.
func mapRegion(fd int, r MemoryRegion) (region, error) {
	defer unix.Close(fd)
	// Map from offset 0 (mmap_offset need not be page-aligned) and slice.
	length := r.MmapOffset + r.Size
	if length > 1<<46 {
		return region{}, protoErr("memory region of %#x bytes", length)
	}
	b, err := unix.Mmap(fd, 0, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_NORESERVE)
	if err != nil {
		return region{}, fmt.Errorf("mmap guest memory %#x+%#x: %w", r.GuestAddr, r.Size, err)
	}
	return region{
		MemoryRegion: r,
		data:         b[r.MmapOffset:length:length],
		unmap:        func() error { return unix.Munmap(b) },
		mapped:       newPageTable(b),
	}, nil
}

// with returns a new table with r added. Overlapping guest ranges are
// rejected.
func (m *memory) with(r region) (*memory, error) {
	n := &memory{regions: make([]region, 0, len(m.regions)+1)}
	for _, o := range m.regions {
		if r.GuestAddr < o.GuestAddr+o.Size && o.GuestAddr < r.GuestAddr+r.Size {
			return nil, protoErr("memory region %#x+%#x overlaps %#x+%#x", r.GuestAddr, r.Size, o.GuestAddr, o.Size)
		}
		n.regions = append(n.regions, o)
	}
	n.regions = append(n.regions, r)
	sort.Slice(n.regions, func(i, j int) bool { return n.regions[i].GuestAddr < n.regions[j].GuestAddr })
	return n, nil
}

// without returns a new table without the region matching r's guest
// address, user address and size, and that region.
func (m *memory) without(r MemoryRegion) (*memory, region, bool) {
	n := &memory{}
	var gone region
	found := false
	for _, o := range m.regions {
		if !found && o.GuestAddr == r.GuestAddr && o.Size == r.Size && o.UserAddr == r.UserAddr {
			gone, found = o, true
			continue
		}
		n.regions = append(n.regions, o)
	}
	return n, gone, found
}

func (m *memory) unmapAll() {
	for _, r := range m.regions {
		if r.unmap != nil {
			_ = r.unmap()
		}
	}
}

// prefault makes sure r.data[start:end) is in our page tables before the
// device writes there (see pageTable).
func (r *region) prefault(start, end uint64) {
	if r.mapped != nil && start < end {
		r.mapped.populate(r.MmapOffset+start, r.MmapOffset+end)
	}
}

// find returns the region holding guest address ga.
func (m *memory) find(ga uint64) *region {
	rs := m.regions
	i := sort.Search(len(rs), func(i int) bool { return rs[i].GuestAddr+rs[i].Size > ga })
	if i < len(rs) && rs[i].GuestAddr <= ga {
		return &rs[i]
	}
	return nil
}

// slice returns guest memory [ga, ga+n) if it lies within one region.
func (m *memory) slice(ga uint64, n uint32) ([]byte, bool) {
	r := m.find(ga)
	if r == nil {
		return nil, false
	}
	off := ga - r.GuestAddr
	if uint64(n) > r.Size-off {
		return nil, false
	}
	return r.data[off : off+uint64(n) : off+uint64(n)], true
}

// iovBuilder collects the buffers of one side (readable or writable) of a
// descriptor chain as slices of mapped memory. A buffer that continues the
// previous one in the same region is merged into it: a Linux guest
// describes a large buffer as one descriptor per page, and those pages
// are usually adjacent, so a 128 KiB FUSE read arrives as 32 descriptors
// but is one slice the device can fill in a single copy (go-fuse then
// hands it to the filesystem as the read buffer, with no bounce buffer).
// A buffer spanning two regions is split at the boundary.
type iovBuilder struct {
	iov        [][]byte
	r          *region // region of the element being extended; nil if none
	start, end uint64  // that element is r.data[start:end]
	prefault   bool    // map the pages into our page tables (writable side)
}

// add appends guest memory [ga, ga+n), or reports false if any of it is
// outside the table.
func (b *iovBuilder) add(m *memory, ga uint64, n uint32) bool {
	left := uint64(n)
	if ga+left < ga {
		return false
	}
	for left > 0 {
		r := m.find(ga)
		if r == nil {
			return false
		}
		off := ga - r.GuestAddr
		k := min(left, r.Size-off)
		if r == b.r && off == b.end {
			b.end += k
		} else {
			b.flush()
			b.r, b.start, b.end = r, off, off+k
		}
		ga += k
		left -= k
	}
	return true
}

// empty reports whether nothing was added.
func (b *iovBuilder) empty() bool { return b.r == nil && len(b.iov) == 0 }

// flush closes the element being extended.
func (b *iovBuilder) flush() {
	if b.r == nil {
		return
	}
	if b.prefault {
		b.r.prefault(b.start, b.end)
	}
	b.iov = append(b.iov, b.r.data[b.start:b.end:b.end])
	b.r = nil
}

// done returns the collected buffers.
func (b *iovBuilder) done() [][]byte {
	b.flush()
	return b.iov
}

// userSlice translates a front-end virtual address range, as found in
// SET_VRING_ADDR, to mapped memory.
func (m *memory) userSlice(ua, n uint64) ([]byte, bool) {
	for i := range m.regions {
		r := &m.regions[i]
		if ua >= r.UserAddr && ua-r.UserAddr < r.Size {
			off := ua - r.UserAddr
			if n > r.Size-off {
				return nil, false
			}
			return r.data[off : off+n : off+n], true
		}
	}
	return nil, false
}
