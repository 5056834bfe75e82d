package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentgw/agentgw/gateway/budget"
	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/exchange"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/metrics"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/store/journal"
)

// Gateway is one decision pipeline. Create it with New, run it with Run,
// release it with Close. Run may be called once.
type Gateway struct {
	cfg   Config
	fresh envelope.Freshness // cfg.Limits.Freshness()
	log   zerolog.Logger
	clock func() time.Time

	nc    *nats.Conn
	ownNC bool
	js    jetstream.JetStream
	pub   *pubAcks // publishes outputs and matches their PubAcks

	ledger      *store.Ledger // single-instance mode; nil when scaled out
	scale       *scaleOut     // scale-out mode; nil otherwise
	sole        *soleHold     // single-instance mode: every partition's lease, once Run claimed it
	holds       holdStore     // ledgerHolds, or kvh when scaled out
	kvh         *kvHolds
	verifier    *identity.Verifier
	revocations *identity.Revocations
	signer      *identity.Signer
	box         *identity.Box
	// xbox is the same curve key as box, for the token exchange's xkey
	// proofs: its cache of peers is filled by the keys requesters name,
	// which then never evict the pipeline's. Nil without an exchange.
	xbox *identity.Box
	// accepted are keys.accepted_curves, which open, and seal only
	// replies to what was sealed to them (curves.go);
	// xaccepted the same keys for the exchange, as xbox is to box.
	accepted, xaccepted []*identity.Box
	// acceptedOpens counts the opens with each of accepted, found once
	// at start rather than by label on every open.
	acceptedOpens map[*identity.Box]prometheus.Counter
	// rules are the catalog and policy set in force, swapped together.
	rules atomic.Pointer[rules]
	// reloadMu makes Reload calls (SIGHUP, the file watch) one at a time.
	reloadMu sync.Mutex
	// loadedPrint is the fingerprint of the files New loaded, digested
	// as New read them (watchLoop's first comparison).
	loadedPrint [32]byte
	budgets     *budget.Budgets
	workers     int
	expireEvery time.Duration
	// approvalReading is the approval-queue gauges' shared reading
	// (approvalGauges).
	approvalReading struct {
		mu  sync.Mutex
		at  time.Time
		n   int
		age time.Duration
	}
	sweep     chan struct{} // requests a sweep of held requests (sweepHolds)
	tracer    trace.Tracer
	tracing   bool // a real tracer provider was given: spans are recorded
	agentKeys agentKeys
	ready     chan struct{}
	// serving is true from the end of Run's setup until Run returns;
	// conn is the connection once Run has it (Readiness, the gauges).
	serving atomic.Bool
	conn    atomic.Pointer[nats.Conn]

	stats Stats
	// handedBack keeps the decisions of batches handed back after they
	// were decided, for the redelivery that re-emits one (reportDecided).
	handedBack handedBackReports
	metrics    *metrics.Gateway
	mserver    atomic.Pointer[metrics.Server]
	pending    atomic.Int64 // consumer num_pending, refreshed by the prune loop
	floors     ackFloors    // each ingress consumer's own ack floor, refreshed by the prune loop

	// ledgerFS, when set by a test, is the ledger's filesystem (a Pebble
	// vfs that injects failures); nil is the real disk.
	ledgerFS vfs.FS

	// beforeAck, when set by a test, runs after the outputs are durable
	// and before the ingress acks; an error aborts the batch there, as a
	// crash at that point would.
	beforeAck func() error
	// beforeRetire, when set by a test, runs as retireJournal starts; an
	// error fails it there, as a NATS request that timed out would.
	beforeRetire func() error
	// journalCut, when set by a test, is told a batch's journal records
	// before they are appended and answers how many land: fewer than all,
	// and the append stops there and fails, as one whose connection
	// dropped between two journal messages would.
	journalCut func(recs []journal.Record) int
	// hooks, when set by a test, are told where the batch pipeline is.
	hooks *pipelineHooks
}

// Stats are running counters, safe for concurrent reads.
type Stats struct {
	Decided      atomic.Uint64
	Allowed      atomic.Uint64
	Denied       atomic.Uint64
	Held         atomic.Uint64
	Reemitted    atomic.Uint64
	Recovered    atomic.Uint64 // in-flight messages decided or re-emitted at a partition's start
	PayloadOpens atomic.Uint64
	Batches      atomic.Uint64
}

