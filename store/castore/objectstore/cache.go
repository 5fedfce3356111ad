package objectstore

import (
	"container/list"
	"sync"

	"github.com/castor-nix/castor/store/castore"
)

// chunkCache holds verified, decompressed chunks for all readers of a
// Store, least recently used first out, within a byte budget. It also
// makes concurrent loads of one chunk share a single load (a reader and
// the read-ahead asking for the same chunk wait for one decompression).
//
// Cached slices are never modified nor recycled: a reader may keep using
// a slice after it was evicted, and the garbage collector frees it.
type chunkCache struct {
	max int64

	mu      sync.Mutex
	used    int64                          // guarded by mu: bytes of loaded entries in lru
	entries map[castore.Digest]*cacheEntry // guarded by mu: loading and loaded
	lru     list.List                      // guarded by mu: of *cacheEntry, most recent first
}

type cacheEntry struct {
	digest castore.Digest
	done   chan struct{} // closed when data/err are set
	data   []byte
	err    error
	elem   *list.Element // guarded by chunkCache.mu; nil while loading
}

func newChunkCache(maxBytes int64) *chunkCache {
	return &chunkCache{max: maxBytes, entries: make(map[castore.Digest]*cacheEntry)}
}

// peek returns chunk d if it is loaded.
func (c *chunkCache) peek(d castore.Digest) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[d]
	if !ok || e.elem == nil {
		return nil, false
	}
	c.lru.MoveToFront(e.elem)
	return e.data, true
}

// has reports whether chunk d is loaded or being loaded.
func (c *chunkCache) has(d castore.Digest) bool {
	c.mu.Lock()
	_, ok := c.entries[d]
	c.mu.Unlock()
	return ok
}

// get returns chunk d, calling load when it is neither loaded nor being
// loaded. Errors are not cached: the next get loads again.
func (c *chunkCache) get(d castore.Digest, load func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	if e, ok := c.entries[d]; ok {
		if e.elem != nil {
			c.lru.MoveToFront(e.elem)
			c.mu.Unlock()
			return e.data, nil
		}
		c.mu.Unlock()
		<-e.done
		return e.data, e.err
	}
	e := &cacheEntry{digest: d, done: make(chan struct{})}
	c.entries[d] = e
	c.mu.Unlock()

	e.data, e.err = load()

	c.mu.Lock()
	if e.err != nil || int64(len(e.data)) > c.max {
		delete(c.entries, d)
	} else {
		e.elem = c.lru.PushFront(e)
		c.used += int64(len(e.data))
		for c.used > c.max {
			old := c.lru.Back().Value.(*cacheEntry)
			c.lru.Remove(old.elem)
			old.elem = nil
			delete(c.entries, old.digest)
			c.used -= int64(len(old.data))
		}
	}
	c.mu.Unlock()
	close(e.done)
	return e.data, e.err
}
