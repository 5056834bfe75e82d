// Package journal keeps a per-partition journal of ledger writes in
// JetStream (stream AGENTGW_JOURNAL, subject agentgw.journal.<partition>,
// limits retention by age, file storage, R3 in production), so that an
// instance that takes a partition over can rebuild that partition's
// ledger for the last window before it processes anything.
//
// A journal that loses records other than by its age limit (a purge) is
// marked by the writers that notice, on LossSubject (loss.go).
//
// A Record is one thing the ledger must not forget: a replay entry, an
// idempotency entry, a single-use marker, a hold or its deletion, or the
// exact outputs of an ingress sequence (an outcome). Records are packed
// into binary messages (format version 1, codec.go); a reader refuses a
// version or an operation it does not know rather than skip it.
//
// It knows nothing of Pebble, envelopes or leases: the gateway maps
// store entries to records and back, and passes the lease epoch in.
//
// # Fencing
//
// Every message carries its writer's epoch (the lease epoch) and is
// published with the per-subject sequence check
// (Nats-Expected-Last-Subject-Sequence) against the writer's own previous
// message. A new owner first Claims the partition: it appends a fence
// with its epoch, checked the same way. From then on a former owner's
// append fails its check and resolves to ErrFenced: a process that was
// stalled past its lease cannot journal, and since the gateway journals a
// batch before publishing its outputs, cannot publish anything new
// either. Then the new owner Replays up to the fence and beyond, and only
// then processes. The fence is a message like the others: a partition
// whose subject stays idle longer than MaxAge loses it with the rest, and
// a former owner may then Claim and Append again (the current owner's
// next Append finds its claim gone, ErrNotClaimed, and claims again).
// Against a stall that long only the lease deadline the gateway checks
// before it publishes (stillOwned) guards; the records such a writer
// appends come from a ledger rebuilt from the same emptied journal.
//
// The price is that one partition's messages are published one at a
// time, each waiting for its acknowledgement (the next check needs the
// previous sequence). A batch normally fits one message (the connection's
// max payload, 1 MiB by default), so that is one JetStream round trip per
// batch.
//
// # Rebuild time
//
// Replay reads the partition's records at or after a start time with an
// ordered consumer until it has reached the last message present when it
// started. Its cost is linear in the bytes retained for the partition, so
// rebuild time ≈ records in the window / replay rate; README and
// docs/scale-out.md give the measured rate (BenchmarkReplay).
package journal
