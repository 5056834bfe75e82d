package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
)

// floodVictimCap bounds the victim's pre-signed messages; at the
// default rate it covers a flood of ten seconds.
const floodVictimCap = 2000

// FloodResult is the flood-isolation scenario: the latency of a victim
// tenant sending valid messages at a low fixed rate, alone (Quiet) and
// while another tenant floods the ingress stream with bad signatures and
// replays at full speed (Flooded), in the same run. The gateway runs with
// consumer.fair_tenants, the mode that gives each tenant its own queue.
type FloodResult struct {
	// VictimRate is the victim's publish rate, msgs/s.
	VictimRate float64 `json:"victim_rate"`
	// Floor is set when the flood went to a stream nothing reads
	// (Config.FloodFloor): no flood message was decided, and the flood's
	// figures are of its storing.
	Floor bool `json:"floor,omitempty"`
	// FloodMessages is the flood's size; FloodSeconds how long the
	// gateway took to decide it, and FloodPerSec that rate (with Floor,
	// how long nats-server took to store it).
	FloodMessages int     `json:"flood_messages"`
	FloodSeconds  float64 `json:"flood_seconds"`
	FloodPerSec   float64 `json:"flood_per_sec"`
	// Quiet and Flooded are the victim's end-to-end latency.
	Quiet   Latency `json:"quiet"`
	Flooded Latency `json:"flooded"`
	// FloodedStored is, beside the flood, the part of the victim's
	// latency until nats-server stored it in the ingress stream (the
	// stored message's timestamp; the publisher's PubAck where the
	// server's clock disagrees with this process's): the wait in
	// nats-server behind the flood's publishes, before the gateway can
	// see the message.
	FloodedStored Latency `json:"flooded_stored"`
	// P99Ratio is Flooded.P99 / Quiet.P99.
	P99Ratio float64 `json:"p99_ratio"`
	// FloodAheadMax and FloodAheadP99 count the flood's outputs the
	// observer saw between a victim message's storing in the ingress
	// stream (as FloodedStored) and its output: the flood the gateway
	// decided while the message waited, its own batch included.
	// Batch is the gateway's batch size, to read them in batches.
	FloodAheadMax int `json:"flood_ahead_max"`
	FloodAheadP99 int `json:"flood_ahead_p99"`
	Batch         int `json:"batch"`
	// Runs summarises every repetition; the result is the median one by
	// the flooded p99.
	Runs []FloodRun `json:"runs,omitempty"`
}

// FloodRun is one repetition of the flood scenario.
type FloodRun struct {
	QuietP50   int64 `json:"quiet_p50_us"`
	QuietP99   int64 `json:"quiet_p99_us"`
	FloodedP50 int64 `json:"flooded_p50_us"`
	FloodedP99 int64 `json:"flooded_p99_us"`
	AheadMax   int   `json:"flood_ahead_max"`
}

// flood runs the flood scenario Repeat times and returns the median run.
func (r *runner) flood(ctx context.Context) (*FloodResult, error) {
	var runs []FloodResult
	for range r.cfg.repeat() {
		res, err := r.floodOnce(ctx)
		if err != nil {
			return nil, err
		}
		runs = append(runs, res)
	}
	sorted := slices.Clone(runs)
	slices.SortStableFunc(sorted, func(a, b FloodResult) int { return int(a.Flooded.P99 - b.Flooded.P99) })
	m := sorted[(len(sorted)-1)/2]
	if len(runs) > 1 {
		for _, x := range runs {
			m.Runs = append(m.Runs, FloodRun{QuietP50: x.Quiet.P50, QuietP99: x.Quiet.P99, FloodedP50: x.Flooded.P50, FloodedP99: x.Flooded.P99, AheadMax: x.FloodAheadMax})
		}
	}
	return &m, nil
}

