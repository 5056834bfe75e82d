package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// DefaultDueLimit is the number of holds DueHolds returns when its limit
// is ≤ 0.
const DefaultDueLimit = 1024

// PutHold stages a durable record id with a deadline, replacing any hold
// with the same id. id is 1–256 bytes without NUL; value at most 1 MiB.
func (b *Batch) PutHold(id string, deadline time.Time, value []byte) error {
	if err := b.check(); err != nil {
		return err
	}
	if err := checkPart("hold id", id, maxPartLen); err != nil {
		return err
	}
	if err := checkTime("hold deadline", deadline); err != nil {
		return err
	}
	if len(value) > maxHoldValue {
		return fmt.Errorf("store: hold value is %d bytes, max %d: %w", len(value), maxHoldValue, ErrInvalid)
	}
	old, ok, err := b.holdDeadline(id)
	if err != nil {
		return err
	}
	if ok && !old.Equal(deadline) {
		b.r.staged[string(holdKey(old, id))] = staged{del: true}
	}
	b.r.staged[string(holdIndexKey(id))] = staged{v: encodeTime(deadline)}
	b.r.staged[string(holdKey(deadline, id))] = staged{v: append([]byte{valueV1}, value...)}
	return nil
}

// DeleteHold stages the removal of hold id; a missing hold is not an error.
func (b *Batch) DeleteHold(id string) error {
	if err := b.check(); err != nil {
		return err
	}
	if err := checkPart("hold id", id, maxPartLen); err != nil {
		return err
	}
	old, ok, err := b.holdDeadline(id)
	if err != nil || !ok {
		return err
	}
	b.r.staged[string(holdKey(old, id))] = staged{del: true}
	b.r.staged[string(holdIndexKey(id))] = staged{del: true}
	return nil
}

// Hold returns hold id as seen by the batch (database and staged writes).
// value is a copy the caller owns.
func (b *Batch) Hold(id string) (deadline time.Time, value []byte, ok bool, err error) {
	if err := b.check(); err != nil {
		return time.Time{}, nil, false, err
	}
	if err := checkPart("hold id", id, maxPartLen); err != nil {
		return time.Time{}, nil, false, err
	}
	deadline, ok, err = b.holdDeadline(id)
	if err != nil || !ok {
		return time.Time{}, nil, false, err
	}
	v, ok, err := b.r.get(holdKey(deadline, id))
	if err != nil {
		return time.Time{}, nil, false, err
	}
	if !ok || len(v) == 0 || v[0] != valueV1 {
		return time.Time{}, nil, false, fmt.Errorf("store: hold %q: index without record: %w", id, ErrCorrupt)
	}
	return deadline, bytes.Clone(v[1:]), true, nil
}

func (b *Batch) holdDeadline(id string) (time.Time, bool, error) {
	v, ok, err := b.r.get(holdIndexKey(id))
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	t, err := decodeTime("hold index", v)
	if err != nil {
		return time.Time{}, false, err
	}
	return t, true, nil
}

// DueHolds returns, in deadline order, up to limit holds whose deadline is
// ≤ now (limit ≤ 0 means DefaultDueLimit). Holds are ordered by deadline
// on disk, so the cost is that of the holds returned (plus tombstones of
// recently deleted holds not yet compacted). The caller removes handled
// holds with DeleteHold.
func (l *Ledger) DueHolds(now time.Time, limit int) ([]Hold, error) {
	return l.dueHolds([]byte{kindHold}, now, limit)
}

// DueHoldsAfter is DueHolds from the hold that follows after, a hold
// DueHolds or DueHoldsAfter returned: the next page of due holds, for a
// caller that left some of a full page in place (holds it could not
// handle yet).
func (l *Ledger) DueHoldsAfter(now time.Time, after Hold, limit int) ([]Hold, error) {
	return l.dueHolds(append(holdKey(after.Deadline, after.ID), 0), now, limit)
}

