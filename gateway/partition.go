package gateway

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/store/journal"
	"github.com/agentgw/agentgw/store/lease"
)

// partState is what deciding one ingress partition needs: its consumer
// and the ledger its records go to. In single-instance mode every
// partition shares the gateway's ledger and epoch is 0. In scale-out mode
// each partition this instance holds has a ledger of its own, rebuilt
// from the journal when the lease was taken, and epoch is the lease's:
// every batch is journaled under it before anything is published.
type partState struct {
	p    int
	cons jetstream.Consumer // the partition's consumer (the catch-all with fair_tenants)
	// tenants are the per-tenant consumers with consumer.fair_tenants.
	tenants []tenantConsumer
	ledger  *store.Ledger
	epoch   uint64
	// abandon ends when the partition must stop at once (its lease is
	// lost): the acker then stops waiting and acks nothing. In
	// single-instance mode it never ends, so a shutdown finishes the
	// batch in hand.
	abandon context.Context
	// journalFrom bounds what a rebuilt ledger knows: the journal held
	// every record appended since then (journalFrom). Zero in
	// single-instance mode, whose ledger holds every outcome until its
	// message is acknowledged.
	journalFrom time.Time
	// lostBefore is set when the ledger certainly lacks records of
	// messages decided before it (a single instance's new ledger after
	// decisions, checkNewLedger; a journal that lost records,
	// journalLoss): it cannot tell such a message's copy from a first
	// sighting, and the ledger gate refuses what may have been decided
	// then (ledger_incomplete).
	lostBefore time.Time
}

// errRestart ends a partition's tenure: the ledger may hold writes the
// journal does not, so it is thrown away and rebuilt before the
// partition decides anything again.
var errRestart = errors.New("gateway: partition restarts from its journal")

// scaleOut is the state of scale-out mode (Config.ScaleOut).
type scaleOut struct {
	leases    *lease.Manager
	journal   *journal.Writer
	consumers []jetstream.Consumer
	tenants   [][]tenantConsumer

	mu      sync.Mutex
	running map[int]*partRun
	live    map[int]*partState
}

type partRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// runScaleOut takes part in the lease protocol until ctx ends: each
// partition this instance wins runs in its own goroutine until the lease
// is lost.
func (g *Gateway) runScaleOut(ctx context.Context) error {
	s := g.scale
	return s.leases.Run(ctx, func(p int, epoch uint64) {
		pctx, cancel := context.WithCancel(ctx)
		r := &partRun{cancel: cancel, done: make(chan struct{})}
		s.mu.Lock()
		s.running[p] = r
		s.mu.Unlock()
		g.metrics.PartitionEvents.WithLabelValues("acquired").Inc()
		go func() {
			defer close(r.done)
			g.runPartition(pctx, p, epoch)
		}()
	}, func(p int) {
		s.mu.Lock()
		r := s.running[p]
		delete(s.running, p)
		s.mu.Unlock()
		if r != nil {
			r.cancel()
			<-r.done
		}
		s.journal.Release(p)
		g.metrics.PartitionEvents.WithLabelValues("lost").Inc()
	})
}

