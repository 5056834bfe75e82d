package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/gateway"
)

// warmupTimeout, plus 2 ms per message, bounds the wait for the
// warm-up's outputs.
const warmupTimeout = 30 * time.Second

// sut is a running system under test.
type sut struct {
	errc    chan error // Run's result, once
	stop    func() error
	batches func() uint64 // batches processed so far
	// stages reads a gateway's stage histograms (nil for the relays).
	stages func() stageTotals
	// crash, for a gateway, stops it hard and starts a new one on the
	// same ledger (Config.Crash); inFlight is called in between.
	crash func(inFlight func()) (restart time.Time, err error)
}

// scenario runs one system on one mix at one rate, on fresh streams;
// with crash, the gateway is stopped hard and restarted half way.
func (r *runner) scenario(ctx context.Context, system string, mix Mix, rate float64, crash bool) (Result, error) {
	r.n++
	name := system + "/" + mix.Name
	if rate > 0 {
		name += fmt.Sprintf("@%.0f/s", rate)
	}
	if crash {
		name += "+crash"
	}
	res := Result{Name: name, System: system, Mix: mix.Name, TargetRate: rate, Messages: r.cfg.Messages}
	r.logf("bench: %s: signing %d messages", name, r.cfg.Warmup+r.cfg.Messages)
	// The corpus is fresh per scenario: envelopes are valid for 5 minutes.
	corp, err := newCorpus(r.world, mix, r.cfg.Warmup, r.cfg.Messages, r.cfg.SealedBytes, time.Now())
	if err != nil {
		return res, err
	}
	res.CorpusBytes = corp.bytes
	res.Expected = expected(system, corp.counts)

	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.resetStreams(setupCtx); err != nil {
		return res, err
	}
	base := time.Now()
	// primer: the outputs before the measured phase (primer and warm-up).
	primer := len(corp.primer) + corp.warm.Len()
	total := primer + r.cfg.Messages
	obs, err := newObserver(r.obsNC, base, total)
	if err != nil {
		return res, err
	}
	defer obs.close()

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	s, err := r.start(runCtx, setupCtx, system, mix)
	if err != nil {
		return res, err
	}
	stopped := false
	defer func() {
		if !stopped {
			stopRun()
			_ = s.stop()
		}
	}()

	// Return freed memory first, so the peak RSS measured from here is
	// this scenario's live set plus its growth; before the warm-up, so
	// that the heap has grown again (its pages faulted back in) by the
	// time the measured phase starts.
	debug.FreeOSMemory()
	rss := startPeakRSS()
	res.StartRSSBytes = rss.start
	res.Warmup = corp.warm.Len()

	// Warm-up: one message per agent, so connections, credential caches
	// and shared keys are warm and replays have originals to copy; then
	// Config.Warmup messages of the mix at full speed.
	for i, msgs := range []msgSource{corp.primer, corp.warm} {
		if msgs.Len() == 0 {
			continue
		}
		n := len(corp.primer) + i*corp.warm.Len()
		if err := publish(ctx, r.js, msgs, 0, base, newSendLog(msgs.Len())); err != nil {
			return res, fmt.Errorf("bench: %s: warm-up: %w", name, err)
		}
		if err := r.await(ctx, obs.expect(int64(n)), s, warmupTimeout+time.Duration(msgs.Len())*2*time.Millisecond); err != nil {
			return res, fmt.Errorf("bench: %s: warm-up: %w (outputs %d of %d)", name, err, obs.count.Load(), n)
		}
	}

	// Measured phase.
	var prof *profiles
	if system == SystemGateway {
		if prof, err = r.startProfiles(name); err != nil {
			return res, err
		}
	}
	u0 := snapshot()
	b0 := s.batches()
	var st0 stageTotals
	if s.stages != nil {
		st0 = s.stages()
	}
	sent := newSendLog(r.cfg.Messages)
	pubErr := make(chan error, 1)
	go func() { pubErr <- publish(runCtx, r.js, corp.msgs, rate, base, sent) }()
	stopProgress := r.showProgress(name, sent, obs, int64(primer))
	var crashed chan crashRun
	if crash {
		crashed = make(chan crashRun, 1)
		go func() { crashed <- r.crashHalfway(runCtx, s, obs, int64(primer)) }()
	}
	err = r.await(ctx, obs.expect(int64(total)), s, r.cfg.timeout())
	u1 := snapshot()
	res.Batches = s.batches() - b0
	if s.stages != nil && !crash {
		res.Stages = stagesBetween(st0, s.stages())
	}
	res.PeakRSSBytes, res.PeakRSSSource = rss.bytes(), rss.source
	stopProgress()
	if prof != nil {
		if perr := prof.stop(); perr != nil {
			return res, perr
		}
		res.Profile, res.Trace, res.MemProfile = prof.cpuPath, prof.tracePath, prof.memPath
	}
	if err != nil {
		return res, fmt.Errorf("bench: %s: %w (outputs %d of %d, published %d, stray %d)",
			name, err, obs.count.Load()-int64(primer), r.cfg.Messages, sent.acked.Load(), obs.stray.Load())
	}
	select {
	case err = <-pubErr:
	case <-time.After(30 * time.Second):
		err = errors.New("publisher acknowledgements did not finish")
	}
	if err != nil {
		return res, fmt.Errorf("bench: %s: %w", name, err)
	}
	stopped = true
	stopRun()
	if err := s.stop(); err != nil {
		return res, fmt.Errorf("bench: %s: stop: %w", name, err)
	}

	r.measure(&res, obs, sent, u0, u1)
	if r.cfg.Latencies != "" {
		if err := r.writeLatencies(name, sent, obs); err != nil {
			return res, err
		}
	}
	if r.cfg.GCTimes != "" {
		lost, err := r.writeGCTimes(name, base, sent, u0, u1)
		if err != nil {
			return res, err
		}
		if lost > 0 {
			r.logf("bench: %s: --gc-times: the first %d of the run's %d collection cycles are older than the runtime keeps, and left out", name, lost, u1.gcs-u0.gcs)
		}
	}
	if crash {
		c := <-crashed
		if c.err != nil {
			return res, fmt.Errorf("bench: %s: %w", name, c.err)
		}
		res.Crash = c.result(obs)
	}
	r.logf("bench: %s: %.0f msgs/s, p50 %.2f ms, p99 %.2f ms", name, res.MsgsPerSec, float64(res.Latency.P50)/1000, float64(res.Latency.P99)/1000)
	return res, nil
}

