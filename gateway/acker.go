package gateway

import (
	"fmt"
	"time"

	"github.com/agentgw/agentgw/gateway/metrics"
)

// ackJob is a published batch whose PubAcks the acker waits for.
type ackJob struct {
	items []*item
	pubs  *pubGroup
}

// publishOutputs publishes every output of a batch asynchronously.
func (g *Gateway) publishOutputs(items []*item) *pubGroup {
	n := 0
	for _, it := range items {
		n += len(it.outputs)
	}
	pg := newPubGroup(n)
	for _, it := range items {
		it.outputOK, it.unstored, it.refused = true, nil, nil
		if it.reemit {
			g.stats.Reemitted.Add(1)
			g.metrics.Reemitted.Inc()
		}
		for _, m := range it.outputs {
			if err := g.pub.publish(pg, it, m); err != nil {
				it.outputOK = false
				it.unstored = append(it.unstored, m)
				if refusedAsTooLarge(err) {
					it.refused = append(it.refused, m)
				}
				g.metrics.PublishFails.Inc()
				g.log.Warn().Err(err).Uint64("ingress_seq", it.seq).Msg("publish failed; will redeliver")
			}
		}
	}
	g.pub.seal(pg)
	return pg
}

// acker waits for the PubAcks of published batches and acks their
// ingress messages, while the partition loop already decides the next
// batch: the two overlap, and at most one batch waits here (jobs has
// room for one), so in-flight work stays bounded. It returns when jobs
// is closed and drained.
func (g *Gateway) acker(ps *partState, jobs <-chan ackJob) {
	for j := range jobs {
		start := time.Now()
		if err := g.awaitAndAck(ps, j.items, j.pubs); err != nil {
			g.log.Error().Err(err).Msg("batch not acknowledged; messages will be redelivered")
		}
		metrics.Since(g.metrics.GateSeconds.WithLabelValues("publish"), start)
	}
}

// awaitAndAck waits for all PubAcks of a batch, then acks each ingress
// message whose outputs all landed and naks the others (their recorded
// outcome is re-emitted on redelivery). Nothing is acked before its
// outputs are durable.
func (g *Gateway) awaitAndAck(ps *partState, items []*item, pg *pubGroup) error {
	defer func() {
		for _, it := range items {
			g.endSpan(it)
		}
	}()
	// Never wait forever: after the deadline, every output not already
	// answered counts as failed (a PubAck can be lost without a
	// disconnect, e.g. when a stream leader dies).
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	select {
	case <-pg.all:
	case <-deadline.C:
	case <-ps.abandon.Done():
		// The lease is gone: the next owner re-emits what the journal
		// recorded; nothing more is acked from here.
		g.pub.results(pg, errPubAckTimeout)
		return fmt.Errorf("gateway: partition %d given up with a batch in flight", ps.p)
	}
	for i, err := range g.pub.results(pg, errPubAckTimeout) {
		if err == nil {
			continue
		}
		it, m := pg.items[i], pg.msgs[i]
		it.outputOK = false
		it.unstored = append(it.unstored, m)
		if refusedAsTooLarge(err) {
			it.refused = append(it.refused, m)
		}
		g.metrics.PublishFails.Inc()
		g.log.Warn().Err(err).Uint64("ingress_seq", it.seq).Str("subject", m.Subject).Msg("output not stored; will redeliver")
	}
	if err := g.forgetStored(ps, items); err != nil {
		g.log.Warn().Err(err).Msg("could not narrow recorded outcomes; a redelivery re-emits them all (deduplicated within the window)")
	}
	if g.beforeAck != nil {
		if err := g.beforeAck(); err != nil {
			return err
		}
	}
	if !g.stillOwned(ps) {
		return fmt.Errorf("gateway: partition %d lease lost before acking", ps.p)
	}
	for _, it := range items {
		if !it.outputOK {
			_ = it.msg.NakWithDelay(retryDelay)
			continue
		}
		// A lost ack is harmless: the redelivery re-emits the recorded
		// outcome and JetStream de-duplicates it. The ledger learns what
		// is acknowledged from the consumer's ack floor (Prune), so no
		// per-message write is needed here.
		if err := it.msg.Ack(); err != nil {
			g.log.Warn().Err(err).Uint64("ingress_seq", it.seq).Msg("ack failed; redelivery will re-emit")
		}
	}
	return nil
}

func (g *Gateway) nakAll(items []*item) {
	for _, it := range items {
		_ = it.msg.NakWithDelay(retryDelay)
		g.endUndecided(it)
	}
}

// forgetStored narrows the recorded outcome of each item some of whose
// outputs JetStream stored and some not, to the ones not stored: the
// redelivery then re-emits only what is missing, so a downstream that
// stays full longer than the duplicate window cannot make a stored
// output appear twice. An item with an output refused as too large,
// which no redelivery would store, is narrowed too, with that output
// replaced (replaceRefused); one left with nothing to store is
// acknowledged. Failures are rare; this commit is synced.
func (g *Gateway) forgetStored(ps *partState, items []*item) error {
	var narrow []*item
	for _, it := range items {
		if !it.outputOK && len(it.unstored) > 0 && (len(it.unstored) < len(it.outputs) || len(it.refused) > 0) {
			narrow = append(narrow, it)
		}
	}
	if len(narrow) == 0 {
		return nil
	}
	if g.hooks != nil {
		g.hookSeqs(narrow, g.hooks.narrowing)
	}
	b := g.newBatch(ps)
	defer b.Close()
	var done []*item // nothing left to store
	now := g.clock()
	for _, it := range narrow {
		left := it.unstored
		if len(it.refused) > 0 {
			var err error
			if left, err = g.replaceRefused(b, it, now); err != nil {
				return err
			}
		}
		if len(left) == 0 {
			done = append(done, it)
			continue
		}
		rec, err := encodeOutputs(left, it.body)
		if err != nil {
			return err
		}
		if err := b.PutOutcome(it.seq, rec); err != nil {
			return err
		}
	}
	if err := b.Commit(); err != nil {
		return err
	}
	if ps.epoch != 0 {
		// Without it a new owner re-emits the whole outcome, which the
		// output streams de-duplicate within their window (and whose
		// refused outputs it replaces again).
		if err := g.scale.journal.Append(ps.abandon, ps.p, b.recs); err != nil {
			return err
		}
	}
	for _, it := range done {
		it.outputOK = true
	}
	return nil
}
