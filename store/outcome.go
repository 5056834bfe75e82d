package store

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// Outcomes: the exact outputs recorded for an ingress stream sequence
// before they are published. A redelivery of that sequence (after a crash
// or an ack timeout) re-emits them instead of deciding again, so a
// decision that depended on time (freshness, credential expiry) can never
// flip between two deliveries of one message.
//
//	q <seq u64>    outcome of ingress sequence seq
//
// Sequences grow with the stream, and once a sequence is at or below the
// consumer's ack floor it is never delivered again, so pruning is one
// DeleteRange [q0, q<floor+1>) whatever the number of outcomes.
const kindOutcome byte = 'q'

func outcomeKey(seq uint64) []byte { return appendOutcomeKey(nil, seq) }

func appendOutcomeKey(dst []byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, kindOutcome), seq)
}

// Outcome returns the outputs recorded for seq, looking at the database
// and at the writes staged in b. The slice is a copy.
func (b *Batch) Outcome(seq uint64) ([]byte, bool, error) {
	if err := b.check(); err != nil {
		return nil, false, err
	}
	var kb [9]byte
	key := appendOutcomeKey(kb[:0], seq)
	if s, ok := b.r.staged[string(key)]; ok {
		return append([]byte(nil), s.v...), !s.del, nil
	}
	if a := b.r.after; a != nil {
		if s, ok := a.staged[string(key)]; ok {
			return append([]byte(nil), s.v...), !s.del, nil
		}
	}
	if seq > b.l.maxOutcome.Load() {
		// Above every outcome ever committed: a first delivery, the
		// common case, costs no lookup.
		return nil, false, nil
	}
	v, ok, err := b.r.get(key)
	if err != nil || !ok {
		return nil, false, err
	}
	return append([]byte(nil), v...), true, nil
}

// PutOutcome stages the outputs of seq; they become durable with the
// batch's synced commit, before anything is published. The batch keeps
// outputs without copying it (outcomes are the bulk of a batch): the
// caller must not modify it afterwards.
func (b *Batch) PutOutcome(seq uint64, outputs []byte) error {
	if err := b.check(); err != nil {
		return err
	}
	if seq == 0 || len(outputs) == 0 {
		return fmt.Errorf("store: outcome needs a sequence and outputs: %w", ErrInvalid)
	}
	var kb [9]byte
	b.r.staged[string(appendOutcomeKey(kb[:0], seq))] = staged{v: outputs}
	b.maxOutcome = max(b.maxOutcome, seq)
	return nil
}

// PruneOutcomes deletes the outcomes of every sequence ≤ ackFloor with one
// range deletion. Not synced: a lost prune is redone by the next one.
func (l *Ledger) PruneOutcomes(ackFloor uint64) error {
	if ackFloor == 0 {
		return nil
	}
	db, err := l.acquire()
	if err != nil {
		return err
	}
	defer l.mu.RUnlock()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	end := []byte{kindOutcome + 1}
	if ackFloor < math.MaxUint64 {
		end = outcomeKey(ackFloor + 1)
	}
	pb := db.NewBatch()
	if err := pb.DeleteRange(outcomeKey(0), end, nil); err != nil {
		_ = pb.Close()
		return fmt.Errorf("store: prune outcomes: %w: %v", ErrIO, err)
	}
	// Raised before the deletion applies: a lookup that misses an outcome
	// the deletion removed must see the floor (Acknowledged).
	for {
		cur := l.outcomeFloor.Load()
		if ackFloor <= cur || l.outcomeFloor.CompareAndSwap(cur, ackFloor) {
			break
		}
	}
	return l.apply(pb, false)
}

// Acknowledged reports whether seq is at or below an ack floor that
// PruneOutcomes was given since Open: its message was acknowledged, so
// its outcome may be gone. A delivery of such a message is one JetStream
// sent before it processed the ack (a redelivery after an ack timeout,
// already in flight); it must not be decided again.
func (l *Ledger) Acknowledged(seq uint64) bool { return seq <= l.outcomeFloor.Load() }

// lastOutcome returns the highest sequence with a recorded outcome (0 for
// none): an upper bound for Outcome lookups after open.
func lastOutcome(db *pebble.DB) (uint64, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{kindOutcome}, UpperBound: []byte{kindOutcome + 1}})
	if err != nil {
		return 0, readError("ledger", err)
	}
	defer func() { _ = it.Close() }()
	if !it.Last() {
		if err := it.Error(); err != nil {
			return 0, readError("ledger", err)
		}
		return 0, nil
	}
	k := it.Key()
	if len(k) != 9 {
		return 0, fmt.Errorf("store: outcome key of %d bytes: %w", len(k), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}

// Acknowledged is Ledger.Acknowledged, for the batch's ledger.
func (b *Batch) Acknowledged(seq uint64) bool { return b.l.Acknowledged(seq) }
