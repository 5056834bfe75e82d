// Package budget owns agentgw's rate budgets: token buckets per tenant,
// per (tenant, agent) and per (tenant, agent, target). One Take consumes a
// token from every limited level or from none, and reports what remains
// so policy can see it (context.budget in Cedar).
//
// It knows nothing of NATS, envelopes, the catalog or policy: the caller
// passes names, the current time and an optional per-target limit. It
// never reads a clock; time only moves when the caller says so, and a
// time earlier than a bucket's last update adds no tokens.
//
// # Memory
//
// A bucket exists only while it is below its burst. A bucket that has
// refilled to its burst is indistinguishable from a fresh one, so it is
// dropped: a sweep (at most once per SweepEvery of caller time, or sooner
// when the number of buckets has doubled since the last sweep) removes
// every bucket that would be full at the sweep's time. Eviction therefore
// never changes a decision. Memory is bounded by the number of distinct
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
