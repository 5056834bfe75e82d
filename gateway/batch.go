package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/metrics"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/store/lease"
	"github.com/agentgw/agentgw/subjects/reason"
)

// errPubAckTimeout: JetStream did not acknowledge an output in time.
var errPubAckTimeout = errors.New("gateway: no PubAck within 30s")

// retryDelay is how long a message whose outputs could not be made
// durable waits before JetStream redelivers it.
const retryDelay = 2 * time.Second

func (g *Gateway) consume(ctx context.Context, consumers []jetstream.Consumer, tenants [][]tenantConsumer) error {
	eg, ctx := errgroup.WithContext(ctx)
	if g.scale != nil {
		eg.Go(func() error { return g.runScaleOut(ctx) })
	} else {
		eg.Go(func() error { return g.runSingle(ctx, consumers, tenants) })
	}
	eg.Go(func() error { return g.expireLoop(ctx) })
	eg.Go(func() error { return g.watchLoop(ctx) })
	eg.Go(func() error { return g.serveOperator(ctx) })
	return eg.Wait()
}

// consumePartition decides ps's messages until ctx ends. A batch that
// fails is redelivered; one whose journal append failed ends the tenure
// (errRestart), since the ledger then holds what the journal does not.
func (g *Gateway) consumePartition(ctx context.Context, ps *partState) error {
	jobs := make(chan ackJob, 1)
	acked := make(chan struct{})
	go func() {
		defer close(acked)
		g.acker(ps, jobs)
	}()
	defer func() {
		close(jobs)
		<-acked
	}()
	// What the partition's consumers had in flight when it started is
	// decided first (recover.go); a failure leaves it to redelivery.
	if err := g.recoverInFlight(ctx, ps, jobs); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errRestart) {
			return err
		}
		g.log.Error().Err(err).Int("partition", ps.p).Msg("recovery of in-flight messages failed; they are decided on redelivery")
	}
	src, err := g.newFairSource(ctx, ps)
	if err != nil {
		return fmt.Errorf("gateway: partition %d consumers: %w", ps.p, err)
	}
	// Stopped before the acker drains (defers run last-in first-out).
	defer src.stop()
	// The next batch is fetched and its stateless gates run while this
	// one goes through the ledger and policy, and this one's synced
	// commit runs while the next is decided (completer, below): the
	// ledger and policy phases are serial, and on a few cores the
	// verification of the next batch and the fsync of the previous one
	// fill the gaps. One batch waits ready at most, handed over when the
	// decider asks (want), so in flight are: one in the acker, one queued
	// for it, one committing or publishing, one being decided, one
	// verified — MaxAckPending is five batches.
	want := make(chan struct{})
	ready := make(chan prepared)
	var offering atomic.Bool // a verified batch waits for want (prefetch)
	pctx, stop := context.WithCancel(ctx)
	prefetched := make(chan struct{})
	go func() {
		defer close(prefetched)
		defer close(ready)
		g.prefetch(pctx, src, want, ready, &offering)
	}()
	// Stopped before src (defers run last-in first-out): a batch verified
	// but never decided goes back to the server.
	defer func() {
		stop()
		for p := range ready {
			g.nakAll(p.items)
		}
		<-prefetched
	}()
	// The completer publishes decided batches in order once each is
	// durable. After a restart error (journal, lease) nothing more is
	// published: the batches decided since are naked.
	decided := make(chan *decidedBatch)
	failed := make(chan error, 1)
	completed := make(chan struct{})
	go func() {
		defer close(completed)
		var restart error
		for d := range decided {
			if restart != nil {
				g.handBack(d.items)
				d.result = restart
				close(d.completed)
				continue
			}
			err := g.completeBatch(ctx, ps, d, jobs)
			d.result = err
			close(d.completed)
			if err != nil {
				if errors.Is(err, errRestart) {
					restart = err
				}
				select {
				case failed <- err:
				default: // one report at a time is enough to back off or stop
				}
			}
		}
	}()
	// Stopped first: the batch being completed finishes.
	defer func() {
		close(decided)
		<-completed
	}()
	backoff := 100 * time.Millisecond
	// failure reports whether the loop must return after err, with what.
	failure := func(err error) (bool, error) {
		if ctx.Err() != nil {
			return true, nil
		}
		if errors.Is(err, errRestart) {
			g.metrics.PartitionEvents.WithLabelValues("restarted").Inc()
			return true, err
		}
		g.log.Error().Err(err).Msg("batch failed; messages will be redelivered")
		select {
		case <-ctx.Done():
			return true, nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
		return false, nil
	}
	// A decided batch of at least an eighth of a full one whose successor
	// is already verified and waiting (the prefetcher is offering it) is
	// committed in the background and left to the completer,
	// and the successor is decided while it syncs. Otherwise the batch is
	// committed, published and handed to the acker here, as soon as the
	// batch before it is: below saturation batches are small, and
	// overlapping them raised the median latency at 3,000 msgs/s by
	// about half a millisecond (back-to-back fsyncs, goroutine hand-offs)
	// for no gain in throughput.
	overlapFrom := max(g.cfg.Consumer.Batch/8, 1)
	var last *decidedBatch // with the completer
	asked := false
	for {
		select {
		case err := <-failed:
			if end, err := failure(err); end {
				return err
			}
		default:
		}
		if !asked {
			select {
			case want <- struct{}{}:
			case <-prefetched:
				return nil
			case err := <-failed:
				if end, err := failure(err); end {
					return err
				}
				continue
			}
		}
		asked = false
		p, ok := <-ready
		if !ok {
			return nil
		}
		d, err := g.decideBatch(ps, p)
		if err != nil {
			if end, err := failure(err); end {
				return err
			}
			continue
		}
		backoff = 100 * time.Millisecond
		if len(d.items) >= overlapFrom && offering.Load() {
			// The prefetcher offers a verified batch: it takes want as
			// soon as it is back in its select, whatever the scheduler
			// did meanwhile.
			select {
			case want <- struct{}{}:
				asked = true
				d.commit = d.b.Start()
				decided <- d
				last = d
				continue
			case <-prefetched: // stopping: commit here, as below
			}
		}
		if last != nil {
			// Started, not committed here: an open batch holds the
			// ledger's batch lock, which the acker may need (to narrow a
			// partly stored outcome) before the completer can hand it
			// the batch ahead; waiting for that batch while holding the
			// lock would deadlock.
			d.commit = d.b.Start()
			<-last.completed
			if errors.Is(last.result, errRestart) {
				// Decided on the writes of a batch that was never
				// published: the partition restarts (its ledger is
				// rebuilt from the journal), and this batch goes back too.
				_ = d.commit.Wait()
				g.handBack(d.items)
				_, err := failure(last.result)
				return err
			}
			last = nil
		} else {
			d.err = d.b.Commit()
		}
		if err := g.completeBatch(ctx, ps, d, jobs); err != nil {
			if end, err := failure(err); end {
				return err
			}
		}
	}
}