// Option injects a collaborator.
type Option func(*Gateway)

// WithClock replaces time.Now for every decision.
func WithClock(now func() time.Time) Option { return func(g *Gateway) { g.clock = now } }

// WithLogger sets the logger; the default discards.
func WithLogger(l zerolog.Logger) Option { return func(g *Gateway) { g.log = l } }

// WithMetrics uses m instead of a private set of metrics (tests read it).
func WithMetrics(m *metrics.Gateway) Option { return func(g *Gateway) { g.metrics = m } }

// WithConn uses an existing NATS connection (the embedded server's, or a
// test's) instead of dialling cfg.NATS. The caller keeps ownership.
func WithConn(nc *nats.Conn) Option { return func(g *Gateway) { g.nc = nc } }

// New loads keys, catalog, policies and revocations and opens the ledger.
// It does not touch NATS; Run does.
func New(cfg Config, opts ...Option) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, fresh: cfg.Limits.Freshness(), log: zerolog.Nop(), clock: time.Now, expireEvery: time.Second, ready: make(chan struct{}), tracer: noopTracer,
		sweep: make(chan struct{}, 1)}
	for _, o := range opts {
		o(g)
	}
	if g.metrics == nil {
		g.metrics = metrics.New()
	}
	g.workers = cfg.Consumer.Workers
	if g.workers == 0 {
		g.workers = runtime.GOMAXPROCS(0)
	}
	if err := g.loadKeys(); err != nil {
		return nil, err
	}
	// Digested before they are read: a change after this is reloaded
	// at the watch's first tick (watchLoop).
	files := g.filesPrint()
	g.revocations = identity.NewRevocations()
	if err := g.loadRevocations(); err != nil {
		return nil, err
	}
	v, err := identity.NewVerifier(identity.VerifierConfig{
		Audience:    cfg.Audience,
		Skew:        cfg.Limits.Skew,
		MaxLifetime: cfg.Limits.MaxCredentialLifetime,
		Trust:       cfg.trust(),
		CacheSize:   16384,
	}, g.revocations)
	if err != nil {
		return nil, fmt.Errorf("gateway: verifier: %w", err)
	}
	g.verifier = v
	cat, err := catalog.Load(cfg.Catalog)
	if err == nil {
		err = cfg.checkApprovalTTLs(cat)
	}
	if err != nil {
		return nil, err
	}
	set, err := policy.Load(cfg.Policies...)
	if err != nil {
		return nil, err
	}
	g.rules.Store(&rules{cat: cat, pol: set})
	g.loadedPrint = joinPrints(cat.Digest, files)
	g.budgets = budget.New(cfg.Budgets)
	g.holds = ledgerHolds{}
	if cfg.ScaleOut != nil {
		g.scale = &scaleOut{running: map[int]*partRun{}, live: map[int]*partState{}}
		g.kvh = &kvHolds{}
		g.holds = g.kvh
		if err := g.retireSingleLedger(); err != nil {
			return nil, err
		}
	} else {
		led, err := store.Open(filepath.Join(cfg.DataDir, "ledger"), g.ledgerOptions())
		if err != nil {
			return nil, fmt.Errorf("gateway: ledger: %w", err)
		}
		g.ledger = led
	}
	sum := func(stat func(store.Stats) float64) func(float64, store.Stats) float64 {
		return func(n float64, s store.Stats) float64 { return n + stat(s) }
	}
	g.ledgerGauge("agentgw_ledger_generations", "Live ledger generations (summed over held partitions).",
		sum(func(s store.Stats) float64 { return float64(s.Generations) }))
	g.ledgerGauge("agentgw_ledger_entries", "Approximate live replay and idempotency entries (summed over held partitions).",
		sum(func(s store.Stats) float64 { return float64(s.ApproxEntries) }))
	g.ledgerGauge("agentgw_ledger_disk_bytes", "Ledger disk space (summed over held partitions).",
		sum(func(s store.Stats) float64 { return float64(s.DiskBytes) }))
	g.ledgerGauge("agentgw_ledger_l0_sublevels", "Depth of the ledger's L0, the deepest over held partitions: compacted at 8, writes stall at 48.",
		func(n float64, s store.Stats) float64 { return max(n, float64(s.L0Sublevels)) })
	g.metrics.GaugeFunc("agentgw_approvals_pending", "Requests held for an approver now (approval queue depth).", func() float64 {
		n, _ := g.approvalGauges()
		return float64(n)
	})
	g.metrics.GaugeFunc("agentgw_approval_oldest_seconds", "Age of the oldest request held for an approver.", func() float64 {
		_, age := g.approvalGauges()
		return age.Seconds()
	})
	tenants := []string{UnroutableTenant}
	for t := range cfg.Tenants {
		tenants = append(tenants, t)
	}
	g.metrics.Preset(tenants)
	g.registerHealth()
	g.metrics.GaugeFunc("agentgw_consumer_pending_messages", "Ingress messages not yet delivered to the gateway (consumer lag).", func() float64 { return float64(g.pending.Load()) })
	return g, nil
}

