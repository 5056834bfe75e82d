package gateway

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/internal/natstest"
)

// settle waits for what a restarted gateway might decide again: the
// redelivery of a tenant queue's messages comes at once, and a second
// output within this wait breaks the invariant below.
const settle = 3 * time.Second

// oneEndEach fails t unless every ingress message has exactly one output.
func oneEndEach(t *testing.T, h *harness) {
	t.Helper()
	r, err := invariant.Collect(context.Background(), h.js)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Errorf("invariant: %v", err)
	}
}

// drain waits until every consumer of the ingress stream has
// acknowledged everything it was given, and stops the gateway: ingress
// drained, as a change of the tenant queues asks.
func drain(t *testing.T, h *harness) {
	t.Helper()
	waitFor(t, func() bool {
		s, err := h.js.Stream(context.Background(), StreamIngress)
		if err != nil {
			return false
		}
		// Read the listing to its end: its goroutine sends each info
		// unbuffered and, left early, blocks for good.
		infos := s.ListConsumers(context.Background())
		idle := true
		for ci := range infos.Info() {
			idle = idle && ci.NumPending == 0 && ci.NumAckPending == 0
		}
		return idle && infos.Err() == nil
	})
	h.stop()
}

// fair_tenants on, then off with ingress drained, then on again: the
// tenant queues the second configuration did not read were deleted at
// its start, so the third creates them afresh and does not hand over
// again, as undecided, what the catch-all decided meanwhile.
func TestFairTenantsToggledDecidesOnce(t *testing.T) {
	h := newHarness(t)
	h.cfg.Consumer.FairTenants = true
	h.start()
	h.outputFor(h.send(h.body(nil)))
	drain(t, h)

	h.cfg.Consumer.FairTenants = false
	h.start()
	for range 3 {
		h.outputFor(h.send(h.body(nil)))
	}
	time.Sleep(settle) // acknowledged, and the outcomes pruned
	h.stop()

	h.cfg.Consumer.FairTenants = true
	h.clock.Advance(10 * time.Minute) // no longer fresh: decided again, they would be denied
	h.start()
	time.Sleep(settle)
	oneEndEach(t, h)
}

// A tenant removed (ingress drained) and added again: the same, for one
// tenant's queue.
func TestFairTenantReAddedDecidesOnce(t *testing.T) {
	h := newHarness(t)
	h.cfg.Consumer.FairTenants = true
	full := h.cfg.Tenants
	h.start()
	h.outputFor(h.send(h.body(nil)))
	drain(t, h)

	h.cfg.Tenants = map[string]TenantConfig{"tenant_b": full["tenant_b"]}
	h.start()
	h.outputFor(h.send(h.body(nil))) // denied: its issuer is no tenant's now
	time.Sleep(settle)
	h.stop()

	h.cfg.Tenants = full
	h.start()
	time.Sleep(settle)
	oneEndEach(t, h)
}

// runErr starts a gateway with cfg on h's server and returns what Run
// returned, or nil if it became ready.
func runErr(t *testing.T, h *harness, cfg Config) error {
	t.Helper()
	gw, err := New(cfg, append([]Option{WithClock(h.clock.Now), WithLogger(zerolog.New(h.logs)), WithConn(natstest.Connect(t, h.srv))}, h.opts...)...)
	must(t, err)
	defer gw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-gw.Ready():
		cancel()
		<-done
		return nil
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway neither started nor refused to")
		return nil
	}
}

// A tenant queue behind the catch-all (fair_tenants turned off without
// draining) refuses a start that would not read it: the catch-all
// acknowledged its messages undecided. Messages published while no
// gateway ran do not: the catch-all decides them once the queue is gone.
func TestUndrainedTenantQueueRefusesStart(t *testing.T) {
	h := newHarness(t)
	h.cfg.Consumer.FairTenants = true
	h.start()
	<-h.gw.Ready()
	h.outputFor(h.send(h.body(nil)))
	drain(t, h)
	stream, err := h.js.Stream(context.Background(), StreamIngress)
	must(t, err)
	off := h.body(nil)
	h.cfg.Consumer.FairTenants = false
	seq := h.send(off) // published while no gateway runs
	h.start()
	h.outputFor(seq)
	drain(t, h)

	cfg := h.cfg
	h.cfg.Consumer.FairTenants = true
	h.start()
	<-h.gw.Ready()
	name := tenantConsumerName(h.cfg.Consumer, 0, "tenant_a")
	_, err = stream.PauseConsumer(context.Background(), name, time.Now().Add(time.Hour))
	must(t, err)
	seq = h.send(h.body(nil)) // the catch-all acknowledges it as the paused queue's
	waitFor(t, func() bool {
		c, err := stream.Consumer(context.Background(), consumerConfig(h.cfg.Consumer, 0).Durable)
		return err == nil && c.CachedInfo().AckFloor.Stream >= seq
	})
	h.stop()
	if err := runErr(t, h, cfg); !errors.Is(err, errTenantQueues) {
		t.Errorf("start with fair_tenants off and a tenant queue behind the catch-all = %v; want %v", err, errTenantQueues)
	}
}

// Scaled out, an instance whose tenant queues differ from the server's
// does not start while another instance runs: one would decide a
// tenant's messages on its catch-all and the other on the tenant queue.
func TestScaleOutTenantQueuesChangeNeedsAllStopped(t *testing.T) {
	h := newHarness(t)
	h.cfg.Consumer.Partitions = 2
	h.cfg.Consumer.FairTenants = false
	b := h.startInstance("b")
	waitFor(t, func() bool { return b.held() == 2 })
	cfg := h.cfg
	cfg.Consumer.FairTenants = true
	cfg.DataDir = filepath.Join(h.dir, "data-a")
	cfg.ScaleOut = &ScaleOutConfig{Instance: "a", LeaseTTL: 2 * time.Second, LeaseRenew: 500 * time.Millisecond, LeaseMargin: 400 * time.Millisecond}
	if err := runErr(t, h, cfg); !errors.Is(err, errTenantQueues) {
		t.Errorf("fair_tenants turned on while instance b runs without: %v; want %v", err, errTenantQueues)
	}
	b.stop(t)
	time.Sleep(3 * time.Second) // b's member heartbeat expires (lease TTL 2 s)
	if err := runErr(t, h, cfg); err != nil {
		t.Errorf("fair_tenants turned on with every instance stopped: %v", err)
	}
}