func (l *Ledger) dueHolds(lower []byte, now time.Time, limit int) ([]Hold, error) {
	if limit <= 0 {
		limit = DefaultDueLimit
	}
	var out []Hold
	err := l.eachHold(lower, timeBound(kindHold, now), func(h Hold) (bool, error) {
		h.Value = bytes.Clone(h.Value)
		out = append(out, h)
		return len(out) < limit, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ScanHolds calls fn with every hold, in deadline order, and stops at
// the first error fn returns, which it returns. The Hold's Value is valid
// only during the call. fn runs under the ledger's read lock and must not
// use the ledger: a batch it started would wait for the scan to end.
// The cost is one pass over the holds, read one at a time.
func (l *Ledger) ScanHolds(fn func(Hold) error) error {
	return l.eachHold([]byte{kindHold}, []byte{kindHold + 1}, func(h Hold) (bool, error) { return true, fn(h) })
}

// eachHold calls fn with the holds whose keys are in [lower, upper), in
// key (deadline) order, while fn reports true and no error.
func (l *Ledger) eachHold(lower, upper []byte, fn func(Hold) (bool, error)) error {
	db, err := l.acquire()
	if err != nil {
		return err
	}
	defer l.mu.RUnlock()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return readError("holds", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			return readError("holds", err)
		}
		if len(k) < 10 || len(v) == 0 || v[0] != valueV1 {
			return fmt.Errorf("store: hold record %x: %w", k, ErrCorrupt)
		}
		more, err := fn(Hold{
			ID:       string(k[9:]),
			Deadline: time.Unix(0, int64(binary.BigEndian.Uint64(k[1:9]))).UTC(),
			Value:    v[1:],
		})
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	if err := it.Error(); err != nil {
		return readError("holds", err)
	}
	return nil
}

// SetOnce sets the single-use marker (kind, id) and reports true, or
// reports false if it is already set in the database or in this batch.
// A marker stays set until Prune removes it, after expires + Lookback;
// one that expires before the latest expiry among the markers Prune
// removed may have been set and removed, and is taken as set (false): a
// batch judged at an earlier instant than a prune, or under a skew raised
// since, must not set a marker again that the prune dropped.
// kind is 1–64 bytes, id 1–256 bytes, neither with NUL.
func (b *Batch) SetOnce(kind, id string, expires time.Time) (bool, error) {
	if err := b.check(); err != nil {
		return false, err
	}
	if err := checkMarker(kind, id); err != nil {
		return false, err
	}
	if err := checkTime("marker expiry", expires); err != nil {
		return false, err
	}
	key := markerKey(kind, id)
	_, ok, err := b.r.get(key)
	if err != nil || ok || b.l.prunedMarker(expires) {
		return false, err
	}
	b.r.staged[string(key)] = staged{v: encodeTime(expires)}
	b.r.staged[string(markerExpiryKey(expires, kind, id))] = staged{v: []byte{}}
	return true, nil
}

// checkMarker checks a single-use marker's kind and id.
func checkMarker(kind, id string) error {
	if err := checkPart("marker kind", kind, maxKindLen); err != nil {
		return err
	}
	return checkPart("marker id", id, maxPartLen)
}

// prunedMarker reports whether a marker expiring at expires (its
// message's expiry plus the Lookback) may have been removed by Prune
// (SetOnce): whether its message expires before the marker horizon,
// which is kept in the messages' terms.
func (l *Ledger) prunedMarker(expires time.Time) bool {
	l.gmu.RLock()
	h := l.markerHorizon
	l.gmu.RUnlock()
	return h != 0 && uint64(max(expires.Add(-l.lookback).UnixNano(), 0)) < h
}

// Marked is Ledger.Marked read through b: for the goroutine holding b,
// which may call no other Ledger method, and seeing what b staged.
func (b *Batch) Marked(kind, id string, expires time.Time) (bool, error) {
	if err := b.check(); err != nil {
		return false, err
	}
	if err := checkMarker(kind, id); err != nil {
		return false, err
	}
	_, ok, err := b.r.get(markerKey(kind, id))
	return ok || (err == nil && b.l.prunedMarker(expires)), err
}

// Marked reports whether the single-use marker (kind, id), expiring at
// expires, is set as SetOnce would find it in the database (a marker
// Prune may have removed counts as set): a read-only lookup, without a
// batch, safe to call concurrently with everything else. A marker set
// by a batch not yet committed is not seen. kind and id are checked as
// SetOnce checks them.
func (l *Ledger) Marked(kind, id string, expires time.Time) (bool, error) {
	if err := checkMarker(kind, id); err != nil {
		return false, err
	}
	db, err := l.acquire()
	if err != nil {
		return false, err
	}
	defer l.mu.RUnlock()
	r := reader{l: l, db: db}
	defer r.close()
	_, ok, err := r.get(markerKey(kind, id))
	return ok || (err == nil && l.prunedMarker(expires)), err
}