// runPartition serves partition p under a lease of the given epoch until
// ctx ends (the lease is lost or the gateway stops). A tenure that fails
// (a journal append that did not land, a rebuild that could not finish)
// starts over from the journal; a newer epoch in the journal means the
// lease was superseded, and the partition waits for the lease manager to
// notice.
func (g *Gateway) runPartition(ctx context.Context, p int, epoch uint64) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := g.tenure(ctx, p, epoch)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, journal.ErrFenced) {
			g.log.Error().Err(err).Int("partition", p).Uint64("epoch", epoch).Msg("partition fenced by a newer owner; stopping it")
			<-ctx.Done()
			return
		}
		g.log.Error().Err(err).Int("partition", p).Msg("partition tenure ended; rebuilding from the journal")
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// tenure claims p's journal, rebuilds a fresh ledger from it and decides
// p's messages until ctx ends or a journal append fails.
func (g *Gateway) tenure(ctx context.Context, p int, epoch uint64) error {
	s := g.scale
	if err := s.journal.Claim(ctx, p, epoch); err != nil {
		return err
	}
	dir := filepath.Join(g.cfg.DataDir, fmt.Sprintf("p%d", p))
	// What an earlier tenure left may miss what other owners did since:
	// only the journal is authoritative.
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("gateway: partition %d ledger: %w", p, err)
	}
	led, err := store.Open(dir, g.ledgerOptions())
	if err != nil {
		return fmt.Errorf("gateway: partition %d ledger: %w", p, err)
	}
	defer led.Close()
	start := time.Now()
	n, from, lost, err := g.rebuild(ctx, led, p, g.scale.consumers[p])
	if err != nil {
		return err
	}
	g.log.Info().Int("partition", p).Uint64("epoch", epoch).Int("records", n).
		Time("journal_from", from).Dur("rebuild", time.Since(start)).Msg("partition acquired")
	if !lost.IsZero() {
		g.log.Warn().Int("partition", p).Time("lost_before", lost).
			Time("refuses_issued_before", lost.Add(g.fresh.Grace())).
			Time("refuses_idempotency_keys_until", lost.Add(g.fresh.Span())).
			Msg("the journal lost records (purged, or deleted and created again): what was decided before lost_before is unknown, and messages that may have been are denied ledger_incomplete")
	}
	// The partition's held requests were judged by whoever held them,
	// under the revocations of their time; a hold written before a
	// tenure ended (its batch journaled, never published) may have
	// missed the sweep of a revocation since. They are swept again.
	g.requestSweep()
	ps := &partState{p: p, cons: s.consumers[p], tenants: s.tenants[p], ledger: led, epoch: epoch, abandon: ctx, journalFrom: from, lostBefore: lost}
	s.mu.Lock()
	s.live[p] = ps
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.live, p)
		s.mu.Unlock()
	}()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = g.pruneLoop(pctx, []*partState{ps}) }()
	return g.consumePartition(pctx, ps)
}

// retireSingleLedger marks the ledger a single instance kept in this
// data directory New, if there is one: scaled out, other ledgers decide
// its partitions, so were it used again (the deployment run as one
// instance) it would lack what they decided, and a copy of a message
// they let through would pass. New, it is checked as a lost one is
// (checkNewLedger) before it decides anything. Opening it also refuses
// a ledger another process has open.
func (g *Gateway) retireSingleLedger() error {
	dir := filepath.Join(g.cfg.DataDir, "ledger")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	opt := g.ledgerOptions()
	opt.SkipVerify = true
	led, err := store.Open(dir, opt)
	if err != nil {
		return fmt.Errorf("gateway: single-instance ledger %s: %w", dir, err)
	}
	if led.New() {
		return led.Close()
	}
	if err := led.MarkNew(); err != nil {
		_ = led.Close()
		return fmt.Errorf("gateway: single-instance ledger %s: %w", dir, err)
	}
	g.log.Info().Str("ledger", dir).Msg("scaled out: the single-instance ledger is marked new, and is checked for what it lacks if it is used again")
	return led.Close()
}

