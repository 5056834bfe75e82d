package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/store/journal"
	"github.com/agentgw/agentgw/store/lease"
)

// Errors Run returns (wrapped); match them with errors.Is.
var (
	// ErrStreamsExist: the external server already has agentgw streams
	// and Config.Force is not set. Nothing was changed.
	ErrStreamsExist = errors.New("bench: agentgw streams already exist on the server")
	// ErrMismatch: a system routed messages differently from what the
	// mix should produce (for example a valid message denied), so its
	// figures do not measure what they claim to.
	ErrMismatch = errors.New("bench: outputs differ from what the mix should produce")
	// ErrTimeout: a scenario did not see every output in time.
	ErrTimeout = errors.New("bench: scenario timed out")
)

// Option injects a collaborator.
type Option func(*runner)

// WithProgress writes progress lines to w while Run runs (stderr, for a
// command). The default discards them.
func WithProgress(w io.Writer) Option { return func(r *runner) { r.progress = w } }

type runner struct {
	cfg      Config
	progress io.Writer
	dir      string
	url      string
	srv      *server.Server
	pubNC    *nats.Conn
	obsNC    *nats.Conn
	js       jetstream.JetStream // publisher and stream admin
	world    *world
	n        int // scenarios run, for data directories
	slow     chan struct{}
	stalls   []string // notes on runs with a stall (stallSeconds without output)
}

// stallSeconds is the longest a measured run may go without a new output
// before the report points it out.
const stallSeconds = 1.0

// stallAfter is that bound for a run at rate (0: full speed): paced below
// ten messages a second, outputs are far apart anyway, so ten intervals.
func stallAfter(rate float64) float64 {
	if rate > 0 {
		return max(stallSeconds, 10/rate)
	}
	return stallSeconds
}

// median returns the run with the median key (the lower middle for an
// even count), with every run's summary attached.
func median(runs []Result, key func(Result) float64) Result {
	sorted := slices.Clone(runs)
	slices.SortStableFunc(sorted, func(a, b Result) int { return cmp.Compare(key(a), key(b)) })
	m := sorted[(len(sorted)-1)/2]
	if len(runs) > 1 {
		m.Runs = nil
		for _, x := range runs {
			m.Runs = append(m.Runs, RunSummary{MsgsPerSec: x.MsgsPerSec, P50: x.Latency.P50, P99: x.Latency.P99, CPUSecondsPerMsg: x.CPUSecondsPerMsg,
				LongestGapSeconds: x.LongestGapSeconds})
		}
	}
	return m
}