// processBatch decides every message of a batch and makes the outcome
// durable in this order, before it returns: gates → ledger commit (one
// fsync) → publish → hand to the acker (wait for every PubAck → ack
// ingress). Nothing is acked before its outputs are durable; a failure
// naks and the redelivery re-emits the recorded outcome.
func (g *Gateway) processBatch(ctx context.Context, ps *partState, p prepared, jobs chan<- ackJob) error {
	d, err := g.decideBatch(ps, p)
	if err != nil {
		return err
	}
	d.err = d.b.Commit()
	return g.completeBatch(ctx, ps, d, jobs)
}

// decidedBatch is a decided batch whose ledger writes are staged
// (decideBatch); once they are committed, in the background (commit) or
// not (err), completeBatch publishes its outputs.
type decidedBatch struct {
	items  []*item
	b      *ledgerBatch
	commit *store.Commit // nil when committed on the decider's goroutine
	err    error         // that commit's result
	wall   time.Time     // when it was fetched, for metrics
	phase  time.Time     // when the commit started
	// completed is closed once the batch is published or given up,
	// with result set (the completer's).
	completed chan struct{}
	result    error
	// held: the batch holds a request for an approver, judged under
	// the revocations of generation revGen (sweepAfter).
	held   bool
	revGen uint64
}