// floodOnce runs the victim with the flood, then alone for as many
// messages, each on fresh streams and a fresh gateway.
func (r *runner) floodOnce(ctx context.Context) (FloodResult, error) {
	res := FloodResult{VictimRate: r.cfg.FloodVictimRate, Floor: r.cfg.FloodFloor, FloodMessages: r.cfg.Messages, Batch: r.batch()}
	flooder, victim := r.world.only(r.world.tenants[0]), r.world.only(r.world.tenants[1])
	now := time.Now()
	corpF, err := newCorpus(flooder, MixHostile, 0, r.cfg.Messages, r.cfg.SealedBytes, now)
	if err != nil {
		return res, err
	}
	corpV, err := newCorpus(victim, MixPlain, 0, floodVictimCap, r.cfg.SealedBytes, now)
	if err != nil {
		return res, err
	}
	where := "ingress"
	if res.Floor {
		where = "a stream nothing reads"
	}
	r.logf("bench: flood: %d hostile messages from %s at full speed to %s, %s at %.0f msgs/s", r.cfg.Messages, r.world.tenants[0], where, r.world.tenants[1], r.cfg.FloodVictimRate)
	flooded, err := r.floodPhase(ctx, corpF, corpV, 0, &res)
	if err != nil {
		return res, err
	}
	if _, err := r.floodPhase(ctx, nil, corpV, max(flooded, 50), &res); err != nil {
		return res, err
	}
	if res.Quiet.P99 > 0 {
		res.P99Ratio = float64(res.Flooded.P99) / float64(res.Quiet.P99)
	}
	r.logf("bench: flood: victim p50/p99 %.2f/%.2f ms alone, %.2f/%.2f ms flooded (%.1f×); flood decided while a victim waited: at most %d (batch %d)",
		float64(res.Quiet.P50)/1000, float64(res.Quiet.P99)/1000, float64(res.Flooded.P50)/1000, float64(res.Flooded.P99)/1000,
		res.P99Ratio, res.FloodAheadMax, res.Batch)
	return res, nil
}

