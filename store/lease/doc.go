// Package lease decides which gateway instance processes which ingress
// partition, through NATS itself: one JetStream KV key per partition,
// taken with Create (fails if the key exists), renewed with a
// revision-checked Update, released with a revision-checked Delete, and
// freed by the bucket's max age (the TTL) when its holder stops writing.
// It is not a consensus protocol of its own: the only arbiter is the
// stream's per-subject sequence check, replicated by JetStream's Raft
// group. Instances find each other through member keys (m.<instance>) in
// the same bucket and split the partitions evenly (no two differ by more
// than one; none holds more than ceil(partitions/instances)).
//
// It knows nothing of what a partition is for: the gateway starts and
// stops its work in the onAcquire and onLose callbacks of Manager.Run.
//
// # Why an instance stops before another starts
//
// Let the holder H send its last successful write (Create or Update) at
// local time s, read on the monotonic clock before the request leaves. The
// server stores it at real time w ≥ s and stamps it with its own clock;
// the key can only vanish by H's own Delete (which H sends only after
// onLose has returned) or by expiry, which the server applies TTL after
// the stamp. Another instance's Create succeeds only once the key has
// vanished, so no successor starts before real time w + TTL - ε, where ε
// bounds how far the expiring server's clock runs ahead of the one that
// stamped the write (NTP-synchronised cluster nodes: milliseconds), plus
// its drift over TTL.
//
// H gives the lease up at s + TTL - Margin on its own monotonic clock,
// whatever NATS does: every wait and every request of the holder is bounded
// by that deadline. In real time that is at most s + (TTL - Margin)(1+ρ),
// ρ being the drift rate of H's clock. H then calls onLose, which returns
// once the partition's work has stopped, d_stop later. H has stopped
// before any successor starts if
//
//	Margin > ρ·TTL + ε + d_stop + pause
//
// where pause is the longest time H's process may be stalled (GC, swap,
// SIGSTOP, a frozen VM) between checking its lease and acting on it. With
// the defaults (TTL 15 s, Margin 3 s), ρ = 10⁻⁴ costs 1.5 ms and a
// 100 ms ε leaves about 2.9 s for stopping and stalls. A renewal sent
// before the deadline that lands after it only makes the key live longer:
// H has stopped anyway, and the successor waits.
//
// The assumptions are a bounded clock drift rate on every host (not
// synchronised clocks: the holder only measures an interval), synchronised
// NATS server clocks within ε, a monotonic clock that runs while the
// process is stalled (Linux CLOCK_MONOTONIC does not count a suspended
// machine), and no stall longer than the margin. A stall beyond it is
// possible in practice, so downstream writes must not rely on timing
// alone: onAcquire hands out the lease's epoch (the KV revision of its
// Create; a later owner of a partition always has a larger one), and the
// partition journal (package journal) refuses the appends of a writer
// whose epoch has been superseded. The gateway journals a batch's
// outcomes before publishing them, so a stalled former owner either fails
// its append and publishes nothing, or publishes exactly the bytes the
// new owner re-emits, under the same Nats-Msg-Id (deduplicated by the
// output streams within their duplicate window).
//
// # Liveness
//
// A renewal is tried every Renew (TTL/3 by default), and after a failure
// every Renew/4 (at most every second), until the deadline: a NATS stream leader election longer
// than TTL - Margin - Renew makes holders give their leases up (safe, but
// every partition pauses until the TTL has passed). After a crash its
// partitions are taken over between TTL - Renew and TTL after the crash
// (plus one watcher event or one Renew tick); a graceful shutdown or a
// shed lease is handed over within one watcher event, since the key is
// deleted rather than left to expire.
//
// # One instance holding every partition
//
// A gateway run as one instance decides every partition on a ledger no
// scaled-out instance reads. It holds every partition's key while it
// runs (Sole: ClaimAll, Keep, Release), under the same timing rule, so
// that the members of a scaled-out deployment cannot decide beside it:
// it takes all keys or none, writes no member key, refuses to start
// while a member is alive or another instance holds a key (ErrHeld),
// and closes Lost at its local deadline unless a renewal of every key
// landed, or at once when a renewal finds a key another instance wrote.
// A key written under its own instance name it takes over, since its
// caller proves that process gone.
package lease
