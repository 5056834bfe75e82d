package store

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// pruneMarkerLimit bounds the markers one Prune deletes.
const pruneMarkerLimit = 1024

// MarkAcked records that the outputs of the messages keys name were
// acknowledged by JetStream: for each key, the copy Replay(k, now) reports
// gets Acked set. Keys with no such copy, or already acked, are skipped.
// The write is not synced: losing it only makes a redelivery re-emit
// outputs the output stream deduplicates.
func (l *Ledger) MarkAcked(keys []ReplayKey, now time.Time) error {
	for _, k := range keys {
		if err := k.check(); err != nil {
			return err
		}
	}
	db, err := l.acquire()
	if err != nil {
		return err
	}
	defer l.mu.RUnlock()
	l.wmu.Lock()
	defer l.wmu.Unlock()

	r := reader{l: l, db: db}
	defer r.close()
	pb := db.NewBatch()
	for _, k := range keys {
		e, gen, ok, err := r.replay(k, now, nil)
		if err != nil {
			_ = pb.Close()
			return err
		}
		if !ok || e.Acked {
			continue
		}
		e.Acked = true
		key := appendEntryKey(nil, kindReplay, gen, k.Tenant, k.Agent, k.MessageID)
		if err := pb.Set(key, encodeReplay(e), nil); err != nil {
			_ = pb.Close()
			return fmt.Errorf("store: mark acked: %w: %v", ErrIO, err)
		}
	}
	r.close()
	if pb.Empty() {
		_ = pb.Close()
		return nil
	}
	return l.apply(pb, false)
}

// Prune deletes what can no longer matter at now, given the consumer's ack
// floor (every ingress sequence ≤ ackFloor is acknowledged):
//
//   - each generation whose entries are all dead (its end + Lookback ≤ now)
//     and whose highest recorded sequence is ≤ ackFloor, with two
//     DeleteRanges and one Delete: the cost depends on the number of
//     generations, not on the number of entries in them. A dead generation
//     above the ack floor is kept (Held), so a late redelivery still finds
//     its entry.
//   - up to 1024 markers whose expiry + Lookback has passed (one point
//     delete each; markers are few: one per approval or operator replay).
//
// Deleting a generation raises Horizon to its end, and deleting markers
// raises the marker horizon past the latest of their expiries (SetOnce),
// in the same batch.
//
// The write is not synced; a lost prune is redone by the next one.
// ackFloor only ratchets up: a lower value than before is ignored.
func (l *Ledger) Prune(now time.Time, ackFloor uint64) (PruneStats, error) {
	st, _, err := l.prune(now, ackFloor)
	return st, err
}