// Run sets up the server (embedded unless cfg.NATSURL), identities and
// catalog, runs every scenario and returns the report. On an error the
// report holds the scenarios finished so far.
func Run(ctx context.Context, cfg Config, opts ...Option) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, progress: io.Discard, slow: make(chan struct{}, 1)}
	for _, o := range opts {
		o(r)
	}
	rep := &Report{
		Started: time.Now().UTC(),
		Host: Host{
			GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
			NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
			NATS: "embedded", SyncAlways: cfg.SyncAlways,
		},
		Settings: Settings{
			Messages: cfg.Messages, Agents: cfg.Agents, Tenants: cfg.Tenants, Mixes: cfg.Mixes,
			Rate: cfg.Rate, Paced: cfg.Paced, Repeat: cfg.repeat(), SealedBytes: cfg.SealedBytes,
			Batch: cfg.Batch, Workers: cfg.Workers, Instances: cfg.Instances, Partitions: cfg.partitions(),
		},
	}
	if rep.Settings.Batch == 0 {
		rep.Settings.Batch = gateway.DefaultConfig().Consumer.Batch
	}
	switch rep.Settings.Notices = "sent"; {
	case cfg.NoNotices:
		rep.Settings.Notices = "off"
	case cfg.NoNoticeAsked:
		rep.Settings.Notices = "not asked"
	}
	if rep.Settings.Workers == 0 {
		rep.Settings.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.NATSURL != "" {
		rep.Host.NATS = gateway.RedactURL(cfg.NATSURL)
	}
	if err := r.setup(ctx); err != nil {
		r.teardown()
		return nil, err
	}
	defer r.teardown()

	var errs []error
	var onceCrash func(sys string, mix Mix, rate float64, crash bool) (Result, error)
	fail := func(err error) (*Report, error) {
		rep.Ratios = computeRatios(rep.Scenarios)
		return rep, errors.Join(append(errs, err)...)
	}
	once := func(sys string, mix Mix, rate float64) (Result, error) {
		return onceCrash(sys, mix, rate, false)
	}
	onceCrash = func(sys string, mix Mix, rate float64, crash bool) (Result, error) {
		res, err := r.scenario(ctx, sys, mix, rate, crash)
		if err == nil && res.Routes != res.Expected {
			errs = append(errs, fmt.Errorf("%w: %s routed %+v; want %+v", ErrMismatch, res.Name, res.Routes, res.Expected))
		}
		if err == nil && !crash && res.LongestGapSeconds >= stallAfter(rate) {
			r.stalls = append(r.stalls, fmt.Sprintf("%s: a run had no new output for %.1f s, a stall its msgs/s and latency include.", res.Name, res.LongestGapSeconds))
		}
		return res, err
	}
	if cfg.Flood {
		f, err := r.flood(ctx)
		if err != nil {
			return fail(err)
		}
		rep.Flood = f
		rep.Notes = r.notes(rep)
		return rep, errors.Join(errs...)
	}
	byRate := func(x Result) float64 { return x.MsgsPerSec }
	byP99 := func(x Result) float64 { return float64(x.Latency.P99) }
	for _, mix := range cfg.Mixes {
		systems := []string{SystemGateway}
		if cfg.Baselines {
			systems = []string{SystemRaw, SystemCrypto, SystemGateway}
		}
		// Repetitions are interleaved (raw, crypto, gateway, raw, …) so
		// that a noisy spell hits every system alike.
		runs := make([][]Result, len(systems))
		for range cfg.repeat() {
			for i, sys := range systems {
				res, err := once(sys, mix, cfg.Rate)
				if err != nil {
					return fail(err)
				}
				runs[i] = append(runs[i], res)
			}
		}
		for i := range systems {
			rep.Scenarios = append(rep.Scenarios, median(runs[i], byRate))
		}
		gw := rep.Scenarios[len(rep.Scenarios)-1]
		if cfg.Paced > 0 && gw.MsgsPerSec > 0 {
			var paced []Result
			for range cfg.repeat() {
				res, err := once(SystemGateway, mix, cfg.Paced*gw.MsgsPerSec)
				if err != nil {
					return fail(err)
				}
				paced = append(paced, res)
			}
			rep.Scenarios = append(rep.Scenarios, median(paced, byP99))
		}
		if cfg.Crash {
			res, err := onceCrash(SystemGateway, mix, cfg.Rate, true)
			if err != nil {
				return fail(err)
			}
			rep.Scenarios = append(rep.Scenarios, res)
		}
	}
	if cfg.MCPCalls > 0 {
		m, err := r.mcp(ctx)
		if err != nil {
			return fail(err)
		}
		rep.MCP = m
	}
	rep.Ratios = computeRatios(rep.Scenarios)
	rep.Notes = r.notes(rep)
	return rep, errors.Join(errs...)
}

func (r *runner) notes(rep *Report) []string {
	n := []string{
		"CPU, allocations and peak RSS are whole-process figures: publisher, observer and (embedded) nats-server included; compare scenarios of the same run.",
		"Full-speed latency includes the queue the publisher builds ahead of the system; paced scenarios show latency below saturation.",
	}
	if r.cfg.NATSURL == "" {
		n = append(n, "Embedded nats-server, reached over loopback TCP, file storage"+map[bool]string{true: ", sync_interval: always", false: ", default fsync interval"}[r.cfg.SyncAlways]+".")
	}
	if r.cfg.repeat() > 1 {
		n = append(n, fmt.Sprintf("Each scenario ran %d times, interleaved within a mix; the row is the run with the median msgs/s (paced: the median p99); runs lists them all.", r.cfg.repeat()))
	}
	switch rep.Settings.Notices {
	case "off":
		n = append(n, "The gateway ran with notify_senders off: no decision notice per message.")
	case "not asked":
		n = append(n, "The agents' messages asked for no decision notice (Agentgw-Notify: none), as agents that read none do.")
	default:
		n = append(n, "The gateway sent a decision notice per authenticated message (notify_senders on, and the agents asked for them).")
	}
	n = append(n, r.stalls...)
	if len(rep.Scenarios) > 0 && rep.Scenarios[0].PeakRSSSource != rssScenario {
		n = append(n, "Peak RSS is the process's peak so far (the per-scenario reset is not available here).")
	}
	return n
}

