package gateway

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// pruneInterval is how often expired ledger generations are dropped;
// outcomeInterval how often at most recorded outcomes below the ack floor
// are. Outcomes go often so that most are deleted while still in the
// memtable, and the flush drops them rather than writing them out: also
// whenever an eighth of a memtable has been committed since the last
// prune, checked every outcomeCheck. At 10k messages a second a 32 MiB
// memtable fills in about a second; pruning once a second left half of
// its outcomes to be flushed and compacted (compaction and flush were 8 %
// of the gateway's CPU, 4 % with this).
const (
	pruneInterval   = 30 * time.Second
	outcomeInterval = time.Second
	outcomeCheck    = 50 * time.Millisecond
)

// pruneLoop drops expired ledger generations, never one that holds an
// entry for an ingress message the consumers have not yet acknowledged:
// the ack floor bounds what may go.
//
// parts share one ledger (single-instance mode: every partition) or are
// one partition with its own (scale-out mode).
func (g *Gateway) pruneLoop(ctx context.Context, parts []*partState) error {
	led := parts[0].ledger
	t := time.NewTicker(outcomeCheck)
	defer t.Stop()
	last := time.Now()
	lastOutcomes, lastBytes := last, led.Committed()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		written := led.Committed()
		if time.Since(lastOutcomes) < outcomeInterval && written-lastBytes < g.ledgerOptions().MemTableBytes/8 {
			continue
		}
		lastOutcomes, lastBytes = time.Now(), written
		floor, ok := g.ackFloor(ctx, parts)
		if !ok {
			continue
		}
		if err := led.PruneOutcomes(floor); err != nil {
			g.log.Warn().Err(err).Msg("outcome prune failed")
		}
		if time.Since(last) < pruneInterval {
			continue
		}
		last = time.Now()
		st, err := led.Prune(g.clock(), floor)
		if err != nil {
			g.metrics.PruneRuns.WithLabelValues("error").Inc()
			g.log.Warn().Err(err).Msg("ledger prune failed")
			continue
		}
		g.metrics.PruneRuns.WithLabelValues("ok").Inc()
		g.log.Debug().Interface("prune", st).Msg("ledger pruned")
	}
}

// ackFloor is the lowest stream sequence below which every consumer of
// parts has acknowledged everything. A consumer with nothing pending and
// nothing unacknowledged holds it back only to the stream's last sequence
// read before any consumer, not to where its own traffic stopped (a
// quiet tenant's or partition's consumer would otherwise pin the floor
// for good), once the stream leader confirms it has no message for that
// consumer past its ack floor (floorOf). That floor is for pruning only:
// what it removes are the outcomes and entries of acknowledged messages,
// since a message not yet acknowledged keeps its consumer busy, and its
// floor below it. It does not say that a message at or below it was
// acknowledged: in a cluster a consumer answers from its own replica of
// the stream, which may not hold yet the last messages the stream leader
// reported, so an idle consumer may still deliver one at or below it.
// Each consumer's own ack floor, recorded here before anything is pruned
// (noteAckFloor), says that (acknowledged).
// In scale-out mode the lag gauge counts the partitions pruned last.
func (g *Gateway) ackFloor(ctx context.Context, parts []*partState) (uint64, bool) {
	var cons []jetstream.Consumer
	for _, ps := range parts {
		cons = append(cons, ps.cons)
		for _, tc := range ps.tenants {
			cons = append(cons, tc.cons)
		}
	}
	floor, pending, ok := g.floorOf(ctx, cons)
	if ok {
		g.pending.Store(pending)
	}
	return floor, ok
}

// floorOf is ackFloor over the consumers cons, with the messages they
// have yet to deliver.
func (g *Gateway) floorOf(ctx context.Context, cons []jetstream.Consumer) (floor uint64, pending int64, ok bool) {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := g.js.Stream(ictx, StreamIngress)
	if err != nil {
		return 0, 0, false
	}
	floor = st.CachedInfo().State.LastSeq
	for _, c := range cons {
		info, err := c.Info(ictx)
		if err != nil {
			return 0, 0, false
		}
		g.noteAckFloor(info.Name, info.AckFloor.Stream)
		pending += int64(info.NumPending)
		if info.NumPending == 0 && info.NumAckPending == 0 {
			// Idle as its own replica of the stream sees it, which may
			// lag the leader that counted LastSeq: it holds the floor
			// back to its ack floor unless the leader has no message for
			// it past that floor. Read after LastSeq, the leader's last
			// message for its filter is at least every one it had then.
			last, err := lastFor(ictx, st, info.Config)
			if err != nil {
				return 0, 0, false
			}
			if last <= info.AckFloor.Stream {
				continue
			}
		}
		floor = min(floor, info.AckFloor.Stream)
	}
	return floor, pending, true
}

// lastFor is the sequence of the stream leader's last message that a
// consumer configured as cc can deliver (0 for none).
func lastFor(ctx context.Context, st jetstream.Stream, cc jetstream.ConsumerConfig) (uint64, error) {
	filters := slices.Clone(cc.FilterSubjects)
	if cc.FilterSubject != "" {
		filters = append(filters, cc.FilterSubject)
	}
	if len(filters) == 0 {
		filters = []string{">"}
	}
	var last uint64
	for _, f := range filters {
		m, err := st.GetLastMsgForSubject(ctx, f)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return 0, err
		default:
			last = max(last, m.Sequence)
		}
	}
	return last, nil
}

// ackFloors holds each ingress consumer's ack floor as last read, by
// consumer name. Ack floors only rise, so a stale value is a low one.
type ackFloors struct{ m sync.Map } // name → *atomic.Uint64

// noteAckFloor records that consumer name has acknowledged every message
// at or below seq.
func (g *Gateway) noteAckFloor(name string, seq uint64) {
	v, _ := g.floors.m.LoadOrStore(name, new(atomic.Uint64))
	f := v.(*atomic.Uint64)
	for {
		cur := f.Load()
		if seq <= cur || f.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// acknowledged reports whether consumer had acknowledged seq when its ack
// floor was last read: a delivery of it then is a stale one. A message
// read by sequence (consumer "") never is.
func (g *Gateway) acknowledged(consumer string, seq uint64) bool {
	if consumer == "" {
		return false
	}
	v, ok := g.floors.m.Load(consumer)
	return ok && seq <= v.(*atomic.Uint64).Load()
}