// rebuild replays p's journal for the retention window into led, and
// returns the number of records, the time from which the journal held
// every record (journalFrom) and the time before which it certainly lost
// records (journalLoss; zero: none known lost).
func (g *Gateway) rebuild(ctx context.Context, led *store.Ledger, p int, consumer jetstream.Consumer) (int, time.Time, time.Time, error) {
	// The journal's times are its server's: the replay's start is
	// compared with them, and its age limit is counted by them. So the
	// window is counted back from the server's clock; the gateway's,
	// were it ahead, would start the replay after records it needs.
	pre, err := g.js.Stream(ctx, journal.Stream)
	if err != nil {
		return 0, time.Time{}, time.Time{}, fmt.Errorf("gateway: partition %d rebuild: journal stream: %w", p, err)
	}
	serverNow := serverTime(pre.CachedInfo())
	since := serverNow.Add(-g.cfg.journalMaxAge())
	b := led.NewBatch()
	defer func() { b.Close() }()
	n, inBatch := 0, 0
	err = journal.Replay(ctx, g.js, p, since, func(r journal.Record) error {
		if err := applyRecord(b, r); err != nil {
			return err
		}
		n++
		if inBatch++; inBatch == 4096 {
			if err := b.Commit(); err != nil {
				return err
			}
			b.Close()
			b, inBatch = led.NewBatch(), 0
		}
		return nil
	})
	if err != nil {
		return n, time.Time{}, time.Time{}, fmt.Errorf("gateway: partition %d rebuild: %w", p, err)
	}
	if err := b.Commit(); err != nil {
		return n, time.Time{}, time.Time{}, err
	}
	// Read after the replay: what aged out meanwhile only moves it later.
	st, err := g.js.Stream(ctx, journal.Stream)
	if err != nil {
		return n, time.Time{}, time.Time{}, fmt.Errorf("gateway: partition %d rebuild: journal stream: %w", p, err)
	}
	cons, err := consumer.Info(ctx)
	if err != nil {
		return n, time.Time{}, time.Time{}, fmt.Errorf("gateway: partition %d rebuild: consumer: %w", p, err)
	}
	marked, err := journal.LastLoss(ctx, g.js)
	if err != nil {
		return n, time.Time{}, time.Time{}, fmt.Errorf("gateway: partition %d rebuild: %w", p, err)
	}
	from := journalFrom(st.CachedInfo(), since)
	lost := journalLoss(st.CachedInfo(), cons, since)
	if !lost.IsZero() {
		// Created again: it holds nothing appended before its creation.
		from = later(from, st.CachedInfo().Created)
	}
	if !marked.IsZero() {
		lost = later(lost, marked.Add(journalClockMargin))
	}
	// An age limit edited below what the ledger needs (nats stream edit)
	// removes records a fresh message may still depend on; the gateway
	// sets it back at its next start.
	if a, need := st.CachedInfo().Config.MaxAge, g.cfg.journalWindow(); a > 0 && a < need {
		g.log.Error().Int("partition", p).Dur("max_age", a).Dur("needed", need).
			Msg("the journal stream's max age is shorter than the ledger needs: what it removed early is lost")
		lost = later(lost, serverTime(st.CachedInfo()).Add(-a).Add(journalClockMargin))
	}
	// The journal keeps a record for its age limit by the server's
	// clock, and the ledger needs it while its message is fresh by the
	// gateway's: a gateway whose clock is behind the server's by more
	// than the margin could take a copy of a message whose record aged
	// out for a first sighting. It refuses what may have been decided
	// before its rebuild, as after a loss, until its clock is set right.
	// Both read now: the stream info was read after the replay.
	if now, srv := g.clock(), serverTime(st.CachedInfo()); srv.Sub(now) > journalClockMargin {
		g.log.Error().Int("partition", p).Time("gateway_time", now).Time("server_time", srv).
			Msg("the gateway's clock is behind the NATS server's by more than a minute: messages that may have been decided before this rebuild are denied ledger_incomplete; set the clock right")
		lost = later(lost, now.Add(journalClockMargin))
	}
	return n, from, lost, nil
}

// serverTime is the server's time when it answered with info, or the
// local time if it gave none.
func serverTime(info *jetstream.StreamInfo) time.Time {
	if info.TimeStamp.IsZero() {
		return time.Now()
	}
	return info.TimeStamp
}

// journalFrom is the earliest time from which the journal held every
// record appended, as of info: the replay's start (since), or, once the
// stream has lost messages (age limit or purge: its first sequence is
// above 1), the time of its first message if that is later. A stream
// loses its oldest messages first, so every record appended after its
// first one is still there. A stream that had messages and has none left
// has lost everything appended before info was taken.
func journalFrom(info *jetstream.StreamInfo, since time.Time) time.Time {
	st := info.State
	from := time.Time{}
	switch {
	case st.Msgs == 0 && st.LastSeq > 0:
		from = info.TimeStamp
	case st.FirstSeq > 1:
		from = st.FirstTime
	}
	if from.After(since) {
		return from
	}
	return since
}