// measure fills res from the observations of the measured phase.
func (r *runner) measure(res *Result, obs *observer, sent *sendLog, u0, u1 usage) {
	h := newHistogram()
	var maxUS int64
	seen := make([]int64, 0, len(sent.seq))
	for i, seq := range sent.seq {
		if seq == 0 {
			continue
		}
		res.Published++
		t := obs.seen[seq].Load()
		if t == 0 {
			continue
		}
		res.Outputs++
		seen = append(seen, t)
		switch route(obs.routes[seq].Load()) {
		case routeAllow:
			res.Routes.Allowed++
		case routeDeny:
			res.Routes.Denied++
		case routeHeld:
			res.Routes.Held++
		}
		us := histUS(sent.at[i], t)
		maxUS = max(maxUS, us)
		_ = h.RecordValue(us)
	}
	res.Latency = latencyOf(h, maxUS)
	res.LongestGapSeconds = longestGap(sent.first, seen).Seconds()
	wall := time.Duration(obs.last.Load() - sent.first)
	res.Seconds = wall.Seconds()
	if res.Seconds > 0 {
		res.MsgsPerSec = float64(res.Outputs) / res.Seconds
	}
	if d := time.Duration(sent.done - sent.first).Seconds(); d > 0 {
		res.PublishPerSec = float64(sent.sent.Load()) / d
	}
	n := float64(max(res.Outputs, 1))
	cpu := (u1.cpu - u0.cpu).Seconds()
	res.CPUSecondsPerMsg = cpu / n
	if res.Seconds > 0 {
		res.CoresUsed = cpu / res.Seconds
	}
	res.FaultsPerMsg = float64(u1.faults-u0.faults) / n
	res.AllocsPerMsg = float64(u1.mallocs-u0.mallocs) / n
	res.AllocBytesPerMsg = float64(u1.bytes-u0.bytes) / n
	res.GCs = u1.gcs - u0.gcs
	res.GCCPUSecondsPerMsg = (u1.gcCPU - u0.gcCPU) / n
	res.Reemitted = obs.dups.Load()
	if res.Batches > 0 {
		res.MeanBatch = n / float64(res.Batches)
	}
}

