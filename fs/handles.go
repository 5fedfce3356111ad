package fs

import "sync"

// handles numbers the open files (or directory listings) the kernel holds.
// Numbers start at 1 and are not reused while the filesystem lives, so a
// stale number can never reach another file.
type handles[T any] struct {
	mu   sync.Mutex
	next uint64
	m    map[uint64]T // guarded by mu
}

func (h *handles[T]) add(v T) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = make(map[uint64]T)
	}
	h.next++
	h.m[h.next] = v
	return h.next
}

func (h *handles[T]) get(fh uint64) (T, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.m[fh]
	return v, ok
}

func (h *handles[T]) remove(fh uint64) (T, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.m[fh]
	delete(h.m, fh)
	return v, ok
}

// drain removes and returns every handle.
func (h *handles[T]) drain() []T {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]T, 0, len(h.m))
	for _, v := range h.m {
		out = append(out, v)
	}
	h.m = nil
	return out
}

func (h *handles[T]) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m)
}