// prune implements Prune and also returns the number of Pebble operations
// it issued (tests use it to show the cost is per generation).
func (l *Ledger) prune(now time.Time, ackFloor uint64) (PruneStats, uint32, error) {
	var st PruneStats
	db, err := l.acquire()
	if err != nil {
		return st, 0, err
	}
	defer l.mu.RUnlock()
	l.wmu.Lock()
	defer l.wmu.Unlock()

	l.gmu.Lock()
	l.ackFloor = max(l.ackFloor, ackFloor)
	floor := l.ackFloor
	gens := slices.Clone(l.gens)
	start, startMarkers := l.horizon, l.markerHorizon
	l.gmu.Unlock()
	horizon := start

	pb := db.NewBatch()
	fail := func(err error) (PruneStats, uint32, error) {
		_ = pb.Close()
		return PruneStats{}, 0, fmt.Errorf("store: prune: %w: %v", ErrIO, err)
	}
	var keep []genMeta
	for _, g := range gens {
		if !l.genDead(g.gen, now) {
			keep = append(keep, g)
			continue
		}
		if g.maxSeq > floor {
			st.Held++
			keep = append(keep, g)
			continue
		}
		// A batch staged before this prune may still write to the
		// generation: from now on its lookups read Pebble.
		l.filters.distrust(g.gen)
		for _, kind := range []byte{kindReplay, kindIdem} {
			start, end := genRange(kind, g.gen)
			if err := pb.DeleteRange(start, end, nil); err != nil {
				return fail(err)
			}
		}
		if err := pb.Delete(genKey(g.gen), nil); err != nil {
			return fail(err)
		}
		st.Generations++
		st.Entries += g.count
		horizon = max(horizon, (g.gen+1)*l.width)
	}
	if horizon > start {
		// In the batch that deletes: the horizon is never behind what
		// is gone, even after a crash.
		if err := pb.Set(horizonKey, encodeUvarints(horizon), nil); err != nil {
			return fail(err)
		}
	}

	n, more, markersExp, err := pruneMarkers(db, pb, now.Add(-l.lookback-1))
	if err != nil {
		_ = pb.Close()
		return PruneStats{}, 0, err
	}
	st.Markers, st.MoreMarkers = n, more
	markerHorizon := startMarkers
	if n > 0 {
		// A marker outlasts every fresh copy of its message only at the
		// clock of the prune: a batch judged earlier (recovered, up to
		// ack_wait back) or under a wider skew could still take a copy
		// as fresh. The marker horizon is kept in the terms of the
		// messages' own expiry (a marker's is its message's plus the
		// Lookback, the freshness grace): a Lookback widened since does
		// not move it. SetOnce takes a marker whose message expires
		// before it as set.
		if raw := markersExp - min(markersExp, uint64(l.lookback)); raw+1 > markerHorizon {
			markerHorizon = raw + 1
		}
	}
	if markerHorizon > startMarkers {
		if err := pb.Set(markerHorizonKey, encodeUvarints(markerHorizon), nil); err != nil {
			return fail(err)
		}
	}

	ops := pb.Count()
	if pb.Empty() {
		_ = pb.Close()
		return st, 0, nil
	}
	// The horizon rises before the deletion is applied: a lookup that
	// misses an entry this prune removes (its generation gone from the
	// database, or from l.gens) finds the horizon past the entry's expiry
	// when it reads it afterwards, as the gateway does. If the apply
	// fails, the horizon stays raised: entries below it are dead at now
	// anyway, and a higher horizon only refuses more.
	l.gmu.Lock()
	l.horizon = max(l.horizon, horizon)
	l.markerHorizon = max(l.markerHorizon, markerHorizon)
	l.gmu.Unlock()
	if err := l.apply(pb, false); err != nil {
		return PruneStats{}, 0, err
	}
	l.gmu.Lock()
	l.gens = keep
	l.gmu.Unlock()
	return st, ops, nil
}

// pruneMarkers stages the deletion of up to pruneMarkerLimit markers that
// expired at or before cutoff, and returns how many, whether more are
// due, and the latest expiry among them (nanoseconds). Their expiry index
// is ordered by time, so this reads only what it deletes (plus tombstones
// not yet compacted).
func pruneMarkers(db *pebble.DB, pb *pebble.Batch, cutoff time.Time) (int, bool, uint64, error) {
	it, err := db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{kindMarkerExpiry},
		UpperBound: timeBound(kindMarkerExpiry, cutoff),
	})
	if err != nil {
		return 0, false, 0, readError("markers", err)
	}
	defer it.Close()
	n := 0
	var latest uint64
	for ok := it.First(); ok; ok = it.Next() {
		if n == pruneMarkerLimit {
			return n, true, latest, nil
		}
		k := it.Key()
		if len(k) < 10 {
			return 0, false, 0, fmt.Errorf("store: marker expiry key %x: %w", k, ErrCorrupt)
		}
		latest = max(latest, binary.BigEndian.Uint64(k[1:9]))
		if err := pb.Delete(append([]byte{kindMarker}, k[9:]...), nil); err != nil {
			return 0, false, 0, fmt.Errorf("store: prune markers: %w: %v", ErrIO, err)
		}
		if err := pb.Delete(k, nil); err != nil {
			return 0, false, 0, fmt.Errorf("store: prune markers: %w: %v", ErrIO, err)
		}
		n++
	}
	if err := it.Error(); err != nil {
		return 0, false, 0, readError("markers", err)
	}
	return n, false, latest, nil
}