func (r *runner) setup(ctx context.Context) error {
	r.dir = r.cfg.Dir
	if r.dir == "" {
		d, err := os.MkdirTemp("", "agentgw-bench-")
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		r.dir = d
	} else if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	r.url = r.cfg.NATSURL
	if r.url == "" {
		srv, err := server.NewServer(&server.Options{
			Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(r.dir, "jetstream"),
			NoLog: true, NoSigs: true, SyncAlways: r.cfg.SyncAlways,
		})
		if err != nil {
			return fmt.Errorf("bench: nats-server: %w", err)
		}
		go srv.Start()
		if !srv.ReadyForConnections(10 * time.Second) {
			srv.Shutdown()
			return errors.New("bench: embedded nats-server did not become ready")
		}
		r.srv, r.url = srv, srv.ClientURL()
	}
	var err error
	if r.pubNC, err = r.connect("agentgw-bench-publisher"); err != nil {
		return err
	}
	if r.obsNC, err = r.connect("agentgw-bench-observer", nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrSlowConsumer) {
			select {
			case r.slow <- struct{}{}:
			default:
			}
		}
	})); err != nil {
		return err
	}
	if r.js, err = jetstream.New(r.pubNC, jetstream.WithPublishAsyncMaxPending(publishMaxPending), jetstream.WithPublishAsyncTimeout(30*time.Second)); err != nil {
		return fmt.Errorf("bench: jetstream: %w", err)
	}
	if r.cfg.NATSURL != "" && !r.cfg.Force {
		for _, sc := range gateway.StreamConfigs(gateway.DefaultConfig().Streams, 1) {
			if _, err := r.js.Stream(ctx, sc.Name); err == nil {
				return fmt.Errorf("%w: %s (the bench deletes and recreates them; pass --force on a server you can wipe)", ErrStreamsExist, sc.Name)
			}
		}
	}
	r.logf("bench: creating %d agents in %d tenants", r.cfg.Agents, r.cfg.Tenants)
	if r.world, err = newWorld(r.dir, r.cfg.Tenants, r.cfg.Agents, time.Now()); err != nil {
		return err
	}
	for _, a := range r.world.agents {
		a.noNotice = r.cfg.NoNoticeAsked
	}
	return nil
}

func (r *runner) connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	all := append([]nats.Option{nats.Name(name), nats.Timeout(5 * time.Second)}, gateway.ClientOptions(gateway.NATSConfig{Creds: r.cfg.NATSCreds})...)
	nc, err := nats.Connect(r.url, append(all, opts...)...)
	if err != nil {
		return nil, gateway.ConnectError("bench", r.url, err)
	}
	return nc, nil
}

func (r *runner) teardown() {
	if r.js != nil && r.cfg.NATSURL != "" {
		// Leave an external server as clean as the bench found it.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = r.deleteStreams(ctx)
		cancel()
	}
	if r.obsNC != nil {
		r.obsNC.Close()
	}
	if r.pubNC != nil {
		r.pubNC.Close()
	}
	if r.srv != nil {
		r.srv.Shutdown()
		r.srv.WaitForShutdown()
	}
	if r.cfg.Dir == "" && r.dir != "" {
		_ = os.RemoveAll(r.dir)
	}
}

// resetStreams deletes every agentgw stream (and with them every
// consumer) and creates them again empty, exactly as the gateway would.
func (r *runner) resetStreams(ctx context.Context) error {
	if err := r.deleteStreams(ctx); err != nil {
		return err
	}
	// The server removes a deleted stream's files asynchronously; creating
	// the same name at once can fail while it does ("error creating store
	// for stream"), so retry for a while.
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		err := gateway.EnsureStreams(ctx, r.js, gateway.DefaultConfig().Streams, r.cfg.partitions())
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

func (r *runner) deleteStreams(ctx context.Context) error {
	names := []string{journal.Stream, "KV_" + lease.DefaultBucket, "KV_" + gateway.HoldsBucket}
	for _, sc := range gateway.StreamConfigs(gateway.DefaultConfig().Streams, 1) {
		names = append(names, sc.Name)
	}
	for _, name := range names {
		if err := r.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("bench: delete stream %s: %w", name, err)
		}
	}
	return nil
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.progress, format+"\n", args...)
}
