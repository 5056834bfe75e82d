package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/store/journal"
	"github.com/agentgw/agentgw/subjects/reason"
)

// ledgerBatch is a ledger batch that, in scale-out mode, also collects
// what it writes as journal records, so the partition's next owner can
// rebuild the same ledger. Provisional entries (the ledger gate's, made
// so a second copy in the same batch is caught) are not journaled: the
// final entries staged by finish replace them before the commit.
//
// Per message, finish stages the replay entry, then an operator replay's
// single-use marker, then the idempotency entry, and recordOutcomes the
// outcomes after every message's entries, so in the journal an outcome
// never precedes its entries, nor a marker its replay entry: an append
// that fails part way leaves a prefix, and a prefix never holds an
// outcome whose entries are missing, nor a marker without the entry of
// the message that set it. Entries without their outcome are a decision
// never published; the ledger gate recognises them by their sequence as
// the message's own (ledgerGate, again).
type ledgerBatch struct {
	*store.Batch
	recs    []journal.Record
	journal bool
	revs    map[string]uint64 // kvHolds: revision of each hold read
	// lostBefore and journalFrom are the partition's (partState).
	lostBefore, journalFrom time.Time
	// until is the local deadline of the partition's lease (scaled out;
	// nil for a single instance): the batch's writes to the holds bucket
	// are sent before it (kvContext).
	until func() (time.Time, bool)
}

func (g *Gateway) newBatch(ps *partState) *ledgerBatch {
	b := &ledgerBatch{Batch: ps.ledger.NewBatch(), journal: ps.epoch != 0, lostBefore: ps.lostBefore, journalFrom: ps.journalFrom}
	if ps.epoch != 0 && g.scale != nil {
		b.until = func() (time.Time, bool) { return g.scale.leases.Until(ps.p, ps.epoch) }
	}
	return b
}

// errLeaseLost: a batch's partition lease ran out (or passed to another
// owner) before one of its writes to the holds bucket was sent.
var errLeaseLost = fmt.Errorf("%w: lease lost before a write to the holds bucket", errRestart)

// kvContext bounds one of b's operations on the holds bucket: by
// kvTimeout, and, scaled out, by the partition lease's local deadline. A
// batch whose lease ran out writes nothing more: the partition's next
// owner decides the same messages, and a write of this one landing after
// its own (a hold retired, a take given back) would undo what it did.
// The lease's margin covers the time a write sent before the deadline
// takes to land. b may be nil (no partition: a bound of kvTimeout only).
func (b *ledgerBatch) kvContext() (context.Context, context.CancelFunc, error) {
	d := time.Now().Add(kvTimeout)
	if b != nil && b.until != nil {
		until, ok := b.until()
		if !ok {
			return nil, nil, errLeaseLost
		}
		if until.Before(d) {
			d = until
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), d)
	return ctx, cancel, nil
}

func (b *ledgerBatch) add(r journal.Record) {
	if b.journal {
		b.recs = append(b.recs, r)
	}
}

// appendJournal appends a batch's records to partition p's journal
// (journalCut: a test cuts it short).
func (g *Gateway) appendJournal(ctx context.Context, p int, recs []journal.Record) error {
	if g.journalCut != nil {
		if n := g.journalCut(recs); n < len(recs) {
			if err := g.scale.journal.Append(ctx, p, recs[:n]); err != nil {
				return err
			}
			return fmt.Errorf("journal append cut after %d of %d records", n, len(recs))
		}
	}
	return g.scale.journal.Append(ctx, p, recs)
}

func journalDecision(d store.Decision) journal.Decision {
	return journal.Decision{Route: string(d.Route), Reason: string(d.Reason), Target: d.Target, Capability: d.Capability,
		PolicyIDs: d.PolicyIDs, PolicyVersion: d.PolicyVersion, OutputMsgID: d.OutputMsgID}
}

func storeDecision(d journal.Decision) store.Decision {
	return store.Decision{Route: store.Route(d.Route), Reason: reason.Code(d.Reason), Target: d.Target, Capability: d.Capability,
		PolicyIDs: d.PolicyIDs, PolicyVersion: d.PolicyVersion, OutputMsgID: d.OutputMsgID}
}

