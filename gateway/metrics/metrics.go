package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agentgw/agentgw/subjects/reason"
)

// Gateway holds every metric the gateway updates. The zero value is not
// usable; create it with New.
type Gateway struct {
	Registry *prometheus.Registry

	Decisions     *prometheus.CounterVec   // tenant, route, reason
	DecisionDelay prometheus.Histogram     // ingress stored → decision made
	GateSeconds   *prometheus.HistogramVec // gate
	BatchSize     prometheus.Histogram
	BatchSeconds  prometheus.Histogram
	Redeliveries  prometheus.Counter
	Reemitted     prometheus.Counter
	Recovered     prometheus.Counter   // in-flight messages decided or re-emitted at a partition's start
	Recovery      prometheus.Histogram // reading and deciding a partition's in-flight messages at its start
	PayloadOpens  prometheus.Counter
	PublishFails  prometheus.Counter
	LedgerErrors  prometheus.Counter
	PruneRuns     *prometheus.CounterVec // result
	Approvals     *prometheus.CounterVec // event: requested, granted, denied, expired, withdrawn
	ApprovalAge   prometheus.Histogram   // requested → answered or expired
	PolicyReloads *prometheus.CounterVec // result
	BudgetDenials *prometheus.CounterVec // tenant
	OperatorReqs  *prometheus.CounterVec // kind: dry_run, replay; result
	// Scale-out mode only.
	PartitionEvents *prometheus.CounterVec // event: acquired, lost, restarted
	JournalSeconds  prometheus.Histogram   // one batch's journal append

	// AcceptedCurveOpens counts opens with a key of keys.accepted_curves,
	// by its public key.
	AcceptedCurveOpens *prometheus.CounterVec
	// IngressOldest backs agentgw_ingress_oldest_unacked_seconds.
	IngressOldest *Oldest
}

// Label values every series is created with before its first event, so
// a dashboard or an alert sees a zero, not a missing series (Preset).
var (
	Routes          = []string{"allow", "approval", "deny"}
	Gates           = []string{"verify", "ledger", "decide", "sign", "journal", "commit", "publish"}
	ApprovalEvents  = []string{"requested", "granted", "denied", "expired", "withdrawn"}
	Results         = []string{"ok", "error"}
	OperatorKinds   = []string{"dry_run", "replay"}
	PartitionEvents = []string{"acquired", "lost", "restarted"}
)

// latencyBuckets span 50 µs to ~26 s.
var latencyBuckets = prometheus.ExponentialBuckets(50e-6, 2, 20)

// New registers the gateway metrics (and Go and process collectors) in
// a fresh registry.
func New() *Gateway {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	m := &Gateway{Registry: r, IngressOldest: &Oldest{}}
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "agentgw_ingress_oldest_unacked_seconds",
		Help: "Age of the oldest ingress message not yet acknowledged (undelivered, or waiting for its outputs to be stored), over the held partitions' consumers; the stream deletes it at streams.ingress_max_age, ended or not."},
		func() float64 { return m.IngressOldest.Age().Seconds() }))
	m.Decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentgw_decisions_total", Help: "Decisions by tenant, route (allow, approval, deny) and reason."}, []string{"tenant", "route", "reason"})
	m.DecisionDelay = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agentgw_decision_delay_seconds", Help: "Time from the ingress message being stored to its decision.", Buckets: latencyBuckets})
	m.GateSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "agentgw_gate_duration_seconds", Help: "Time spent per pipeline stage, per batch.", Buckets: latencyBuckets}, []string{"gate"})
	m.BatchSize = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agentgw_batch_messages", Help: "Messages per fetched batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 13)})
	m.BatchSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agentgw_batch_duration_seconds", Help: "Fetch-to-ack time of a batch.", Buckets: latencyBuckets})
	m.Redeliveries = prometheus.NewCounter(prometheus.CounterOpts{Name: "agentgw_redeliveries_total", Help: "Ingress messages delivered more than once."})
	m.Reemitted = prometheus.NewCounter(prometheus.CounterOpts{Name: "agentgw_reemitted_total", Help: "Redeliveries answered by re-emitting the recorded outcome."})
	m.Recovered = prometheus.NewCounter(prometheus.CounterOpts{Name: "agentgw_recovered_total", Help: "Messages in flight when a partition started (a crash, a lease taken over), decided or re-emitted before any new delivery."})
	m.Recovery = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agentgw_recovery_seconds", Help: "Time to read and decide a partition's in-flight messages at its start, before any new delivery.", Buckets: latencyBuckets})
	m.PayloadOpens = prometheus.NewCounter(prometheus.CounterOpts{Name: "agentgw_payload_opens_total", Help: "Sealed payloads opened (only after authorization)."})
	m.AcceptedCurveOpens = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentgw_accepted_curve_opens_total", Help: "Boxes opened with a key of keys.accepted_curves, by its public key: agents' sealed payloads, tools' responses, held requests' and denied records' credentials, operators' replay authorizations, exchange proofs. Once it stays flat past the longest approval and response deadlines and the denials still to replay, the key can be dropped."}, []string{"key"})
	m.PublishFails = prometheus.NewCounter(prometheus.CounterOpts{Name: "agentgw_publish_failures_total", Help: "Outputs JetStream did not acknowledge; their ingress message is redelivered."})
	m.LedgerErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "agentgw_ledger_errors_total", Help: "Ledger failures; the batch, or the one message concerned, was not acknowledged (fail closed)."})
	m.PruneRuns = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentgw_ledger_prune_runs_total", Help: "Ledger prune runs by result."}, []string{"result"})
	m.Approvals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentgw_approvals_total", Help: "Approval events."}, []string{"event"})
	m.ApprovalAge = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agentgw_approval_age_seconds", Help: "Age of a held request when it was answered or expired.", Buckets: prometheus.ExponentialBuckets(1, 2, 16)})
	m.PolicyReloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentgw_reloads_total", Help: "Policy, catalog and revocation reloads by result."}, []string{"result"})
	m.BudgetDenials = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentgw_budget_denials_total", Help: "Messages denied budget_exceeded, by tenant."}, []string{"tenant"})
	m.OperatorReqs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentgw_operator_requests_total", Help: "Operator replay requests by kind and result."}, []string{"kind", "result"})
	m.PartitionEvents = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentgw_partition_events_total", Help: "Scale-out: partition leases acquired and lost, and tenures restarted from the journal."}, []string{"event"})
	m.JournalSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agentgw_journal_append_seconds", Help: "Scale-out: time to journal one batch (acknowledged by the journal stream).", Buckets: latencyBuckets})
	f(buildInfo())
	for _, c := range []prometheus.Collector{m.PartitionEvents, m.JournalSeconds, m.Decisions, m.DecisionDelay, m.GateSeconds, m.BatchSize, m.BatchSeconds, m.Redeliveries,
		m.Reemitted, m.Recovered, m.Recovery, m.PayloadOpens, m.AcceptedCurveOpens, m.PublishFails, m.LedgerErrors, m.PruneRuns, m.Approvals, m.ApprovalAge, m.PolicyReloads,
		m.BudgetDenials, m.OperatorReqs} {
		f(c)
	}
	return m
}