func (c *Config) trust() map[string][]string {
	m := make(map[string][]string, len(c.Tenants))
	for name, t := range c.Tenants {
		m[name] = t.Issuers
	}
	return m
}

// warnLooseKey logs a warning when the secret key file at path grants its
// group or others any access (identity.LooseMode).
func (g *Gateway) warnLooseKey(what, path string) {
	if mode, loose := identity.LooseMode(path); loose {
		g.log.Warn().Str("key", what).Str("file", identity.SafePath(path)).Str("mode", fmt.Sprintf("%04o", mode)).
			Msg("a secret key file is open to its group or others: chmod 600 it")
	}
}

func (g *Gateway) loadKeys() error {
	g.warnLooseKey("keys.signing", g.cfg.Keys.Signing)
	g.warnLooseKey("keys.curve", g.cfg.Keys.Curve)
	for _, f := range [][2]string{{"nats.creds", g.cfg.NATS.Creds}, {"nats.nkey", g.cfg.NATS.NKey}, {"nats.tls.key", g.cfg.NATS.TLS.Key}} {
		if f[1] != "" {
			g.warnLooseKey(f[0], f[1])
		}
	}
	kp, err := identity.ReadSeedFile(g.cfg.Keys.Signing)
	if err != nil {
		return fmt.Errorf("gateway: signing key: %w", err)
	}
	if g.signer, err = identity.NewSigner(kp); err != nil {
		return fmt.Errorf("gateway: signing key: %w", err)
	}
	ck, err := identity.ReadSeedFile(g.cfg.Keys.Curve)
	if err != nil {
		return fmt.Errorf("gateway: curve key: %w", err)
	}
	if g.box, err = identity.NewBox(ck); err != nil {
		return fmt.Errorf("gateway: curve key: %w", err)
	}
	if g.cfg.Exchange != nil {
		if g.xbox, err = identity.NewBox(ck); err != nil {
			return fmt.Errorf("gateway: curve key: %w", err)
		}
	}
	return g.loadAcceptedCurves()
}

// PublicKey is the gateway's signing key: consumers trust decision tokens
// signed by it.
func (g *Gateway) PublicKey() string { return g.signer.PublicKey() }

// CurveKey is the gateway's curve key: agents seal payloads to it.
func (g *Gateway) CurveKey() string { return g.box.PublicKey() }

// Stats returns the running counters.
func (g *Gateway) Stats() *Stats { return &g.stats }

// Policy returns the policy set in force.
func (g *Gateway) Policy() *policy.Set { return g.rules.Load().pol }