// PutReplay stages e and journals it unless it is provisional.
func (b *ledgerBatch) PutReplay(k store.ReplayKey, e store.ReplayEntry) error {
	if err := b.Batch.PutReplay(k, e); err != nil {
		return err
	}
	if e.Decision.Route != "" {
		b.add(journal.Record{Op: journal.OpReplay, Tenant: k.Tenant, Agent: k.Agent, ID: k.MessageID,
			Seq: e.Seq, Expires: e.Expires, Digest: e.BodyDigest, Decision: journalDecision(e.Decision)})
	}
	return nil
}

// PutIdem stages e and journals it unless it is provisional.
func (b *ledgerBatch) PutIdem(k store.IdemKey, e store.IdemEntry) error {
	if err := b.Batch.PutIdem(k, e); err != nil {
		return err
	}
	if e.Decision.Route != "" {
		b.add(journal.Record{Op: journal.OpIdem, Tenant: k.Tenant, Agent: k.Agent, ID: k.Key,
			Digest: e.PayloadDigest, FirstMessageID: e.MessageID, Expires: e.Expires, Decision: journalDecision(e.Decision)})
	}
	return nil
}

// SetOnce sets the marker and journals it when this call set it.
func (b *ledgerBatch) SetOnce(kind, id string, expires time.Time) (bool, error) {
	first, err := b.Batch.SetOnce(kind, id, expires)
	if err == nil && first {
		b.add(journal.Record{Op: journal.OpMarker, MarkerKind: kind, ID: id, Expires: expires})
	}
	return first, err
}

// setReplayMarker sets the single-use marker of it, an operator replay,
// like SetOnce, but leaves its journal record to finish (journalMarker),
// after the message's replay entry.
func (b *ledgerBatch) setReplayMarker(it *item, expires time.Time) (bool, error) {
	first, err := b.Batch.SetOnce("replay", replayMarkerID(it.replay), expires)
	if err == nil && first {
		it.marked = expires
	}
	return first, err
}

// journalMarker journals the marker setReplayMarker set for it, if any.
func (b *ledgerBatch) journalMarker(it *item) {
	if !it.marked.IsZero() {
		b.add(journal.Record{Op: journal.OpMarker, MarkerKind: "replay", ID: replayMarkerID(it.replay), Expires: it.marked})
	}
}

func replayMarkerID(k store.ReplayKey) string { return k.Tenant + "/" + k.Agent + "/" + k.MessageID }

// PutHold stages and journals a hold.
func (b *ledgerBatch) PutHold(id string, deadline time.Time, value []byte) error {
	if err := b.Batch.PutHold(id, deadline, value); err != nil {
		return err
	}
	b.add(journal.Record{Op: journal.OpHold, ID: id, Expires: deadline, Value: value})
	return nil
}

// DeleteHold stages and journals a hold's removal.
func (b *ledgerBatch) DeleteHold(id string) error {
	if err := b.Batch.DeleteHold(id); err != nil {
		return err
	}
	b.add(journal.Record{Op: journal.OpHoldDelete, ID: id})
	return nil
}

// PutOutcome stages and journals an ingress message's outputs.
func (b *ledgerBatch) PutOutcome(seq uint64, outputs []byte) error {
	if err := b.Batch.PutOutcome(seq, outputs); err != nil {
		return err
	}
	b.add(journal.Record{Op: journal.OpOutcome, Seq: seq, Value: outputs})
	return nil
}

// applyRecord writes one journal record into a ledger batch (rebuild).
func applyRecord(b *store.Batch, r journal.Record) error {
	switch r.Op {
	case journal.OpReplay:
		return b.PutReplay(store.ReplayKey{Tenant: r.Tenant, Agent: r.Agent, MessageID: r.ID},
			store.ReplayEntry{Seq: r.Seq, Expires: r.Expires, BodyDigest: r.Digest, Decision: storeDecision(r.Decision)})
	case journal.OpIdem:
		return b.PutIdem(store.IdemKey{Tenant: r.Tenant, Agent: r.Agent, Key: r.ID},
			store.IdemEntry{PayloadDigest: r.Digest, MessageID: r.FirstMessageID, Expires: r.Expires, Decision: storeDecision(r.Decision)})
	case journal.OpMarker:
		_, err := b.SetOnce(r.MarkerKind, r.ID, r.Expires)
		return err
	case journal.OpHold:
		return b.PutHold(r.ID, r.Expires, r.Value)
	case journal.OpHoldDelete:
		return b.DeleteHold(r.ID)
	case journal.OpOutcome:
		return b.PutOutcome(r.Seq, r.Value)
	}
	return reason.Deny(reason.Internal, "journal record with op %s", r.Op)
}
