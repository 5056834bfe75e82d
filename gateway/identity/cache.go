package identity

import "sync"

// fifoCache is a bounded map that evicts the oldest inserted key when
// full (FIFO). FIFO keeps insertion O(1) with no per-hit bookkeeping, so
// a hit is one read-locked map lookup. It is safe for concurrent use.
type fifoCache[K comparable, V any] struct {
	mu   sync.RWMutex
	m    map[K]V
	ring []K // insertion order; ring[next] is the oldest once full
	next int
}

func newFIFOCache[K comparable, V any](size int) *fifoCache[K, V] {
	return &fifoCache[K, V]{m: make(map[K]V, size), ring: make([]K, 0, size)}
}

func (c *fifoCache[K, V]) get(k K) (V, bool) {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	return v, ok
}

func (c *fifoCache[K, V]) put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; ok {
		c.m[k] = v
		return
	}
	switch {
	case cap(c.ring) == 0:
		return
	case len(c.ring) < cap(c.ring):
		c.ring = append(c.ring, k)
	default:
		delete(c.m, c.ring[c.next])
		c.ring[c.next] = k
		c.next = (c.next + 1) % len(c.ring)
	}
	c.m[k] = v
}

func (c *fifoCache[K, V]) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
