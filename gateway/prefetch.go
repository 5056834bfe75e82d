package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/metrics"
	"github.com/agentgw/agentgw/subjects/reason"
)

// The stateless side of a partition's pipeline: batches taken from the
// fair source, their gates that need no ledger run in parallel, and a
// verified batch offered to the decider (batch.go).

// prefetch takes batches from src and runs their stateless gates
// (prepare), handing each to out when the decider asks on want, until
// ctx ends. While a batch waits, and when it is handed over, it grows by
// what arrived for the queues below their share (fairSource.topUp). A
// batch it cannot hand over is naked back.
func (g *Gateway) prefetch(ctx context.Context, src *fairSource, want <-chan struct{}, out chan<- prepared, offering *atomic.Bool) {
	var next *prepared // what the batch handed over last gave back (yield)
	var nextShare []int
	defer func() {
		if next != nil {
			g.nakAll(next.items)
		}
	}()
	for ctx.Err() == nil {
		var p prepared
		var share []int
		if next != nil {
			p, share, next = *next, nextShare, nil
		} else {
			msgs, sh := src.take(ctx, g.cfg.Consumer.Batch, g.cfg.Consumer.FetchWait)
			if len(msgs) == 0 {
				continue
			}
			p, share = g.prepare(msgs), sh
			if g.hooks != nil {
				g.hookSeqs(p.items, g.hooks.prepared)
			}
		}
		offering.Store(true)
		if g.hooks != nil {
			// After the offer is visible: a test that saw this hook
			// knows the decider will see the offer.
			g.hookSeqs(p.items, g.hooks.waiting)
		}
	wait:
		for {
			// A batch every queue has given its share to cannot grow:
			// no need to wake for each message that arrives.
			arrived := src.ready
			if src.full(share) {
				arrived = nil
			}
			select {
			case <-want:
				offering.Store(false)
				g.grow(&p, src.topUp(share))
				var rest []*item
				if p.items, rest, nextShare = src.yield(p.items, share, g.cfg.Consumer.Batch); len(rest) > 0 {
					// Judged, like every batch, when the decider takes it.
					next = &prepared{items: rest, wall: p.wall}
				}
				g.metrics.BatchSize.Observe(float64(len(p.items)))
				out <- p // the decider waits for it
				break wait
			case <-arrived:
				g.grow(&p, src.topUp(share))
			case <-ctx.Done():
				offering.Store(false)
				g.nakAll(p.items)
				return
			}
		}
	}
}

// pipelineHooks let a test hold the batch pipeline at known points;
// every field may be nil.
type pipelineHooks struct {
	prepared   func(seqs []uint64) // a fetched batch's stateless gates ran
	waiting    func(seqs []uint64) // a batch waits for the decider, offered (offering is set)
	batchStart func(seqs []uint64) // the decider took a batch and read its decision time
	judged     func(seqs []uint64) // the decider judged a batch's credentials, before the ledger gate
	queued     func(seq uint64)    // a message reached its queue in the source
	narrowing  func(seqs []uint64) // the acker is about to narrow partly stored outcomes
}

func (g *Gateway) hookSeqs(items []*item, fn func([]uint64)) {
	if g.hooks == nil || fn == nil {
		return
	}
	seqs := make([]uint64, len(items))
	for i, it := range items {
		seqs[i] = it.seq
	}
	fn(seqs)
}

// prepared is a fetched batch whose stateless gates have run, but for
// their rules that read the clock (item.clocked): the decider runs those
// (judge) at the instant the batch is decided.
type prepared struct {
	items []*item
	// at is the batch's decision time when it is fixed in advance (a
	// recovered batch, recover.go). Zero: the decider's clock when it
	// takes the batch, at or after every message of the batch arrived,
	// however long the batch waited or grew (decideBatch).
	at   time.Time
	wall time.Time // when it was fetched, for metrics
}

// prepare makes the items of a fetched batch and runs the gates that need
// no ledger on them, in parallel.
func (g *Gateway) prepare(msgs []jetstream.Msg) prepared {
	wall := time.Now() // for metrics only; decisions use the clock
	return prepared{items: latestDeliveries(g.verifyAll(g.newItems(msgs, g.clock(), wall), wall)), wall: wall}
}

// prepareAt is prepare for a batch decided at now, whatever the clock
// reads when it is decided.
func (g *Gateway) prepareAt(msgs []jetstream.Msg, now time.Time) prepared {
	wall := time.Now()
	return prepared{items: latestDeliveries(g.verifyAll(g.newItems(msgs, now, wall), wall)), at: now, wall: wall}
}

// grow adds msgs, taken while p waited, to p. They are judged with the
// rest of p when the decider takes it.
func (g *Gateway) grow(p *prepared, msgs []jetstream.Msg) {
	if len(msgs) == 0 {
		return
	}
	wall := time.Now()
	more := g.verifyAll(g.newItems(msgs, g.clock(), wall), wall)
	p.items = latestDeliveries(append(p.items, more...))
}

// newItems makes the items of fetched messages, received at start (on
// the gateway's clock).
func (g *Gateway) newItems(msgs []jetstream.Msg, start, wall time.Time) []*item {
	m := g.metrics
	items := make([]*item, len(msgs))
	for i, msg := range msgs {
		it := &item{msg: msg, subject: msg.Subject(), hdr: msg.Headers(), body: msg.Data(), start: start}
		if md, err := msg.Metadata(); err == nil {
			it.seq, it.delivery, it.consumer = md.Sequence.Stream, md.NumDelivered, md.Consumer
			m.DecisionDelay.Observe(wall.Sub(md.Timestamp).Seconds())
			if md.NumDelivered > 1 {
				m.Redeliveries.Inc()
			}
		}
		items[i] = it
	}
	return items
}

// verifyAll runs the gates that need no ledger on items, in parallel,
// leaving their rules that read the clock to judge.
func (g *Gateway) verifyAll(items []*item, wall time.Time) []*item {
	g.parallel(items, func(it *item) {
		if it.seq == 0 {
			it.deny(reason.Deny(reason.Internal, "message without JetStream metadata"))
			return
		}
		g.verify(it)
	})
	metrics.Since(g.metrics.GateSeconds.WithLabelValues("verify"), wall)
	return items
}

// parallel runs fn over items on the configured number of workers.
func (g *Gateway) parallel(items []*item, fn func(*item)) {
	if g.workers <= 1 || len(items) < 4 {
		for _, it := range items {
			fn(it)
		}
		return
	}
	var wg sync.WaitGroup
	var next sync.Mutex
	i := 0
	for range min(g.workers, len(items)) {
		wg.Go(func() {
			for {
				next.Lock()
				j := i
				i++
				next.Unlock()
				if j >= len(items) {
					return
				}
				fn(items[j])
			}
		})
	}
	wg.Wait()
}

// latestDeliveries keeps one item per stream sequence: when a message is
// redelivered into the same pull (its ack wait ran out while the fetch
// was still open), deciding both copies would give one ingress message
// two outputs. The latest delivery's ack stands for the sequence.
func latestDeliveries(items []*item) []*item {
	seen := make(map[uint64]int, len(items))
	out := items[:0]
	for _, it := range items {
		if j, ok := seen[it.seq]; ok && it.seq != 0 {
			out[j] = it
			continue
		}
		seen[it.seq] = len(out)
		out = append(out, it)
	}
	return out
}
