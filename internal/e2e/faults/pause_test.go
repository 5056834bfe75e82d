package faults

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/internal/procs"
)

// TestPausePastAckWait stops the gateway (SIGSTOP) under load for longer
// than its AckWait (2 s) and resumes it (SIGCONT), several times. While
// it is stopped, JetStream gives up on the messages delivered to it and
// redelivers them: a probe pulls from the gateway's durable consumer
// during the pause (a second worker that then gives up: it naks them).
// The resumed gateway finishes what it had in hand, acknowledging late,
// and meets the redeliveries, which it must re-emit from the ledger
// rather than decide again: exactly one output per message.
func TestPausePastAckWait(t *testing.T) {
	t.Parallel()
	start := time.Now()
	rng := newRand(t)
	e := newEnv(t, envOptions{ackWait: 2 * time.Second, batch: 16})
	e.startGateway()
	l := newLoad(t, e, 150)
	l.start()
	defer l.stop()
	l.waitSent(100, 30*time.Second)
	faults := map[string]int{}
	var redelivered int
	for range 3 {
		time.Sleep(jitter(rng, 300*time.Millisecond, 1500*time.Millisecond))
		pauseHolding(t, e, rng)
		faults["pause_gateway"]++
		time.Sleep(jitter(rng, e.opts.ackWait+500*time.Millisecond, 2*e.opts.ackWait))
		redelivered += probeRedeliveries(t, e)
		must(t, e.gw.Resume())
	}
	time.Sleep(2 * time.Second)
	l.stop()
	settle(t, e, 90*time.Second)
	if !e.gw.Running() || e.gw.Starts() != 1 {
		t.Errorf("the gateway did not survive the pauses (running %v, starts %d):\n%s", e.gw.Running(), e.gw.Starts(), tailLog(e.gw.LogPath()))
	}
	r := check(t, e, l)
	t.Logf("redeliveries seen by the probe while the gateway was stopped: %d", redelivered)
	if redelivered == 0 {
		t.Error("no message was redelivered while the gateway was stopped past its AckWait: the fault did not happen")
	}
	report(t, r, faults, start)
}

// pauseHolding stops the gateway at a moment it holds delivered,
// unacknowledged messages (a batch in hand): it pauses, looks at the
// consumer, and resumes and tries again a little later if the gateway was
// between batches. Those short pauses are faults too, just not counted.
func pauseHolding(t testing.TB, e *env, rng *mrand.Rand) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		must(t, e.gw.Pause())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		info, err := e.consumerInfo(ctx)
		cancel()
		must(t, err)
		if info.NumAckPending > 0 || attempt == 50 {
			return
		}
		must(t, e.gw.Resume())
		time.Sleep(jitter(rng, 5*time.Millisecond, 60*time.Millisecond))
	}
}

// probeRedeliveries pulls from the gateway's durable consumer while the
// gateway is stopped, counts the messages JetStream redelivers (delivered
// before, not acknowledged within AckWait) and naks everything it got so
// the gateway receives it again.
func probeRedeliveries(t testing.TB, e *env) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, gateway.StreamIngress, "agentgw")
	must(t, err)
	// MaxRequestBatch is the gateway's batch size.
	batch, err := c.Fetch(e.opts.batch, jetstream.FetchMaxWait(500*time.Millisecond))
	must(t, err)
	n := 0
	for m := range batch.Messages() {
		if md, err := m.Metadata(); err == nil && md.NumDelivered > 1 {
			n++
		}
		_ = m.Nak()
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("probe fetch: %v", err)
	}
	return n
}

func tailLog(path string) string { return procs.Tail(path, 3000) }
