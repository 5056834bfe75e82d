package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/store/journal"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestScaleOutAgainAfterSingleInstance: a deployment scaled out, then
// run as one instance, then scaled out again while the single
// instance's messages are fresh. The scaled-out owner rebuilds its
// ledger from the journal, which holds nothing the single instance
// decided: an exact copy of a message the single instance allowed is
// denied ledger_incomplete, not allowed again.
func TestScaleOutAgainAfterSingleInstance(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.cfg.Consumer.Partitions = 1
	a := h.startInstance("a")
	waitFor(t, func() bool { return a.held() == 1 })
	a.stop(t)
	js, err := h.js.Stream(ctx, journal.Stream)
	must(t, err)
	journaled := js.CachedInfo().State.LastTime

	h.start() // the same deployment, run as one instance
	<-h.gw.Ready()
	// The single instance refuses what was issued before the scaled-out
	// run's last journal record, the clocks' minute and the skew; its
	// message is issued just after that.
	h.clock.Advance(journaled.Add(journalClockMargin + h.cfg.Limits.Freshness().Grace() + time.Second).Sub(h.clock.Now()))
	first := h.body(nil)
	seq := h.send(first)
	h.wantAllowed(seq, "the single instance's message")
	h.waitAcked(seq)
	h.stop()
	if _, err := h.js.Stream(ctx, journal.Stream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("the journal of the scaled-out run is still there after a single instance ran: %v", err)
	}

	// Created again more than journalGap after the partition's consumer.
	time.Sleep(journalGap + time.Second)
	b := h.startInstance("b")
	waitFor(t, func() bool { return b.held() == 1 })
	h.wantReason(h.send(first), reason.LedgerIncomplete)
	b.stop(t)
}

// TestSingleInstanceAgainAfterScaleOutElsewhere: one instance on its
// data directory, then the deployment scaled out on others, then the
// one instance again on its old ledger, while the scaled-out messages
// are fresh. Its ledger never saw them; it takes them from the journal
// before it decides anything: a copy of one is denied replay_detected,
// not allowed again.
func TestSingleInstanceAgainAfterScaleOutElsewhere(t *testing.T) {
	h := newHarness(t)
	h.cfg.Consumer.Partitions = 1
	h.start()
	<-h.gw.Ready()
	h.wantAllowed(h.send(h.body(nil)), "a message of the single instance")
	h.stop()

	a := h.startInstance("a") // its own data directory
	waitFor(t, func() bool { return a.held() == 1 })
	first := h.firstAcked()
	a.stop(t)

	h.start()
	<-h.gw.Ready()
	out := h.outputFor(h.send(first))
	if got := out.Header.Get(header.Reason); got != string(reason.ReplayDetected) {
		t.Fatalf("a copy of a message the scaled-out instance allowed: route %s reason %q; want replay_detected",
			out.Header.Get(header.Route), got)
	}
	h.stop()
}

// TestSwitchToSingleReemitsInFlight: a scaled-out instance decides and
// publishes a message, and stops before it acknowledges it (its ack
// fails). A single instance started next finds it unacknowledged: it
// re-emits the outcome the journal holds, and the message ends once,
// not a second time as a denial.
func TestSwitchToSingleReemitsInFlight(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true
	h.cfg.Consumer.Partitions = 1
	a := h.startInstance("a")
	waitFor(t, func() bool { return a.held() == 1 })
	var failed atomic.Bool
	a.gw.beforeAck = func() error {
		if failed.CompareAndSwap(false, true) {
			return errors.New("the instance stops before its ack")
		}
		return nil
	}
	seq := h.send(h.body(nil))
	h.wantAllowed(seq, "the scaled-out instance's message")
	waitFor(t, failed.Load)
	a.stop(t)

	h.start()
	<-h.gw.Ready()
	h.waitAcked(seq)
	if outs := h.outputsFor(seq); len(outs) != 1 {
		t.Fatalf("ingress %d ends %d times: %v; want once", seq, len(outs), outs)
	}
	h.stop()
}

// TestSwitchToSingleWithFewerPartitions: scaled out on four partitions,
// then one instance on one. The journal's records of partitions the
// single instance has no consumer for cannot be taken in; what the
// journal holds up to its last record is then its loss. A copy of any
// message the scaled-out run allowed (agents spread over the four) is
// denied, not allowed again.
func TestSwitchToSingleWithFewerPartitions(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.cfg.Consumer.Partitions = 4
	a := h.startInstance("a")
	waitFor(t, func() bool { return a.held() == 4 })
	msgs := h.spreadAgents(16)
	for _, s := range msgs {
		h.wantAllowed(s.seq, "a message of the scaled-out run")
	}
	for p := range 4 {
		c, err := h.js.Consumer(ctx, StreamIngress, fmt.Sprintf("%s-p%d", h.cfg.Consumer.Durable, p))
		must(t, err)
		waitFor(t, func() bool { i, err := c.Info(ctx); return err == nil && i.NumAckPending == 0 && i.NumPending == 0 })
	}
	a.stop(t)

	h.cfg.Consumer.Partitions = 1
	h.start()
	<-h.gw.Ready()
	for i, s := range msgs {
		if out := h.outputFor(h.publish(s.subj, s.body, s.hdr)); out.Header.Get(header.Route) != "deny" {
			t.Errorf("copy %d: %s; want it denied", i, out.Subject)
		}
	}
	h.stop()
}
