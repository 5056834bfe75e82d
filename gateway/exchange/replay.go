package exchange

import (
	"sync"
	"time"
)

// seenSet remembers request ids until they can no longer pass the
// freshness check. It is bounded: when full of unexpired ids it refuses
// to record (and so the request) instead of forgetting one, which would
// reopen a replay window. Safe for concurrent use.
type seenSet struct {
	mu     sync.Mutex
	window time.Duration
	limit  int
	seen   map[string]time.Time
	order  []seenEntry // insertion order; expiries are non-decreasing with a monotone clock
}

type seenEntry struct {
	key string
	exp time.Time
}

func newSeenSet(window time.Duration, limit int) *seenSet {
	return &seenSet{window: window, limit: limit, seen: make(map[string]time.Time)}
}

// add records key at now. It returns (false, false) when key is already
// recorded and unexpired, and (false, true) when the set is full.
func (s *seenSet) add(key string, now time.Time) (added, full bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.order) > 0 && !now.Before(s.order[0].exp) {
		e := s.order[0]
		s.order = s.order[1:]
		if exp, ok := s.seen[e.key]; ok && exp.Equal(e.exp) {
			delete(s.seen, e.key)
		}
	}
	if len(s.order) == 0 {
		s.order = nil // let the backing array go
	}
	if exp, ok := s.seen[key]; ok && now.Before(exp) {
		return false, false
	}
	if len(s.seen) >= s.limit {
		return false, true
	}
	exp := now.Add(s.window)
	s.seen[key] = exp
	s.order = append(s.order, seenEntry{key, exp})
	return true, false
}