// decideBatch takes a prepared batch through the ledger, catalog and
// budget gates, policy, signing and the ledger records, leaving its
// ledger batch open for the caller to commit (Start or Commit). After a
// Start the next batch may be decided while it syncs: the ledger hands it
// these writes. The outputs wait for completeBatch.
func (g *Gateway) decideBatch(ps *partState, p prepared) (*decidedBatch, error) {
	items, now, m := p.items, p.at, g.metrics
	if now.IsZero() {
		// The batch is judged and decided as of now, taken once the
		// batch is the decider's: every message of it had arrived by
		// then, however long the batch waited for the decider or grew
		// meanwhile (prefetch), and every gate of every message (the
		// clock rules of the stateless gates, the ledger, budgets,
		// policy, the tokens' times, the hold's request time) sees one
		// instant.
		now = g.clock()
	}
	if g.hooks != nil {
		g.hookSeqs(items, g.hooks.batchStart)
	}
	revGen := g.revocations.Generation() // before judge reads them
	for _, it := range items {
		g.judge(it, now)
	}
	if g.hooks != nil {
		g.hookSeqs(items, g.hooks.judged)
	}
	phase := time.Now()
	lap := func(gate string) {
		t := time.Now()
		m.GateSeconds.WithLabelValues(gate).Observe(t.Sub(phase).Seconds())
		phase = t
	}
	// Ledger, catalog and budget gates, in stream order.
	b := g.newBatch(ps)
	fail := func(err error) (*decidedBatch, error) {
		b.Close()
		g.handBack(items)
		metrics.Since(m.BatchSeconds, p.wall)
		return nil, err
	}
	r := g.rules.Load()
	var kept []*item // the batch's messages but those set aside; nil while none is
	for i, it := range items {
		it.rules = r
		err := g.ledgerGate(b, r.cat, it, now)
		if errors.Is(err, errUnreadableRecord) && b.Err() == nil {
			// Nothing of it is staged: it alone goes back (setAside),
			// and its batch-mates are decided without it. A batch that
			// failed (its ledger closed, or not reopened after a failed
			// write) fails every lookup: that concerns them all.
			m.LedgerErrors.Inc()
			g.setAside(it, err)
			if kept == nil {
				kept = append(make([]*item, 0, len(items)-1), items[:i]...)
			}
			continue
		}
		if err != nil {
			m.LedgerErrors.Inc()
			if kept != nil {
				items = append(kept, items[i:]...) // those set aside are back already
			}
			return fail(fmt.Errorf("gateway: ledger: %w", err))
		}
		if kept != nil {
			kept = append(kept, it)
		}
	}
	if kept != nil {
		items = kept
	}
	lap("ledger")
	// Policy, opening, re-sealing and signing, in parallel.
	g.parallel(items, func(it *item) {
		switch {
		case it.decided():
		case it.heldItem != nil:
			g.decideApproval(it, now)
		case it.request != nil:
			g.decideResponse(it, now)
		default:
			g.decide(it, now)
		}
	})
	// Outputs and ledger records, then one signature for every decision
	// token of the batch, then one durable commit.
	for _, it := range items {
		if err := g.finish(b, it, now); err != nil {
			return fail(err)
		}
	}
	lap("decide")
	if err := g.signTokens(items); err != nil {
		return fail(err)
	}
	lap("sign")
	if err := g.recordOutcomes(b, items); err != nil {
		return fail(err)
	}
	held := slices.ContainsFunc(items, func(it *item) bool { return !it.reemit && it.route == store.RouteApproval })
	return &decidedBatch{items: items, b: b, wall: p.wall, phase: phase, completed: make(chan struct{}), held: held, revGen: revGen}, nil
}

