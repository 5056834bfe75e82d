// Package budget owns agentgw's rate budgets: token buckets per tenant,
// per (tenant, agent) and per (tenant, agent, target). One Take consumes a
// token from every limited level or from none, and reports what remains
// so policy can see it (context.budget in Cedar).
//
// It knows nothing of NATS, envelopes, the catalog or policy: the caller
// passes names, the current time and an optional per-target limit. It
// never reads a clock; time only moves when the caller says so, and a
// time earlier than a bucket's last update adds no tokens. A bucket
// refills only for time past its last update, so a clock that steps back
// freezes refills for the length of the step: nothing comes back until
// the clock passes the last update again.
//
// # Limits that change
//
// The per-target limit may differ from one Take to the next (a catalog
// reload). A bucket refills up to the Take's time at the rate it was last
// used with, then takes the new limit: one full by then is a fresh bucket
// at the new burst, and one below it keeps its tokens, clamped to the new
// burst if that is smaller.
//
// # Refunds
//
// Refund gives back the token of a granted Take whose message was never
// decided: the caller decided it, then had to hand it back for
// redelivery (a failed ledger commit, say), and the redelivery takes
// again. Each level limited under the Take's limits gets one token back,
// capped at its burst; a bucket the sweep already dropped was full and
// gets nothing. The agentgw gateway refunds every message of a batch it
// hands back undecided. A ledger commit that reports failure may still
// have reached the disk; the redelivery then finds the recorded outcome,
// re-emits it and takes no token, so the refund over-grants by at most
// one token per message of that batch at each level. Scaled out, so does
// a batch handed back after its journal append failed part way, or after
// the append succeeded and the partition's lease was found lost: what
// reached the journal is re-emitted by the next owner without a Take.
//
// # Memory
//
// A bucket exists only while it is below its burst. A bucket that has
// refilled to its burst is indistinguishable from a fresh one, so it is
// dropped: a sweep (at most once per SweepEvery of caller time, or sooner
// when the number of buckets has doubled since the last sweep) removes
// every bucket that would be full at the sweep's time. Eviction therefore
// never changes a decision while the caller's time runs forward, across
// a change of limits too (a full bucket is a fresh one at the new
// burst). After a step back it can: a bucket that a sweep at the later
// time dropped comes back full, where the kept bucket would hold only
// what it had refilled by the earlier time. Memory is bounded by the number of distinct
// (tenant, agent, target) triples active within about Burst/Rate seconds;
// those names come from verified credentials and the catalog, not from
// message text. Unlimited levels (Rate 0) keep no bucket at all.
//
// # Restarts
//
// Budgets are in memory only and reset on restart: a restarted gateway
// starts every bucket full, so an agent can spend at most one extra burst
// per restart. That is the honest trade: persisting buckets would put a
// write on the hot path of every message for little gain, and with
// ingress partitioned by agent each instance owns the buckets of its own
// agents, so a tenant-level budget is per instance, not global.
package budget
