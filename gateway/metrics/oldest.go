package metrics

import (
	"sync"
	"time"
)

// Oldest is, per ingress consumer, since when the oldest ingress message
// it has not acknowledged has been stored (as of the consumer's last
// look), read as an age at scrape time: agentgw_ingress_oldest_unacked_seconds,
// the greatest over the consumers. The ingress stream deletes a message
// at streams.ingress_max_age whether or not it ended; this shows how
// close the oldest waiting one is.
type Oldest struct {
	mu    sync.Mutex
	since map[string]time.Time // consumer → local instant the message was stored
}

// Set records that consumer's oldest unacknowledged message is age old
// now; age < 0: it has none.
func (o *Oldest) Set(consumer string, age time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if age < 0 {
		delete(o.since, consumer)
		return
	}
	if o.since == nil {
		o.since = map[string]time.Time{}
	}
	o.since[consumer] = time.Now().Add(-age)
}

// Forget drops consumer (its partition is no longer decided here).
func (o *Oldest) Forget(consumer string) { o.Set(consumer, -1) }

// Age is the age of the oldest unacknowledged message over the
// consumers, 0 for none.
func (o *Oldest) Age() time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	var oldest time.Duration
	for _, s := range o.since {
		oldest = max(oldest, time.Since(s))
	}
	return oldest
}
