// Package store owns agentgw's durable ledger: the replay ledger (has this
// (tenant, agent, message id) been decided, and how), the idempotency
// ledger (tenant, agent, idempotency key → payload digest and decision),
// holds (records with a deadline, e.g. messages awaiting approval),
// single-use markers and per-sequence outcomes (outcome.go), all in one
// Pebble database.
//
// It knows nothing of NATS, envelopes or policy: the gateway passes
// stream sequences, ack floors, digests and decisions in, and makes every
// decision itself from what the ledger reports.
//
// # Writes
//
// A Batch stages the writes of one fetch batch; its lookups see them, so
// two copies of one message in one batch are caught. Commit writes them
// with one fsync. Only one Batch is open at a time, but Start lets the
// next one open while the fsync runs: it reads the started batch's writes
// until they are in the database, and fails if their commit fails. At
// most one commit is in flight. MarkAcked and Prune write without fsync:
// losing them is harmless.
//
// # Generations and pruning
//
// Replay and idempotency entries are keyed by generation first:
// gen = expires_at / GenWidth. A generation is one contiguous key range,
// so Prune deletes it with DeleteRange at a cost independent of how many
// entries it holds. Per-generation metadata (highest ingress sequence,
// entry count) is written in the same batch as the entries; Prune keeps a
// dead generation while its highest sequence is above the consumer's ack
// floor, so a late redelivery still finds its decision. A lookup probes
// each generation that may hold a live entry (expires_at + Lookback ≥
// now) or an unacknowledged one: usually 2–3. It skips a generation whose
// key filter, kept in memory for each generation written since Open
// (filter.go), has not seen the key: almost every lookup is of a new
// message and so answered without reading Pebble. Other probes go to
// Pebble, whose tables carry bloom filters. Random message ids make every
// memtable flush overlap the whole generation being written, so Pebble
// is told to let eight flushes gather in L0 before it compacts them into
// the level below (l0CompactionThreshold, ledger.go), rewriting that
// generation a quarter as often. See keys.go for the key layout and
// codec.go for the value format.
//
// An entry is live until expires_at + Lookback inclusive, whatever the
// generation width; Lookback is exactly what the caller passes, with no
// default. The gateway passes its freshness grace (the skew,
// envelope.Freshness.Grace), so an entry is live at every instant a copy
// of its message is fresh. Prune records the end of the latest
// generation it deleted, in the same batch, as the Horizon: entries
// expiring before it may be gone, so a ledger reopened with a longer
// Lookback, or read under a clock stepped back past a prune, says which
// messages it can no longer answer for.
//
// # Failures
//
// Open refuses a damaged store with ErrCorrupt and never starts empty over
// one; by default it reads every table once to check checksums (about
// 0.75 s per million entries on a 2-core machine; SkipVerify turns it
// off). A corrupt block met later fails that read with ErrCorrupt (Pebble's
// default would exit the process). A failed MANIFEST write in a Pebble
// background job still ends the process, as Pebble intends; the store
// recovers from disk on restart. A failed commit returns ErrIO; the ledger then reopens its database
// (dropping state that reached memory but not disk) before its next use.
// That holds for a failed log sync. A failed log write may end the
// process instead: Pebble panics where the store cannot catch it when a
// commit rotates the memtable past the failed write, and on a later
// write that does not sync (MarkAcked, Prune) once the error is stored.
// Nothing the failed write held was acknowledged, and the store
// recovers from disk on restart.
// Errors from Pebble are wrapped in ErrCorrupt, ErrIO, ErrClosed or
// ErrInvalid; callers never need to import Pebble.
package store
