package gateway

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// pruneInterval is how often expired ledger generations are dropped.
const pruneInterval = 30 * time.Second

// pruneLoop drops expired ledger generations, never one that holds an
// entry for an ingress message the consumers have not yet acknowledged:
// the ack floor bounds what may go.
func (g *Gateway) pruneLoop(ctx context.Context, consumers []jetstream.Consumer) error {
	t := time.NewTicker(pruneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		floor, ok := g.ackFloor(ctx, consumers)
		if !ok {
			continue
		}
		if err := g.ledger.PruneOutcomes(floor); err != nil {
			g.log.Warn().Err(err).Msg("outcome prune failed")
		}
		st, err := g.ledger.Prune(g.clock(), floor)
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
func (g *Gateway) ackFloor(ctx context.Context, consumers []jetstream.Consumer) (uint64, bool) {
	var floor uint64
	var pending int64
	defer func() { g.pending.Store(pending) }()
	for i, c := range consumers {
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