// expected is where each kind of message should land for system.
func expected(system string, counts [numKinds]int) Routes {
	valid := counts[kindPlain] + counts[kindSealed]
	switch system {
	case SystemRaw:
		return Routes{Allowed: valid + counts[kindBadSig] + counts[kindReplay]}
	case SystemCrypto:
		// A replay carries a genuine signature: only the ledger catches it.
		return Routes{Allowed: valid + counts[kindReplay], Denied: counts[kindBadSig]}
	}
	return Routes{Allowed: valid, Denied: counts[kindBadSig] + counts[kindReplay]}
}

// await waits for done, failing on the system's own error, a slow
// observer, timeout or ctx.
func (r *runner) await(ctx context.Context, done <-chan struct{}, s *sut, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case err := <-s.errc:
		if err == nil {
			err = errors.New("system under test stopped")
		}
		s.errc <- err // stop reads it again
		return err
	case <-r.slow:
		return errors.New("the observer fell behind and the server dropped outputs (slow consumer)")
	case <-t.C:
		return fmt.Errorf("%w after %s", ErrTimeout, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// start launches the system under test on its own connection.
func (r *runner) start(ctx, setupCtx context.Context, system string, mix Mix) (*sut, error) {
	nc, err := r.connect("agentgw-bench-" + system)
	if err != nil {
		return nil, err
	}
	s := &sut{errc: make(chan error, 1)}
	switch system {
	case SystemRaw, SystemCrypto:
		batch := r.cfg.Batch
		if batch == 0 {
			batch = gateway.DefaultConfig().Consumer.Batch
		}
		workers := r.cfg.Workers
		if workers == 0 {
			workers = runtime.GOMAXPROCS(0)
		}
		rl, err := newRelay(setupCtx, nc, system == SystemCrypto, batch, workers)
		if err != nil {
			nc.Close()
			return nil, err
		}
		s.batches = rl.batches.Load
		go func() { s.errc <- rl.run(ctx) }()
		s.stop = func() error {
			err := <-s.errc
			nc.Close()
			return err
		}
		return s, nil
	}
	dataDir := filepath.Join(r.dir, fmt.Sprintf("scenario-%02d-%s-%s", r.n, system, mix.Name))
	log := zerolog.Nop()
	var logFile *os.File
	if r.cfg.GatewayLog != "" {
		if logFile, err = os.OpenFile(r.cfg.GatewayLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
			nc.Close()
			return nil, fmt.Errorf("bench: gateway log: %w", err)
		}
		log = zerolog.New(logFile).With().Timestamp().Logger()
	}
	closeAll := func() {
		nc.Close()
		if logFile != nil {
			_ = logFile.Close()
		}
	}
	if r.cfg.Instances > 0 {
		closeAll()
		return r.startScaledOut(ctx, setupCtx, dataDir, log)
	}
	gcfg := r.world.gatewayConfig(dataDir, &r.cfg)
	gw, err := gateway.New(gcfg, gateway.WithConn(nc), gateway.WithLogger(log))
	if err != nil {
		closeAll()
		return nil, err
	}
	// The gateway running now (a crash replaces it) and the batches of
	// those before it.
	var cur atomic.Pointer[gateway.Gateway]
	var before atomic.Uint64
	cur.Store(gw)
	s.batches = func() uint64 { return before.Load() + cur.Load().Stats().Batches.Load() }
	s.stages = func() stageTotals { return gateTotals(cur.Load()) }
	crashReq := make(chan func(), 1)
	crashed := make(chan crashStart, 1)
	var nc2 *nats.Conn // the restarted gateway's connection
	s.crash = func(inFlight func()) (time.Time, error) {
		crashReq <- inFlight
		c := <-crashed
		return c.restart, c.err
	}
	go func() {
		gctx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- gw.Run(gctx) }()
		var inFlight func()
		select {
		case err := <-done:
			s.errc <- err
			return
		case inFlight = <-crashReq:
		}
		// The hard stop: the connection goes first, so the gateway
		// acknowledges and publishes nothing more; then Run returns
		// and the ledger is released, as a dead process's would be.
		nc.Close()
		cancel()
		<-done
		before.Add(gw.Stats().Batches.Load())
		if err := gw.Close(); err != nil {
			crashed <- crashStart{err: fmt.Errorf("close the stopped gateway: %w", err)}
			s.errc <- err
			return
		}
		inFlight()
		restart := time.Now()
		c, err := r.connect("agentgw-bench-gateway-restarted")
		var gw2 *gateway.Gateway
		if err == nil {
			if gw2, err = gateway.New(gcfg, gateway.WithConn(c), gateway.WithLogger(log)); err != nil {
				c.Close()
			}
		}
		if err != nil {
			crashed <- crashStart{err: fmt.Errorf("restart: %w", err)}
			s.errc <- err
			return
		}
		nc2 = c
		cur.Store(gw2)
		crashed <- crashStart{restart: restart}
		s.errc <- gw2.Run(ctx)
	}()
	s.stop = func() error {
		err := <-s.errc
		err = errors.Join(err, cur.Load().Close())
		closeAll()
		if nc2 != nil {
			nc2.Close()
		}
		if r.cfg.Dir == "" {
			_ = os.RemoveAll(dataDir)
		}
		return err
	}
	select {
	case <-gw.Ready():
		return s, nil
	case err := <-s.errc:
		s.errc <- err
		_ = s.stop()
		return nil, fmt.Errorf("bench: gateway: %w", err)
	case <-setupCtx.Done():
		// Run ends when the caller cancels ctx; release it then.
		go func() { _ = s.stop() }()
		return nil, fmt.Errorf("bench: gateway not ready: %w", setupCtx.Err())
	}
}

// startScaledOut runs cfg.Instances gateways in scale-out mode, each on
// its own connection and data dir, and returns once every partition is
// held by one of them.
func (r *runner) startScaledOut(ctx, setupCtx context.Context, dataDir string, log zerolog.Logger) (*sut, error) {
	n := r.cfg.Instances
	s := &sut{errc: make(chan error, 1)}
	gws := make([]*gateway.Gateway, 0, n)
	conns := make([]*nats.Conn, 0, n)
	errs := make(chan error, n)
	for i := range n {
		nc, err := r.connect(fmt.Sprintf("agentgw-bench-gateway-%d", i))
		if err != nil {
			return nil, err
		}
		gc := r.world.gatewayConfig(filepath.Join(dataDir, fmt.Sprintf("instance-%d", i)), &r.cfg)
		gc.Consumer.Partitions = r.cfg.partitions()
		gc.ScaleOut = &gateway.ScaleOutConfig{Instance: fmt.Sprintf("bench%d", i)}
		gw, err := gateway.New(gc, gateway.WithConn(nc), gateway.WithLogger(log.With().Int("instance", i).Logger()))
		if err != nil {
			nc.Close()
			return nil, err
		}
		gws, conns = append(gws, gw), append(conns, nc)
		go func() { errs <- gw.Run(ctx) }()
		// One at a time: nats-server 2.15.2 races (go test -race) between
		// a stream update and a consumer create on the same stream, which
		// two instances setting up at once would do.
		select {
		case <-gw.Ready():
		case <-setupCtx.Done():
		}
	}
	s.batches = func() uint64 {
		var b uint64
		for _, gw := range gws {
			b += gw.Stats().Batches.Load()
		}
		return b
	}
	s.stages = func() stageTotals { return gateTotals(gws...) }
	s.stop = func() error {
		var err error
		for range gws {
			err = errors.Join(err, <-errs)
		}
		for i, gw := range gws {
			err = errors.Join(err, gw.Close())
			conns[i].Close()
		}
		if r.cfg.Dir == "" {
			_ = os.RemoveAll(dataDir)
		}
		return err
	}
	for {
		held := 0
		for _, gw := range gws {
			held += len(gw.Partitions())
		}
		if held == r.cfg.partitions() {
			return s, nil
		}
		select {
		case err := <-errs:
			errs <- err
			go func() { _ = s.stop() }()
			return nil, fmt.Errorf("bench: gateway: %w", err)
		case <-setupCtx.Done():
			go func() { _ = s.stop() }()
			return nil, fmt.Errorf("bench: partitions not all held: %w", setupCtx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// showProgress prints a line per ProgressEvery until the returned func
// is called.
func (r *runner) showProgress(name string, sent *sendLog, obs *observer, primer int64) func() {
	if r.cfg.ProgressEvery <= 0 {
		return func() {}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(r.cfg.ProgressEvery)
		defer t.Stop()
		start := time.Now()
		var lastOut int64
		last := start
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				out := obs.count.Load() - primer
				rate := float64(out-lastOut) / now.Sub(last).Seconds()
				lastOut, last = out, now
				r.logf("bench: %s: %5.1fs published %d/%d, outputs %d/%d, %.0f msgs/s",
					name, now.Sub(start).Seconds(), sent.sent.Load(), r.cfg.Messages, out, r.cfg.Messages, rate)
			}
		}
	}()
	return func() { close(stop); <-done }
}

// crashStart is the restart of a crashed gateway.
type crashStart struct {
	restart time.Time
	err     error
}

// crashRun is what a crash scenario saw.
type crashRun struct {
	after    int64    // measured outputs seen at the stop
	inFlight []uint64 // ingress sequences delivered, unacknowledged and without an output at the stop
	restart  time.Time
	err      error
}

// crashHalfway waits for half the measured outputs, then has the gateway
// stopped hard and restarted, noting in between which messages it left
// in flight.
func (r *runner) crashHalfway(ctx context.Context, s *sut, obs *observer, primer int64) crashRun {
	var c crashRun
	half := primer + int64(r.cfg.Messages)/2
	for obs.count.Load() < half {
		select {
		case <-ctx.Done():
			c.err = ctx.Err()
			return c
		case <-time.After(time.Millisecond):
		}
	}
	c.after = obs.count.Load() - primer
	var listErr error
	c.restart, c.err = s.crash(func() { c.inFlight, listErr = r.inFlight(ctx, obs) })
	if c.err == nil {
		c.err = listErr
	}
	return c
}

// inFlight lists the ingress sequences that the ingress consumers had
// delivered and not acknowledged, and that have no output yet.
func (r *runner) inFlight(ctx context.Context, obs *observer) ([]uint64, error) {
	st, err := r.js.Stream(ctx, gateway.StreamIngress)
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	l := st.ListConsumers(ctx)
	for info := range l.Info() {
		for seq := info.AckFloor.Stream + 1; seq <= info.Delivered.Stream && seq < uint64(len(obs.seen)); seq++ {
			if obs.seen[seq].Load() == 0 {
				seqs = append(seqs, seq)
			}
		}
	}
	return seqs, l.Err()
}

// result is the crash's figures once the scenario is over.
func (c crashRun) result(obs *observer) *CrashResult {
	res := &CrashResult{AfterOutputs: c.after, InFlight: len(c.inFlight),
		StandIn: "the gateway runs in this process: its NATS connection is closed under it (nothing more acknowledged or published, its fetched messages left unacknowledged, its ledger as committed), then a new gateway opens the same ledger"}
	var last int64
	for _, seq := range c.inFlight {
		last = max(last, obs.seen[seq].Load())
	}
	if last > 0 {
		res.RecoverySeconds = max(obs.base.Add(time.Duration(last)).Sub(c.restart), 0).Seconds()
	}
	return res
}

// longestGap is the longest time between from and the first of the
// output times seen (ns since the observer's base), or between two of
// them in time order.
func longestGap(from int64, seen []int64) time.Duration {
	slices.Sort(seen)
	var gap int64
	prev := from
	for _, t := range seen {
		gap = max(gap, t-prev)
		prev = max(prev, t)
	}
	return time.Duration(gap)
}