// setAside hands back it, a message whose own ledger record could not
// be read (errUnreadableRecord), alone, undecided, and says so. It is
// not denied: a recorded outcome that does not read may stand for
// outputs already stored, and a denial would end the message a second
// time. Redelivered, it is looked up again; while its record stays
// unreadable it stays unacknowledged (fail closed), holding its
// consumer's ack floor, and is logged at every delivery.
func (g *Gateway) setAside(it *item, err error) {
	g.log.Error().Err(err).Uint64("ingress_seq", it.seq).Uint64("delivery", it.delivery).
		Msg("a message's ledger record cannot be read; it is handed back undecided and its batch decided without it")
	g.handBack([]*item{it})
}

// completeBatch waits for a decided batch's commit, journals it in
// scale-out mode, publishes its outputs and hands it to the acker.
// Nothing is published before the batch is durable; a failure hands it
// back (handBack; the redelivery re-emits what was recorded, or decides
// again).
func (g *Gateway) completeBatch(ctx context.Context, ps *partState, d *decidedBatch, jobs chan<- ackJob) error {
	items, m := d.items, g.metrics
	defer metrics.Since(m.BatchSeconds, d.wall)
	if d.commit != nil {
		d.err = d.commit.Wait()
	}
	if err := d.err; err != nil {
		g.handBack(items)
		m.LedgerErrors.Inc()
		if ps.epoch != 0 {
			// A failed commit may still be durable (the log written, its
			// sync failed): the ledger would then hold what the journal
			// never got, and a redelivery, finding the recorded outcome,
			// would re-emit it unjournaled. As after a failed append, the
			// tenure restarts from the journal.
			return fmt.Errorf("%w: ledger commit: %w", errRestart, err)
		}
		return fmt.Errorf("gateway: ledger commit: %w", err)
	}
	phase := time.Now()
	m.GateSeconds.WithLabelValues("commit").Observe(phase.Sub(d.phase).Seconds())
	if ps.epoch != 0 {
		// Scale-out: the journal, not this disk, is what the next owner
		// of the partition will know. Nothing is published before it has
		// the batch; a failed append leaves the ledger ahead of the
		// journal, so the tenure restarts from the journal.
		err := g.appendJournal(ctx, ps.p, d.b.recs)
		metrics.Since(m.JournalSeconds, phase)
		if err != nil {
			g.handBack(items)
			return fmt.Errorf("%w: journal append: %w", errRestart, err)
		}
		m.GateSeconds.WithLabelValues("journal").Observe(time.Since(phase).Seconds())
		if !g.stillOwned(ps) {
			g.handBack(items)
			return fmt.Errorf("%w: lease lost before publishing", errRestart)
		}
	} else if !g.stillOwned(ps) {
		// A single instance whose leases lapsed: scaled-out members may
		// decide from now on, so nothing more is published.
		g.handBack(items)
		return fmt.Errorf("gateway: partition %d: %w before publishing", ps.p, lease.ErrLost)
	}
	g.sweepAfter(d)
	g.reportDecided(items)
	g.stats.Batches.Add(1)
	job := ackJob{items: items, pubs: g.publishOutputs(items)}
	// Hand the batch to the acker even when ctx is cancelled: the batch
	// in hand always finishes (graceful shutdown).
	jobs <- job
	return nil
}

// sweepAfter requests a sweep of the held requests (sweepHolds) when
// the revocations changed while d, which holds requests for approvers,
// was decided and committed: the change's own sweep may have read the
// holds before d's were written, and a request whose credential the
// change revokes is withdrawn at once, not left for an approver. Its
// holds are written by now (the ledger committed, or, scaled out, the
// shared bucket written before the journal append).
func (g *Gateway) sweepAfter(d *decidedBatch) {
	if d.held && g.revocations.Generation() != d.revGen {
		g.requestSweep()
	}
}

