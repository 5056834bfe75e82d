package exchange

import (
	"sync"
	"time"
)

// seenSet remembers request ids until they can no longer pass the
// freshness check. It is bounded, in all and per principal (the IdP
// identity whose token verified): when full it refuses to record (and so
// the request) instead of forgetting an unexpired id, which would reopen
// a replay window, and one identity's requests can take only its share,
// so it cannot stop everyone else's exchanges. Safe for concurrent use.
type seenSet struct {
	mu     sync.Mutex
	clock  func() time.Time
	maxAge time.Duration // a request older than this at add is stale
	window time.Duration // how long an id is kept: maxAge and the skew ahead
	limit  int
	share  int // per principal
	last   time.Time
	seen   map[string]time.Time
	per    map[string]int
	order  []seenEntry // insertion order; expiries never decrease (last is monotone)
}

type seenEntry struct {
	key, principal string
	exp            time.Time
}

// seenResult is what add did.
type seenResult int

const (
	seenAdded     seenResult = iota
	seenReplay               // the id is recorded and unexpired
	seenStale                // the request is no longer fresh
	seenFull                 // the set is full
	seenOverShare            // the principal holds its share
)

// shareOf is a principal's share of a set of limit ids: a 64th, and at
// least 16.
func shareOf(limit int) int { return max(16, limit/64) }

func newSeenSet(clock func() time.Time, maxAge, window time.Duration, limit int) *seenSet {
	return &seenSet{clock: clock, maxAge: maxAge, window: window, limit: limit, share: shareOf(limit),
		seen: make(map[string]time.Time), per: make(map[string]int)}
}

// used reports whether key is recorded and unexpired, recording
// nothing: a request sent again is refused before its token is verified
// (add, which records, decides between two sent at once).
func (s *seenSet) used(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	if now.Before(s.last) {
		now = s.last
	}
	exp, ok := s.seen[key]
	return ok && now.Before(exp)
}

// add records key, a request issued at at, for principal. The time is
// read under the set's lock and never goes back (the latest reading
// wins), and freshness is judged at that time: an id can be forgotten
// only once no request carrying it can still be fresh, whichever request
// read the clock last.
func (s *seenSet) add(key, principal string, at time.Time) seenResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	if now.Before(s.last) {
		now = s.last
	}
	s.last = now
	for len(s.order) > 0 && !now.Before(s.order[0].exp) {
		e := s.order[0]
		s.order = s.order[1:]
		if exp, ok := s.seen[e.key]; ok && exp.Equal(e.exp) {
			delete(s.seen, e.key)
			if s.per[e.principal]--; s.per[e.principal] <= 0 {
				delete(s.per, e.principal)
			}
		}
	}
	if len(s.order) == 0 {
		s.order = nil // let the backing array go
	}
	if now.Sub(at) >= s.maxAge {
		return seenStale
	}
	if exp, ok := s.seen[key]; ok && now.Before(exp) {
		return seenReplay
	}
	if len(s.seen) >= s.limit {
		return seenFull
	}
	if s.per[principal] >= s.share {
		return seenOverShare
	}
	exp := now.Add(s.window)
	s.seen[key] = exp
	s.per[principal]++
	s.order = append(s.order, seenEntry{key, principal, exp})
	return seenAdded
}
