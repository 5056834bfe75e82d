package gateway

import (
	"context"
	"time"
)

// pruneInterval is how often expired ledger generations are dropped;
// outcomeInterval how often recorded outcomes below the ack floor are.
// Outcomes go often so that most are deleted while still in the
// memtable, and the flush drops them rather than writing them out.
const (
	pruneInterval   = 30 * time.Second
	outcomeInterval = time.Second
)

// pruneLoop drops expired ledger generations, never one that holds an
// entry for an ingress message the consumers have not yet acknowledged:
// the ack floor bounds what may go.
//
// parts share one ledger (single-instance mode: every partition) or are
// one partition with its own (scale-out mode).
func (g *Gateway) pruneLoop(ctx context.Context, parts []*partState) error {
	led := parts[0].ledger
	t := time.NewTicker(outcomeInterval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
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

// ackFloor is the lowest stream sequence below which every consumer has
// acknowledged everything.
// In scale-out mode the lag gauge counts the partitions pruned last.
func (g *Gateway) ackFloor(ctx context.Context, parts []*partState) (uint64, bool) {
	var floor uint64
	var pending int64
	defer func() { g.pending.Store(pending) }()
	for i, ps := range parts {
		c := ps.cons
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		info, err := c.Info(ictx)
		cancel()
		if err != nil {
			return 0, false
		}
		pending += int64(info.NumPending)
		if i == 0 || info.AckFloor.Stream < floor {
			floor = info.AckFloor.Stream
		}
	}
	return floor, true
}