// floodPhase runs one gateway on fresh streams. With corpF it publishes
// the flood at full speed and the victim at its rate until the flood is
// decided, and fills res.Flooded; without, it publishes n victim messages
// and fills res.Quiet. It returns the victim messages sent.
func (r *runner) floodPhase(ctx context.Context, corpF, corpV *corpus, n int, res *FloodResult) (int, error) {
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.resetStreams(setupCtx); err != nil {
		return 0, err
	}
	primer := slices.Clone(corpV.primer)
	floor := corpF != nil && r.cfg.FloodFloor
	floodN, floodOuts := 0, 0 // flood messages, and their outputs
	if corpF != nil {
		primer = append(primer, corpF.primer...)
		floodN = corpF.msgs.Len()
		floodOuts = floodN
	}
	if floor {
		floodOuts = 0
		if err := r.createFloorStream(setupCtx); err != nil {
			return 0, err
		}
		defer func() { _ = r.js.DeleteStream(context.WithoutCancel(ctx), floorStream) }()
	}
	base := time.Now()
	// Sized by ingress sequence for the flood too, so that a floor's
	// flood that reached ingress is reported (below), not out of range.
	obs, err := newObserver(r.obsNC, base, len(primer)+floodN+corpV.msgs.Len())
	if err != nil {
		return 0, err
	}
	defer obs.close()
	vnc, err := r.connect("agentgw-bench-victim")
	if err != nil {
		return 0, err
	}
	defer vnc.Close()
	vjs, err := jetstream.New(vnc, jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return 0, fmt.Errorf("bench: jetstream: %w", err)
	}

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	fair := r.cfg.FairTenants
	r.cfg.FairTenants = true // the mode that isolates tenants
	s, err := r.start(runCtx, setupCtx, SystemGateway, Mix{Name: "flood"})
	r.cfg.FairTenants = fair
	if err != nil {
		return 0, err
	}
	stopped := false
	defer func() {
		if !stopped {
			stopRun()
			_ = s.stop()
		}
	}()
	warm := newSendLog(len(primer))
	if err := publish(ctx, r.js, primer, 0, base, warm); err != nil {
		return 0, fmt.Errorf("bench: flood: warm-up: %w", err)
	}
	if err := r.await(ctx, obs.expect(int64(len(primer))), s, warmupTimeout); err != nil {
		return 0, fmt.Errorf("bench: flood: warm-up: %w", err)
	}

	vmsgs := corpV.msgs
	if corpF == nil {
		vmsgs = vmsgs.slice(0, min(n, vmsgs.Len()))
	}
	vsent := newSendLog(vmsgs.Len())
	vctx, stopVictim := context.WithCancel(runCtx)
	defer stopVictim()
	vdone := make(chan error, 1)
	go func() { vdone <- publish(vctx, vjs, vmsgs, r.cfg.FloodVictimRate, base, vsent) }()
	var fsent *sendLog
	fdone := make(chan error, 1)
	if floor {
		// The victim sends while the flood is being stored.
		fsent = newSendLog(floodN)
		err := publish(runCtx, r.js, floorMsgs{corpF.msgs}, 0, base, fsent)
		stopVictim()
		if err != nil {
			return 0, fmt.Errorf("bench: flood: %w", err)
		}
	} else if corpF != nil {
		fsent = newSendLog(floodN)
		go func() { fdone <- publish(runCtx, r.js, corpF.msgs, 0, base, fsent) }()
		// The victim sends while the flood is being decided: every flood
		// message has an output (all are denied).
		deadline := time.Now().Add(r.cfg.timeout())
		for obs.byRt[routeDeny].Load() < int64(floodN) {
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("bench: flood: %w (flood outputs %d of %d)", ErrTimeout, obs.byRt[routeDeny].Load(), floodN)
			}
			select {
			case err := <-s.errc:
				s.errc <- err
				return 0, fmt.Errorf("bench: flood: gateway: %w", err)
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
		stopVictim()
		if err := <-fdone; err != nil {
			return 0, fmt.Errorf("bench: flood: %w", err)
		}
	}
	if err := <-vdone; err != nil && !errors.Is(err, context.Canceled) {
		return 0, fmt.Errorf("bench: flood: victim: %w", err)
	}
	sent := int(vsent.sent.Load())
	if err := r.await(ctx, obs.expect(int64(len(primer)+floodOuts+sent)), s, r.cfg.timeout()); err != nil {
		return 0, fmt.Errorf("bench: flood: %w (outputs %d of %d)", err, obs.count.Load(), len(primer)+floodOuts+sent)
	}
	stopped = true
	stopRun()
	if err := s.stop(); err != nil {
		return 0, fmt.Errorf("bench: flood: stop: %w", err)
	}

	stored := vsent.stored
	if corpF != nil {
		if stored, err = r.storedTimes(ctx, vsent, sent, base); err != nil {
			return 0, err
		}
	}
	h, hs := newHistogram(), newHistogram()
	var maxUS, maxStored int64
	var waits [][2]int64 // stored, output, ns since base
	for i, seq := range vsent.seq[:sent] {
		t := obs.seen[seq].Load()
		if seq == 0 || t == 0 {
			continue
		}
		if route(obs.routes[seq].Load()) != routeAllow {
			return 0, fmt.Errorf("%w: a victim message was not allowed", ErrMismatch)
		}
		us := histUS(vsent.at[i], t)
		maxUS = max(maxUS, us)
		_ = h.RecordValue(us)
		st := histUS(vsent.at[i], stored[i])
		maxStored = max(maxStored, st)
		_ = hs.RecordValue(st)
		waits = append(waits, [2]int64{stored[i], t})
	}
	if corpF == nil {
		res.Quiet = latencyOf(h, maxUS)
		return sent, nil
	}
	res.Flooded, res.FloodedStored = latencyOf(h, maxUS), latencyOf(hs, maxStored)
	if floor {
		// Nothing of the flood may have reached the gateway.
		if n := obs.byRt[routeDeny].Load(); n != 0 {
			return 0, fmt.Errorf("%w: %d denials beside a flood nothing reads", ErrMismatch, n)
		}
		last := fsent.first
		for _, st := range fsent.stored {
			last = max(last, st)
		}
		if d := time.Duration(last - fsent.first); d > 0 {
			res.FloodSeconds = d.Seconds()
			res.FloodPerSec = float64(fsent.acked.Load()) / res.FloodSeconds
		}
		return sent, nil
	}
	var outs []int64 // the flood's output times, sorted
	for _, seq := range fsent.seq {
		if t := obs.seen[seq].Load(); seq != 0 && t != 0 {
			if route(obs.routes[seq].Load()) != routeDeny {
				return 0, fmt.Errorf("%w: a flood message was not denied", ErrMismatch)
			}
			outs = append(outs, t)
		}
	}
	slices.Sort(outs)
	if len(outs) > 0 {
		res.FloodSeconds = time.Duration(outs[len(outs)-1] - fsent.first).Seconds()
		res.FloodPerSec = float64(len(outs)) / res.FloodSeconds
	}
	ahead := make([]int, 0, len(waits))
	for _, w := range waits {
		from := sort.Search(len(outs), func(i int) bool { return outs[i] > w[0] })
		to := sort.Search(len(outs), func(i int) bool { return outs[i] >= w[1] })
		ahead = append(ahead, max(0, to-from))
	}
	slices.Sort(ahead)
	if len(ahead) > 0 {
		res.FloodAheadMax = ahead[len(ahead)-1]
		res.FloodAheadP99 = ahead[(len(ahead)*99)/100]
	}
	return sent, nil
}

// storedTimes returns when nats-server stored each of the first n
// messages of log in the ingress stream, in ns since base: the stored
// message's timestamp, which the server takes as it stores it. Where
// that time is not between the publish and the publisher's PubAck (the
// server's clock is not this process's), the PubAck's time stands in.
func (r *runner) storedTimes(ctx context.Context, log *sendLog, n int, base time.Time) ([]int64, error) {
	st, err := r.js.Stream(ctx, gateway.StreamIngress)
	if err != nil {
		return nil, fmt.Errorf("bench: flood: ingress stream: %w", err)
	}
	out := make([]int64, n)
	for i, seq := range log.seq[:n] {
		out[i] = log.stored[i]
		if seq == 0 {
			continue
		}
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			return nil, fmt.Errorf("bench: flood: ingress message %d: %w", seq, err)
		}
		if at := int64(m.Time.Sub(base)); at >= log.at[i] && at <= log.stored[i] {
			out[i] = at
		}
	}
	return out, nil
}