// journalLoss is the time before which the journal certainly lacks
// records, as of its info and the partition's ingress consumer's, or
// zero: the journal was created within the window (since), and more
// than journalGap after the consumer. The gateway creates the journal
// before the consumers (ensureJournal), so the journal was deleted and
// created again while the deployment went on, or scale-out was turned
// on for consumers a single instance had used: what was decided before
// is unknown. Deleting both is a fresh start (docs/scale-out.md:
// changing the partition count). The other losses (a purge) the
// journal's writers find and mark (journal.LastLoss). The time returned
// is the journal's creation plus journalClockMargin: a server's clock
// stamped it, the gateways' clocks judge the messages.
func journalLoss(journal *jetstream.StreamInfo, consumer *jetstream.ConsumerInfo, since time.Time) time.Time {
	created := journal.Created
	if !created.After(since) || !consumer.Created.Before(created.Add(-journalGap)) {
		return time.Time{}
	}
	return created.Add(journalClockMargin)
}

// checkNewLedger says, before a single instance decides anything, what
// its new ledger lacks: nothing on a new deployment, but when a consumer
// has delivered messages within a freshness span they may have been
// decided on a ledger that is gone (the data directory deleted, a
// container started without its volume, a scaled-out deployment run as
// one instance), and what was decided before now (and the clocks'
// minute) is unknown: the ledger gate refuses what may have been
// (ledger_incomplete), as after a journal's loss. The ledger keeps it
// across restarts. Deliveries, not the ack floor: a consumer created on
// a stream whose first messages are gone starts with its floor below
// its first message, and a crash can leave decided messages
// unacknowledged. Nothing decided longer ago than the span is fresh.
func (g *Gateway) checkNewLedger(ctx context.Context, consumers []jetstream.Consumer, tenants [][]tenantConsumer) error {
	all := slices.Clone(consumers)
	for _, ts := range tenants {
		for _, tc := range ts {
			all = append(all, tc.cons)
		}
	}
	var lost time.Time
	for _, c := range all {
		info, err := c.Info(ctx)
		if err != nil {
			return fmt.Errorf("gateway: ledger: consumer info: %w", err)
		}
		last := info.Delivered.Last
		if info.Delivered.Consumer > 0 && (last == nil || time.Since(*last) < g.fresh.Span()+journalClockMargin) {
			lost = g.clock().Add(journalClockMargin)
			g.log.Warn().Str("consumer", info.Name).Uint64("delivered", info.Delivered.Consumer).Time("lost_before", lost).
				Time("refuses_issued_before", lost.Add(g.fresh.Grace())).
				Time("refuses_idempotency_keys_until", lost.Add(g.fresh.Span())).
				Msg("the ledger is new but messages were decided before it: what was decided before lost_before is unknown, and messages that may have been are denied ledger_incomplete")
			break
		}
	}
	if err := g.ledger.SetLostBefore(lost); err != nil {
		return fmt.Errorf("gateway: ledger: %w", err)
	}
	return nil
}

