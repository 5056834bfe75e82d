package gateway

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/header"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/reason"
	"github.com/agentgw/agentgw/store"
)

// instance is one scaled-out gateway of a test, on its own connection.
type instance struct {
	gw     *Gateway
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

func (h *harness) startInstance(name string) *instance {
	h.t.Helper()
	cfg := h.cfg
	cfg.DataDir = filepath.Join(h.dir, "data-"+name)
	cfg.ScaleOut = &ScaleOutConfig{Instance: name, LeaseTTL: 2 * time.Second, LeaseRenew: 500 * time.Millisecond, LeaseMargin: 400 * time.Millisecond}
	nc := natstest.Connect(h.t, h.srv)
	logger := zerolog.New(h.logs).With().Str("instance", name).Timestamp().Logger()
	gw, err := New(cfg, append([]Option{WithClock(h.clock.Now), WithLogger(logger), WithConn(nc)}, h.opts...)...)
	must(h.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{gw: gw, nc: nc, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- gw.Run(ctx) }()
	h.t.Cleanup(func() { in.stop(h.t) })
	return in
}

func (in *instance) stop(t testing.TB) {
	if in.gw == nil {
		return
	}
	in.cancel()
	if err := <-in.done; err != nil && !in.nc.IsClosed() {
		t.Errorf("gateway Run: %v", err)
	}
	if err := in.gw.Close(); err != nil {
		t.Errorf("gateway Close: %v", err)
	}
	in.gw = nil
}

// held is the number of partitions the instance holds now.
func (in *instance) held() int {
	select {
	case <-in.gw.Ready():
	default:
		return 0
	}
	in.gw.scale.mu.Lock()
	defer in.gw.scale.mu.Unlock()
	return len(in.gw.scale.live)
}


// TestScaleOutSharesPartitionsAndFailsOver: two instances split four
// partitions, each deciding its agents' messages; when one dies without
// releasing anything (its connection cut), the other takes its
// partitions after the lease TTL, rebuilds their ledgers from the
// journal, and denies a replay of a message the dead one allowed.
func TestScaleOutSharesPartitionsAndFailsOver(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true // the cut connection is logged as an error
	h.cfg.Consumer.Partitions = 4
	a, b := h.startInstance("a"), h.startInstance("b")
	waitFor(t, func() bool { return a.held() == 2 && b.held() == 2 })

	// Agents spread over the partitions.
	type sent struct {
		body []byte
		hdr  nats.Header
		subj string
		seq  uint64
	}
	var msgs []sent
	for range 16 {
		ag := newActor(t)
		ag.token = h.credential(h.issuer, ag, "tenant_a", []string{"kb:read"}, time.Hour, "")
		body := h.body(nil)
		s := sent{body: body, hdr: h.signed(ag, ag.token, body), subj: h.ingress(ag, "tenant_a")}
		s.seq = h.publish(s.subj, s.body, s.hdr)
		msgs = append(msgs, s)
	}
	for _, s := range msgs {
		if out := h.outputFor(s.seq); out.Header.Get(header.Route) != string(store.RouteAllow) {
			t.Fatalf("message %d: route %s (%s); want allow", s.seq, out.Header.Get(header.Route), out.Header.Get(header.Reason))
		}
	}
	da, db := a.gw.Stats().Decided.Load(), b.gw.Stats().Decided.Load()
	if da == 0 || db == 0 || da+db != uint64(len(msgs)) {
		t.Fatalf("decisions a=%d b=%d; want both > 0 summing to %d", da, db, len(msgs))
	}

	// a dies: no graceful release, no more renewals.
	a.nc.Close()
	waitFor(t, func() bool { return b.held() == 4 })

	// Every message replayed: all denied, including those a allowed.
	for _, s := range msgs {
		seq := h.publish(s.subj, s.body, s.hdr)
		h.wantReason(seq, reason.ReplayDetected)
	}
	// New traffic still flows.
	fresh := h.send(h.body(nil))
	if out := h.outputFor(fresh); out.Header.Get(header.Route) != string(store.RouteAllow) {
		t.Fatalf("after failover: route %s (%s); want allow", out.Header.Get(header.Route), out.Header.Get(header.Reason))
	}
	r, err := invariant.Wait(context.Background(), h.js, 15*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
	b.stop(t)
	a.stop(t)
	h.scanSecrets()
	h.validateAudit()
}

