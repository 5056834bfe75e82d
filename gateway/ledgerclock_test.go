package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestScaleOutMarksSingleLedgerNew: a single instance's ledger is kept
// in its data directory when the deployment scales out; run as one
// instance again, it would lack what the scaled-out instances decided.
// Scaling out marks it New, so the single instance checks it as a lost
// one, and takes the journal's records into it before it decides
// anything: a copy of a message allowed while scaled out is denied
// (replay_detected: its record was in the journal), not allowed a
// second time.
func TestScaleOutMarksSingleLedgerNew(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true
	h.start()
	<-h.gw.Ready()
	h.wantAllowed(h.send(h.body(nil)), "single-instance message")
	h.stop()

	// The same host scaled out: the same data directory.
	so := h.cfg
	so.ScaleOut = &ScaleOutConfig{Instance: "a", LeaseTTL: 2 * time.Second, LeaseRenew: 500 * time.Millisecond, LeaseMargin: 400 * time.Millisecond}
	h.leaseBucketTTL(2 * time.Second)
	nc := natstest.Connect(t, h.srv)
	gw, err := New(so, append([]Option{WithClock(h.clock.Now), WithLogger(zerolog.New(h.logs)), WithConn(nc)}, h.opts...)...)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{gw: gw, nc: nc, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- gw.Run(ctx) }()
	<-gw.Ready()
	waitFor(t, func() bool { return in.held() == h.cfg.Consumer.Partitions })
	h.clock.Advance(2*journalClockMargin + h.cfg.Limits.Skew)
	scaled := h.body(nil)
	seq := h.send(scaled)
	h.wantAllowed(seq, "message allowed while scaled out")
	h.waitAcked(seq)
	in.stop(t)

	h.start()
	<-h.gw.Ready()
	h.wantReason(h.send(scaled), reason.ReplayDetected)
	if !strings.Contains(h.logs.String(), "single-instance ledger is marked new") {
		t.Error("scaling out did not log that it marked the single-instance ledger")
	}
}

// TestRebuildWindowFromServerClock: a partition's ledger is rebuilt from
// the journal records of the window counted back from the NATS server's
// clock. A gateway whose clock was ahead at the rebuild still has the
// record of a message decided before, and denies a copy of it once its
// clock is set back.
func TestRebuildWindowFromServerClock(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true
	a := h.startInstance("a")
	first := h.body(nil)
	seq := h.send(first)
	h.wantAllowed(seq, "first message")
	h.waitAcked(seq)
	a.stop(t)

	ahead := h.cfg.journalMaxAge() + time.Minute
	h.clock.Advance(ahead)
	b := h.startInstance("b")
	waitFor(t, func() bool { return b.held() == h.cfg.Consumer.Partitions })
	h.clock.Advance(-ahead)
	h.wantReason(h.send(first), reason.ReplayDetected)
	h.endScaleOut(t, b)
}

// TestRebuildClockBehindServer: a gateway whose clock is behind the NATS
// server's by more than the clocks' margin could judge a message fresh
// whose journal record the server's clock has aged out. It denies what
// may have been decided before its rebuild ledger_incomplete, and says
// why.
func TestRebuildClockBehindServer(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true
	h.clock.Advance(-5 * time.Minute)
	h.agent.token = h.credential(h.issuer, h.agent, "tenant_a", []string{"kb:read"}, time.Hour, "")
	in := h.startInstance("a")
	waitFor(t, func() bool { return in.held() == h.cfg.Consumer.Partitions })
	h.wantReason(h.send(h.body(nil)), reason.LedgerIncomplete)
	if !strings.Contains(h.logs.String(), "behind the NATS server's") {
		t.Error("the clocks' disagreement was not logged")
	}
	h.endScaleOut(t, in)
}