// retireJournal runs before a single instance decides anything, when
// the deployment ran scaled out since this instance last started: the
// journal stream is there. What the scaled-out owners decided is in the
// journal, not in this ledger: each partition's records of the retention
// window are applied to it, as a scaled-out owner rebuilds its own
// ledger, so that a message they decided and did not acknowledge is
// re-emitted, not decided a second time, and a copy of one they let
// through is found. What the journal is known to have lost is recorded
// as the ledger's loss (ledger_incomplete), as a rebuild counts it.
// Then the journal is deleted: what this instance decides is not in it,
// and a scaled-out run after this one must not rebuild from it as if it
// were whole; that run creates it again, after the consumers, which
// every rebuild takes as a loss (journalLoss). The ledger has the records
// and its loss, synced, before the journal is deleted: a crash between
// the two does it again at the next start.
func (g *Gateway) retireJournal(ctx context.Context, consumers []jetstream.Consumer) error {
	if g.beforeRetire != nil {
		if err := g.beforeRetire(); err != nil {
			return err
		}
	}
	st, err := g.js.Stream(ctx, journal.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	} else if err != nil {
		return fmt.Errorf("gateway: journal: %w", err)
	}
	var lost time.Time
	// Records of partitions this configuration does not have (the
	// scaled-out run had more) cannot be replayed under a consumer of
	// theirs: what the journal holds up to its last record, and the
	// clocks' minute, is then lost.
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(journal.SubjectPrefix+"*"))
	if err != nil {
		return fmt.Errorf("gateway: journal: %w", err)
	}
	for subj := range info.State.Subjects {
		p, err := strconv.Atoi(strings.TrimPrefix(subj, journal.SubjectPrefix))
		if err == nil && p >= len(consumers) && !info.State.LastTime.IsZero() {
			lost = later(lost, info.State.LastTime.Add(journalClockMargin))
		}
	}
	records := 0
	for p, c := range consumers {
		n, _, l, err := g.rebuild(ctx, g.ledger, p, c)
		if err != nil {
			return err
		}
		records += n
		lost = later(lost, l)
	}
	if err := g.ledger.SetLostBefore(lost); err != nil {
		return fmt.Errorf("gateway: ledger: %w", err)
	}
	if !lost.IsZero() {
		g.log.Warn().Time("lost_before", lost).
			Time("refuses_issued_before", lost.Add(g.fresh.Grace())).
			Time("refuses_idempotency_keys_until", lost.Add(g.fresh.Span())).
			Msg("the journal of the scaled-out run had lost records: messages that may have been decided before lost_before are denied ledger_incomplete")
	}
	// Taking the records in can outlast the claim (the lease bucket
	// unreachable meanwhile): a scaled-out instance may then hold the
	// partitions and journal, and the journal stays.
	if !g.soleValid() {
		return fmt.Errorf("gateway: journal not deleted: %w", lease.ErrLost)
	}
	if err := g.js.DeleteStream(ctx, journal.Stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("gateway: journal: delete: %w", err)
	}
	g.log.Info().Int("records", records).Str("stream", journal.Stream).
		Msg("run as one instance after a scaled-out run: the journal's records are in this ledger, and the journal is deleted, so that a later scaled-out run counts what this instance decides as lost")
	return nil
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// journalGap is how much later than a partition's consumer the journal
// may be created and still count as created with it: the gateway creates
// the journal first, and the clocks of a cluster's servers may disagree
// by a little.
const journalGap = 5 * time.Second

// stillOwned reports whether ps may still publish and ack: in
// single-instance mode while it holds every partition's lease (claimSole),
// in scale-out mode while its partition's lease is valid.
func (g *Gateway) stillOwned(ps *partState) bool {
	if ps.epoch == 0 {
		return g.soleValid()
	}
	epoch, ok := g.scale.leases.Valid(ps.p)
	return ok && epoch == ps.epoch
}

// ledgerGauge registers a gauge that folds, from zero, the Stats of every
// ledger in use (one per held partition scaled out).
func (g *Gateway) ledgerGauge(name, help string, fold func(float64, store.Stats) float64) {
	g.metrics.GaugeFunc(name, help, func() float64 {
		var v float64
		for _, l := range g.ledgers() {
			v = fold(v, l.Stats())
		}
		return v
	})
}

// ledgers returns the ledgers in use (for gauges and read-only lookups).
func (g *Gateway) ledgers() []*store.Ledger {
	if g.scale == nil {
		return []*store.Ledger{g.ledger}
	}
	g.scale.mu.Lock()
	defer g.scale.mu.Unlock()
	out := make([]*store.Ledger, 0, len(g.scale.live))
	for _, ps := range g.scale.live {
		out = append(out, ps.ledger)
	}
	return out
}

// LedgerMemTable is the ledger's memtable size: at a few thousand
// messages a second, a few seconds of recorded outcomes (≈ 3 KiB each),
// which the outcome prune deletes before the memtable is flushed.
const LedgerMemTable = 32 << 20

// ledgerOptions returns the options every ledger of the gateway is opened
// with.
func (g *Gateway) ledgerOptions() store.Options {
	o := g.cfg.ledgerOptions()
	o.FS = g.ledgerFS
	o.Logger = g.log // Pebble's errors and the store's warnings (a ledger open to others)
	return o
}

