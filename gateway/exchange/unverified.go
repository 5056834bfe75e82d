package exchange

import (
	"sync"
	"time"
)

// UnverifiedEventsPerSecond bounds the audit events, and log lines, of
// refusals made before a request's IdP token verified: anyone who may
// publish on the exchange subject, or reach an MCP endpoint that
// exchanges the bearer tokens it is shown, can send such requests as
// fast as the gateway answers them, and each would otherwise store an
// event in the audit stream (kept for its max_age, filling the disk the
// decisions' own events need, or, with a message limit, refusing them).
// Past the bound in one second, refusals are answered as ever and only
// counted: one warning per second names how many were left out.
const UnverifiedEventsPerSecond = 100

// unverifiedEvents admits at most UnverifiedEventsPerSecond events a
// second and counts the ones it turns away.
type unverifiedEvents struct {
	mu      sync.Mutex
	sec     int64 // the second being counted, unix
	n       int   // events admitted in it
	dropped int   // events turned away in it
}

// admit reports whether an event at now may be emitted; when a new
// second starts, it also returns how many the previous one turned away.
func (u *unverifiedEvents) admit(now time.Time) (ok bool, droppedBefore int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if s := now.Unix(); s != u.sec {
		droppedBefore = u.dropped
		u.sec, u.n, u.dropped = s, 0, 0
	}
	if u.n >= UnverifiedEventsPerSecond {
		u.dropped++
		return false, droppedBefore
	}
	u.n++
	return true, droppedBefore
}