// Run connects (unless WithConn), creates or updates the streams and
// consumes until ctx is cancelled, then finishes the batch in hand.
func (g *Gateway) Run(ctx context.Context) error {
	// The listener comes first: /healthz and /metrics answer, and
	// /readyz says not ready, while the connection and the streams are
	// being set up.
	if addr := g.cfg.Metrics.Listen; addr != "" {
		ms, err := metrics.Listen(addr, g.metrics, g.Readiness)
		if err != nil {
			return fmt.Errorf("gateway: metrics listener: %w", err)
		}
		g.mserver.Store(ms)
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = ms.Close(sctx)
		}()
	}
	if g.nc == nil {
		nc, err := Connect(g.cfg.NATS, "agentgw-gateway")
		if err != nil {
			return err
		}
		g.nc, g.ownNC = nc, true
		// Asynchronous errors (a refused subscription, a permission
		// violation) would otherwise only reach stderr.
		nc.SetErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := g.log.Error().Err(err)
			if sub != nil {
				ev = ev.Str("subscription", sub.Subject)
			}
			ev.Msg("nats asynchronous error")
		})
	}
	// Every output must fit the server's max_payload, or its message
	// never ends: refused here, before anything is consumed.
	if err := checkOutputRoom(g.cfg.Limits.MaxBodyBytes, g.nc.MaxPayload()); err != nil {
		return err
	}
	js, err := jetstream.New(g.nc) // outputs go through pubAcks, not its async publisher
	if err != nil {
		return fmt.Errorf("gateway: jetstream: %w", err)
	}
	g.js = js
	if g.pub, err = newPubAcks(g.nc); err != nil {
		return err
	}
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := EnsureStreams(setupCtx, js, g.cfg.Streams, g.cfg.Consumer.Partitions); err != nil {
		return err
	}
	if g.scale != nil {
		if err := g.ensureJournal(setupCtx); err != nil {
			return err
		}
	} else {
		if err := g.claimSole(setupCtx); err != nil {
			return err
		}
		defer g.endSole()
	}
	consumers := make([]jetstream.Consumer, 0, g.cfg.Consumer.Partitions)
	for p := range g.cfg.Consumer.Partitions {
		c, err := js.CreateOrUpdateConsumer(setupCtx, StreamIngress, consumerConfig(g.cfg.Consumer, p))
		if err != nil {
			return fmt.Errorf("gateway: consumer for partition %d: %w", p, err)
		}
		consumers = append(consumers, c)
	}
	if err := g.checkTenantConsumers(setupCtx); err != nil {
		return err
	}
	tenants, err := g.ensureTenantConsumers(setupCtx)
	if err != nil {
		return err
	}
	if g.ledger != nil && g.ledger.New() {
		if err := g.checkNewLedger(setupCtx, consumers, tenants); err != nil {
			return err
		}
	}
	if g.scale == nil {
		// Not bound by setupCtx: a journal of many records takes a while.
		if err := g.retireJournal(ctx, consumers); err != nil {
			return err
		}
	}
	if g.scale != nil {
		if err := g.setupScaleOut(setupCtx, consumers, tenants); err != nil {
			return err
		}
	}
	if x := g.cfg.Exchange; x != nil {
		xc := *x
		if xc.Audience == "" {
			xc.Audience = g.cfg.Audience
		}
		issuers, err := exchange.LoadIssuers(xc, g.cfg.Path)
		if err != nil {
			return err
		}
		for _, t := range slices.Sorted(maps.Keys(xc.IssuerSeeds)) {
			g.warnLooseKey("exchange.issuer_seeds."+t, g.cfg.Path(xc.IssuerSeeds[t]))
		}
		stop, err := exchange.Start(ctx, g.nc, xc, issuers, g.xbox, exchange.WithTrust(g.cfg.trust()), exchange.WithRevocations(g.revocations), exchange.WithClock(g.clock), exchange.WithLogger(g.log),
			exchange.WithAcceptedKeys(func(key string) { g.metrics.AcceptedCurveOpens.WithLabelValues(key).Inc() }, g.xaccepted...))
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		defer func() { _ = stop() }()
	}
	g.conn.Store(g.nc)
	g.serving.Store(true)
	defer g.serving.Store(false)
	close(g.ready)
	g.log.Info().Str("gateway", g.PublicKey()).Str("curve", g.CurveKey()).Strs("accepted_curves", g.acceptedCurveKeys()).
		Int("partitions", len(consumers)).Str("policy_version", g.rules.Load().pol.Version()).
		Msg("gateway running")
	return g.consume(ctx, consumers, tenants)
}

// MetricsAddr is the metrics listener's address, "" when not serving.
func (g *Gateway) MetricsAddr() string {
	ms := g.mserver.Load()
	if ms == nil {
		return ""
	}
	return ms.Addr()
}

// Metrics returns the gateway's metrics.
func (g *Gateway) Metrics() *metrics.Gateway { return g.metrics }

// Ready is closed once the streams and consumers exist and decisions
// are being made.
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// Close releases the ledger and the connection it dialled.
func (g *Gateway) Close() error {
	var errs []error
	g.pub.close()
	if g.ownNC && g.nc != nil {
		if err := g.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, err)
		}
	}
	if g.ledger != nil {
		errs = append(errs, g.ledger.Close())
	}
	// Scale-out partitions close their ledgers when their tenure ends.
	return errors.Join(errs...)
}