// Preset creates every labelled series with its known label values at
// zero: decisions for each tenant (and the unroutable one) by route and,
// for denials, by every reason a gateway decision can carry; budget
// denials by tenant; gates; approval, partition and reload events; prune
// runs; operator requests that succeeded. A series then exists from the
// first scrape, before its first event.
func (m *Gateway) Preset(tenants []string) {
	for _, t := range tenants {
		m.Decisions.WithLabelValues(t, "allow", "")
		m.Decisions.WithLabelValues(t, "approval", "")
		for _, in := range reason.All {
			if in.Stage == reason.StageConsumer || in.Stage == "exchange" {
				continue // never a gateway decision
			}
			m.Decisions.WithLabelValues(t, "deny", string(in.Code))
		}
		m.BudgetDenials.WithLabelValues(t)
	}
	for _, g := range Gates {
		m.GateSeconds.WithLabelValues(g)
	}
	for _, e := range ApprovalEvents {
		m.Approvals.WithLabelValues(e)
	}
	for _, r := range Results {
		m.PruneRuns.WithLabelValues(r)
		m.PolicyReloads.WithLabelValues(r)
	}
	for _, k := range OperatorKinds {
		m.OperatorReqs.WithLabelValues(k, "ok")
	}
	for _, e := range PartitionEvents {
		m.PartitionEvents.WithLabelValues(e)
	}
}

// buildInfo is agentgw_build_info: 1, labelled with the module version,
// the VCS revision ("" when the build recorded none) and the Go version.
func buildInfo() prometheus.Collector {
	version, revision, goVersion := "", "", runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "agentgw_build_info", Help: "Always 1; the labels say what was built: module version, VCS revision, Go version.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "go_version": goVersion}})
	g.Set(1)
	return g
}

// CounterFunc registers a counter whose value is read at scrape time
// (NATS reconnects, counted by the connection).
func (m *Gateway) CounterFunc(name, help string, fn func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn))
}

// GaugeFunc registers a gauge whose value is read at scrape time (ledger
// size, consumer lag).
func (m *Gateway) GaugeFunc(name, help string, fn func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// Since observes the seconds since start in h.
func Since(h prometheus.Observer, start time.Time) { h.Observe(time.Since(start).Seconds()) }

// Server serves /metrics, /healthz (the process is up) and /readyz
// (ready reports nil: the gateway decides messages).
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen starts serving on addr ("127.0.0.1:9090"; port 0 picks one).
// /readyz answers 200 "ready" while ready() returns nil, else 503 with
// the error: why the gateway is not deciding messages now.
func Listen(addr string, m *Gateway, ready func() error) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the listening address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the listener, waiting for in-flight scrapes.
func (s *Server) Close(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
