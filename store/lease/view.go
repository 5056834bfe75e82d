package lease

import (
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// view is the manager's picture of the bucket, fed by a KV watcher. It is
// advice only: it decides which keys are worth a Create and how many
// members share the partitions. Ownership itself is decided by the
// server's revision checks, never by the view.
type view struct {
	ttl time.Duration
	// seen maps a live key to when (local monotonic clock) its last write
	// was observed. Deletes, purges and the server's expiry markers remove
	// it; an entry not refreshed within ttl is treated as gone too, in
	// case a marker was missed.
	seen map[string]time.Time
}

func newView(ttl time.Duration) *view {
	return &view{ttl: ttl, seen: map[string]time.Time{}}
}

func (v *view) apply(e jetstream.KeyValueEntry, now time.Time) {
	k := e.Key()
	if e.Operation() == jetstream.KeyValuePut {
		v.seen[k] = now
	} else { // delete, purge, the server's expiry marker
		delete(v.seen, k)
	}
}

// taken marks k as live now (a Create just failed on it).
func (v *view) taken(k string, now time.Time) { v.seen[k] = now }

func (v *view) live(k string, now time.Time) bool {
	t, ok := v.seen[k]
	return ok && now.Sub(t) < v.ttl
}

// members returns the live instances, self included, sorted.
func (v *view) members(self string, now time.Time) []string {
	out := []string{self}
	for k := range v.seen {
		if id, ok := parseMemberKey(k); ok && id != self && v.live(k, now) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// quota is how many partitions self may hold: partitions split as evenly
// as possible over the sorted members, the first partitions%n members
// taking one more. Every member computes the same split from the same
// membership, so the quotas sum to the partition count and no two
// members differ by more than one.
func quota(partitions int, members []string, self string) int {
	n := len(members)
	q := partitions / n
	if i, _ := slices.BinarySearch(members, self); i < partitions%n {
		q++
	}
	return q
}
