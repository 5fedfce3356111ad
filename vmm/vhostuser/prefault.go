package vhostuser

import (
	"errors"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Guest memory is a shared mapping (QEMU's memfd), and a guest fills its
// page cache from pages this process has never touched: the first write
// to each page is a page fault here. A guest reading a 256 MiB file
// through virtio-fs made the backend fault 65,536 times, one fault per
// page, about half of the backend's time per 128 KiB READ.
//
// pageTable remembers which pages of a mapping are in our page tables and
// maps the others with one madvise(MADV_POPULATE_READ) per buffer before
// the device writes into it. A populating read fault maps the present
// neighbours as well (fault-around, 16 pages), so a 128 KiB buffer costs
// two faults taken inside one system call instead of 32 taken one by one;
// MADV_POPULATE_WRITE has no fault-around and measured half as fast. A
// shared mapping of shmem (memfd, /dev/shm) needs no write notification,
// so the pages come in writable and the copy that follows does not fault.
// On other mappings the write may still fault once: populating is only a
// hint and never changes what the device reads or writes.
//
// The bits (32 KiB per GiB of guest memory) are never cleared. Should the
// VMM take pages away (a balloon punching holes), the device's writes
// fault them back in as before.
type pageTable struct {
	mem  []byte          // the whole mapping, page-aligned at mem[0]
	bits []atomic.Uint64 // bit i set: page i is in our page tables
	off  atomic.Bool     // the kernel cannot populate this mapping
}

var pageSize = uint64(os.Getpagesize())

func newPageTable(mem []byte) *pageTable {
	pages := (uint64(len(mem)) + pageSize - 1) / pageSize
	return &pageTable{mem: mem, bits: make([]atomic.Uint64, (pages+63)/64)}
}

func (t *pageTable) has(p uint64) bool { return t.bits[p/64].Load()&(1<<(p%64)) != 0 }

// populate maps the pages holding mem[start:end) that are not mapped yet.
// It is safe for concurrent use; two callers may populate the same page,
// which is harmless.
func (t *pageTable) populate(start, end uint64) {
	if t.off.Load() {
		return
	}
	first, last := start/pageSize, (end+pageSize-1)/pageSize
	for p := first; p < last; {
		if t.has(p) {
			p++
			continue
		}
		q := p + 1
		for q < last && !t.has(q) {
			q++
		}
		t.mapPages(p, q)
		p = q
	}
}

// mapPages populates pages [p, q) and records them.
func (t *pageTable) mapPages(p, q uint64) {
	err := unix.Madvise(t.mem[p*pageSize:min(q*pageSize, uint64(len(t.mem)))], unix.MADV_POPULATE_READ)
	if errors.Is(err, unix.EINVAL) {
		// Linux before 5.14, or a mapping it cannot populate in small
		// pages (hugetlbfs, where faults are rare anyway).
		t.off.Store(true)
		return
	}
	if err != nil {
		return // the writes will fault, as without populating
	}
	for ; p < q; p++ {
		t.bits[p/64].Or(1 << (p % 64))
	}
}