// signTokens signs every decision token of the batch with one signature
// (a Merkle tree over them, package decision), once finish has made
// every route final: the deliveries' and replies' tokens, which it writes
// into their outputs, and the decision notices', whose documents it
// completes and adds to their messages' outputs. A message finish denied
// after its delivery was prepared (a conflicting hold, a second answer)
// gets no delivery token: that one is dropped unsigned.
func (g *Gateway) signTokens(items []*item) error {
	var slots []unsignedToken
	for _, it := range items {
		if !it.reemit && it.route != store.RouteDeny {
			slots = append(slots, it.unsigned...)
		}
		it.unsigned = nil
	}
	outputs := len(slots)
	for _, it := range items {
		slots = append(slots, it.notices...)
	}
	if len(slots) == 0 {
		return nil
	}
	ps := make([]*decision.Pending, len(slots))
	for i, s := range slots {
		ps[i] = s.p
	}
	signed, err := decision.SignPending(g.signer, ps)
	if err != nil {
		return fmt.Errorf("gateway: sign decision tokens: %w", err)
	}
	for i, s := range slots {
		switch {
		case i >= outputs:
			buf := make([]byte, 0, notice.DocOverhead+signed.TokenLen(i)+len(s.m.Data))
			doc, err := notice.AppendDocWith(buf, func(b []byte) []byte { return signed.AppendToken(b, i) }, s.m.Data)
			if err != nil {
				return fmt.Errorf("gateway: decision notice: %w", err)
			}
			s.m.Data = doc
		case s.doc == nil:
			s.m.Header.Set(header.Decision, signed.Token(i).Reveal())
		default:
			// The token is written into the document: no copy of its own.
			buf := make([]byte, 0, s.doc.Size()+signed.TokenLen(i))
			if s.m.Data, err = s.doc.AppendWith(buf, func(b []byte) []byte { return signed.AppendToken(b, i) }); err != nil {
				return fmt.Errorf("gateway: delivery: %w", err)
			}
		}
	}
	for _, it := range items {
		for _, s := range it.notices {
			it.outputs = append(it.outputs, s.m)
		}
		it.notices = nil
	}
	return nil
}

// redecidedEnv is, scaled out, the envelope to look up the holds of a
// message decided again (redelivered, or recovered: delivery 0) by; nil
// otherwise. One refused as oversized may have been held under a larger
// max_body_bytes before a crash, and an operator's re-submission refused
// as replay_refused (its authorization expired, or its operator no longer
// stands) may have been held before its authorization was judged again:
// their body is read again whatever the limit is now. That envelope is
// not its own (nothing in it is verified) and is used only to name the
// holds the same ingress message wrote, which it was verified to do when
// it wrote them.
func (g *Gateway) redecidedEnv(it *item) *envelope.Body {
	if g.kvh == nil || it.delivery == 1 {
		return nil
	}
	if it.env != nil {
		return it.env
	}
	if r := reason.Of(it.denial); (r != reason.Oversized && r != reason.ReplayRefused) || len(it.body) == 0 {
		return nil
	}
	env, err := envelope.Parse(it.body, envelope.Limits{MaxBytes: len(it.body)})
	if err != nil {
		return nil
	}
	return env
}

// retireReleasedResponse removes the outstanding-response record a grant
// at seq put for the request it released, named by the hold it answers
// (env.Target), if that grant put it: the grant is decided again after
// its instance died and does not release the request this time. The
// hold outlives the first decision (taken by seq, which only this grant
// gives back or ends), so it still names the requester. Scaled out only.
func (g *Gateway) retireReleasedResponse(b *ledgerBatch, env *envelope.Body, seq uint64) error {
	h, _, err := g.kvh.get(holdKey(holdID(env.Tenant, env.Target)))
	if errors.Is(err, errBadValue) || (err == nil && h == nil) {
		return nil // no hold: this grant released nothing
	}
	if err != nil {
		return err
	}
	var hd held
	if json.Unmarshal(h.Value, &hd) != nil || hd.Agent == "" {
		return nil // not a hold a grant can have released
	}
	_, err = g.kvh.retire(b, responseID(env.Tenant, hd.Agent, env.Target), seq)
	return err
}