// only returns w with only tenant's agents.
func (w *world) only(tenant string) *world {
	c := *w
	c.agents = nil
	for _, a := range w.agents {
		if a.tenant == tenant {
			c.agents = append(c.agents, a)
		}
	}
	return &c
}

// batch is the gateway's batch size in this run.
func (r *runner) batch() int {
	if r.cfg.Batch > 0 {
		return r.cfg.Batch
	}
	return gateway.DefaultConfig().Consumer.Batch
}

// floorStream is the stream Config.FloodFloor publishes the flood to:
// the ingress stream's settings on subjects no gateway reads.
const (
	floorStream  = "AGENTGW_BENCH_FLOOR"
	floorSubject = "agentgw-bench-floor"
)

// createFloorStream creates the floor's stream afresh.
func (r *runner) createFloorStream(ctx context.Context) error {
	if err := r.js.DeleteStream(ctx, floorStream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("bench: delete stream %s: %w", floorStream, err)
	}
	sc := gateway.StreamConfigs(gateway.DefaultConfig().Streams, r.cfg.partitions())[0]
	sc.Name, sc.Description = floorStream, "agentgw bench: a flood nothing reads"
	sc.Subjects, sc.SubjectTransform = []string{floorSubject + ".>"}, nil
	if _, err := r.js.CreateStream(ctx, sc); err != nil {
		return fmt.Errorf("bench: create stream %s: %w", floorStream, err)
	}
	return nil
}

// floorMsgs are msgs on the floor stream's subjects.
type floorMsgs struct{ msgs msgSource }

func (f floorMsgs) Len() int { return f.msgs.Len() }

func (f floorMsgs) At(i int) *nats.Msg {
	m := f.msgs.At(i)
	return &nats.Msg{Subject: floorSubject + "." + m.Subject, Header: m.Header, Data: m.Data}
}