// genWidth is the width of the ledger's generations, max_ttl + skew.
func (c Config) genWidth() time.Duration {
	return c.Limits.MaxTTL + c.Limits.Freshness().Grace()
}

// maxHeldIdem bounds how long after its decision a held request's
// idempotency key is kept (heldIdemUntil): the lesser of
// limits.approval_ttl, which the scale-out journal keeps records for,
// and three ledger generations (16.5 minutes at the defaults), so that
// a lookup probes at most about three more generations whatever
// approval_ttl is.
func (c Config) maxHeldIdem() time.Duration {
	return min(c.Limits.ApprovalTTL, 3*c.genWidth())
}

// ledgerOptions derives the ledger's options from the configuration. An
// entry's liveness comes from the freshness rule: Lookback is its Grace,
// so an entry stays live until the last instant a copy of its message is
// fresh (TestLedgerCoversFreshnessWindow). GenWidth, max_ttl + skew, only
// groups entries so that a lookup probes 2–3 generations; any width is
// correct.
func (c Config) ledgerOptions() store.Options {
	f := c.Limits.Freshness()
	o := store.Options{GenWidth: c.genWidth(), Lookback: f.Grace(), MemTableBytes: LedgerMemTable}
	if c.ScaleOut != nil {
		// Many partitions share the process: smaller ones each.
		n := c.Consumer.Partitions
		o.CacheBytes = max(8<<20, store.DefaultCacheBytes/int64(n))
		o.MemTableBytes = max(4<<20, LedgerMemTable/uint64(n))
	}
	return o
}

// journalConfig is the journal stream's configuration.
func (g *Gateway) journalConfig() journal.Config {
	return journal.Config{MaxAge: g.cfg.journalMaxAge(), Replicas: g.cfg.Streams.Replicas}
}

// ensureJournal creates or updates the journal stream. Run calls it
// before it creates the ingress consumers: a deployment's journal is
// never younger than its consumers, so one that is (journalLoss) was
// created again.
func (g *Gateway) ensureJournal(ctx context.Context) error {
	if err := journal.EnsureStream(ctx, g.js, g.journalConfig()); err != nil {
		return fmt.Errorf("gateway: journal: %w", err)
	}
	return nil
}

// setupScaleOut creates the lease bucket and readies the lease manager
// and the journal writer (the journal stream exists: ensureJournal).
func (g *Gateway) setupScaleOut(ctx context.Context, consumers []jetstream.Consumer, tenants [][]tenantConsumer) error {
	jc := g.journalConfig()
	w, err := journal.NewWriter(g.js, jc, journal.WithClock(g.clock))
	if err != nil {
		return fmt.Errorf("gateway: journal: %w", err)
	}
	lc := g.cfg.leaseConfig()
	if _, err := lease.EnsureBucket(ctx, g.js, lc); err != nil {
		return fmt.Errorf("gateway: leases: %w", err)
	}
	m, err := lease.New(g.js, lc, lease.WithLogger(g.log))
	if err != nil {
		return fmt.Errorf("gateway: leases: %w", err)
	}
	kv, err := ensureHoldsBucket(ctx, g.js, g.cfg.Streams.Replicas)
	if err != nil {
		return fmt.Errorf("gateway: holds bucket: %w", err)
	}
	g.kvh.kv = kv
	g.scale.leases, g.scale.journal, g.scale.consumers, g.scale.tenants = m, w, consumers, tenants
	return nil
}

// Partitions returns the partitions this instance decides now, sorted:
// every one in single-instance mode, those whose tenure is running (lease
// held, ledger rebuilt) in scale-out mode.
func (g *Gateway) Partitions() []int {
	if g.scale == nil {
		out := make([]int, g.cfg.Consumer.Partitions)
		for p := range out {
			out[p] = p
		}
		return out
	}
	g.scale.mu.Lock()
	out := make([]int, 0, len(g.scale.live))
	for p := range g.scale.live {
		out = append(out, p)
	}
	g.scale.mu.Unlock()
	slices.Sort(out)
	return out
}
