package gateway

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/store/journal"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestJournalLoss: a journal created within the window, and more than a
// few seconds after the partition's consumer, was deleted and created
// again: it lacks what was decided before its creation (and the clocks'
// minute). Created with the consumer (a fresh deployment, or both
// deleted together), or before the window, it lacks nothing anyone can
// use.
func TestJournalLoss(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	since := now.Add(-7 * time.Minute)
	for _, tc := range []struct {
		name              string
		journal, consumer time.Time
		want              time.Time
	}{
		{"created-together", now.Add(-time.Minute), now.Add(-time.Minute - time.Millisecond), time.Time{}},
		{"consumer-after", now.Add(-time.Minute), now.Add(-time.Minute + time.Second), time.Time{}},
		{"created-again", now.Add(-time.Minute), now.Add(-time.Hour), now.Add(-time.Minute + journalClockMargin)},
		{"created-again-just", now.Add(-time.Minute), now.Add(-time.Minute - journalGap - time.Nanosecond), now.Add(-time.Minute + journalClockMargin)},
		{"within-gap", now.Add(-time.Minute), now.Add(-time.Minute - journalGap), time.Time{}},
		{"before-window", since.Add(-time.Second), now.Add(-time.Hour), time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := journalLoss(&jetstream.StreamInfo{Created: tc.journal}, &jetstream.ConsumerInfo{Created: tc.consumer}, since)
			if !got.Equal(tc.want) {
				t.Errorf("journalLoss = %s; want %s", got, tc.want)
			}
		})
	}
}

// order is a request with its own idempotency key, fresh for the
// longest time allowed.
func (h *harness) order(b *envelope.Builder) {
	b.IdempotencyKey, b.TTL = "order-1", h.cfg.Limits.MaxTTL
}

// wantAllowed fails the test unless ingress message seq was allowed.
func (h *harness) wantAllowed(seq uint64, what string) {
	h.t.Helper()
	if got := h.outputFor(seq).Header.Get(header.Route); got != "allow" {
		h.t.Fatalf("%s: %s (%s); want allow", what, got, h.outputFor(seq).Header.Get(header.Reason))
	}
}

// afterLoss checks a ledger that lost records, once the clocks' minute
// and the skew have passed on the harness's clock (which began at the
// real time the test started): a copy of first (allowed before the
// loss) and a retry of its request (h.order) under a new message id are
// denied ledger_incomplete, a new message is allowed, and the loss was
// logged as logged says.
func (h *harness) afterLoss(first []byte, logged string) {
	h.t.Helper()
	h.clock.Advance(2*journalClockMargin + h.cfg.Limits.Skew)
	h.wantReason(h.send(first), reason.LedgerIncomplete)
	h.wantReason(h.send(h.body(h.order)), reason.LedgerIncomplete)
	h.wantAllowed(h.send(h.body(nil)), "a message issued after the loss")
	if !strings.Contains(h.logs.String(), logged) {
		h.t.Errorf("the loss was not logged (%q)", logged)
	}
}

// waitAcked waits until the one-partition ingress consumer has
// acknowledged seq. A scaled-out instance stopped before that leaves the
// message to the partition's next owner, which would find its outcome in
// the journal: not in a journal that is then lost, so it would decide it
// a second time (design.md, limits).
func (h *harness) waitAcked(seq uint64) {
	h.t.Helper()
	c, err := h.js.Consumer(context.Background(), StreamIngress, h.cfg.Consumer.Durable)
	must(h.t, err)
	waitFor(h.t, func() bool {
		info, err := c.Info(context.Background())
		return err == nil && info.NumAckPending == 0 && info.AckFloor.Stream >= seq
	})
}

// firstAcked sends a request with its own idempotency key (h.order),
// checks that it is allowed and waits for its acknowledgement, and
// returns its body.
func (h *harness) firstAcked() []byte {
	h.t.Helper()
	first := h.body(h.order)
	seq := h.send(first)
	h.wantAllowed(seq, "first message")
	h.waitAcked(seq)
	return first
}

// TestScaleOutJournalCreatedAgain: the journal is deleted while the
// deployment goes on, and the next owner creates it again, empty. Its
// rebuilt ledger knows nothing decided before. A copy of a message
// allowed then, and a retry of that request under a new message id,
// would each be allowed a second time; both are denied
// ledger_incomplete. A message issued after the loss is decided as
// usual, and once a freshness span has passed so is a request with an
// idempotency key of its own.
func TestScaleOutJournalCreatedAgain(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.cfg.Consumer.Partitions = 1
	a := h.startInstance("a")
	waitFor(t, func() bool { return a.held() == 1 })
	first := h.firstAcked()
	a.stop(t)
	must(t, h.js.DeleteStream(ctx, journal.Stream))
	// Created again more than journalGap after the partition's consumer.
	time.Sleep(journalGap + time.Second)
	b := h.startInstance("b")
	waitFor(t, func() bool { return b.held() == 1 })
	h.afterLoss(first, "the journal lost records")
	h.clock.Advance(h.cfg.Limits.Freshness().Span())
	later := h.body(func(b *envelope.Builder) { b.IdempotencyKey = "order-2" })
	h.wantAllowed(h.send(later), "a request with its own idempotency key a freshness span after the loss")
	h.endScaleOut(t, b, a)
}

// TestScaleOutJournalPurged: the journal is purged under its live owner.
// Its next append finds its claim gone within the age limit, marks the
// loss and ends the tenure; the partition is rebuilt from the emptied
// journal, and no longer knows what it decided. The message whose batch
// found the loss, a copy of a message allowed before and a retry of that
// request under a new message id are denied ledger_incomplete; a message
// issued after the loss is allowed.
func TestScaleOutJournalPurged(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.allowErrors = true // the append that finds the loss ends the tenure, logged as an error
	h.cfg.Consumer.Partitions = 1
	a := h.startInstance("a")
	waitFor(t, func() bool { return a.held() == 1 })
	first := h.firstAcked()
	js, err := h.js.Stream(ctx, journal.Stream)
	must(t, err)
	must(t, js.Purge(ctx))

	h.wantReason(h.send(h.body(nil)), reason.LedgerIncomplete)
	h.afterLoss(first, "the journal lost records")
	h.endScaleOut(t, a)
}

// startWithoutLedger starts the stopped gateway again with its ledger
// directory gone, and waits until it is ready.
func (h *harness) startWithoutLedger() {
	h.t.Helper()
	must(h.t, os.RemoveAll(filepath.Join(h.cfg.DataDir, "ledger")))
	h.start()
	<-h.gw.Ready()
}

// TestNewLedgerAfterDecisions: a single instance's ledger directory is
// lost and the gateway starts with a new one while its consumer has
// acknowledged messages. A copy of a message allowed before and a retry
// of that request under a new message id are denied ledger_incomplete; a
// message issued after the start is allowed. The ledger keeps what it
// lacks across a restart: the retry is still denied while a request made
// before could be in force, and allowed after.
func TestNewLedgerAfterDecisions(t *testing.T) {
	h := newHarness(t)
	h.start()
	first := h.body(h.order)
	h.wantAllowed(h.send(first), "first message")
	h.stop()
	h.startWithoutLedger()
	h.afterLoss(first, "the ledger is new but messages were decided before it")
	h.stop()
	h.start()
	<-h.gw.Ready()
	h.wantReason(h.send(h.body(h.order)), reason.LedgerIncomplete)
	h.clock.Advance(h.cfg.Limits.Freshness().Span())
	h.wantAllowed(h.send(h.body(h.order)), "the retry a freshness span after the loss")
	h.stop()
	h.scanSecrets()
}

// wantNothingLost fails the test unless the running gateway's ledger
// was told apart (not New) and lacks nothing.
func (h *harness) wantNothingLost() {
	h.t.Helper()
	if h.gw.ledger.New() || !h.gw.ledger.LostBefore().IsZero() {
		h.t.Fatalf("ledger: New %v, LostBefore %v; want told apart, nothing lost", h.gw.ledger.New(), h.gw.ledger.LostBefore())
	}
}

// TestNewLedgerOfANewDeployment: a gateway whose consumer has
// acknowledged nothing starts with a new ledger that lacks nothing.
func TestNewLedgerOfANewDeployment(t *testing.T) {
	h := newHarness(t)
	h.start()
	<-h.gw.Ready()
	h.wantNothingLost()
	h.wantAllowed(h.send(h.body(h.order)), "first message")
	h.stop()
}

// TestLedgerLossLeavesApprovalsAlone: after a loss, a request held for
// approval is granted by an answer under the approvers' SDK key
// ("approve-<held id>", not the answer's message id): the hold it takes
// makes it single-use, so the idempotency rule does not refuse it, and
// the request is delivered.
func TestLedgerLossLeavesApprovalsAlone(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.wantAllowed(h.send(h.body(nil)), "first message")
	h.stop()
	h.startWithoutLedger()
	h.clock.Advance(2*journalClockMargin + h.cfg.Limits.Skew)
	body := h.heldRequest()
	held := h.send(body)
	if got := h.outputFor(held).Header.Get(header.Route); got != "approval" {
		t.Fatalf("held request: %s; want approval", got)
	}
	env, err := envelope.Parse(body, envelope.Limits{})
	must(t, err)
	req := h.approvalRequest(env.MessageID)
	ap := newActor(t)
	ap.token = h.credential(h.issuer, ap, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
	raw, err := json.Marshal(approval.Answer{Decision: approval.Grant, BodyDigest: req.BodyDigest, PolicyVersion: req.PolicyVersion})
	must(t, err)
	answer := h.body(func(b *envelope.Builder) {
		b.Capability, b.Target = envelope.Approve, req.HeldMessageID
		b.IdempotencyKey = "approve-" + req.HeldMessageID
		b.Payload = envelope.Payload{Plain: raw}
	})
	out := h.outputFor(h.publish(h.ingress(ap, "tenant_a"), answer, h.signed(ap, ap.token, answer)))
	if !strings.HasPrefix(out.Subject, "agentgw.cap.tenant_a.payments.send") {
		t.Fatalf("the granted request went to %s (%s); want its capability subject", out.Subject, out.Header.Get(header.Reason))
	}
	h.stop()
}

// TestNewLedgerOnAStartedAfresh: the ingress stream is purged and its
// consumer deleted with the ledger (a fresh start on an old stream): the
// new consumer has delivered nothing, though its ack floor starts below
// its first message, so the new ledger lacks nothing.
func TestNewLedgerOnAStartedAfresh(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.start()
	h.wantAllowed(h.send(h.body(nil)), "first message")
	h.stop()
	st, err := h.js.Stream(ctx, StreamIngress)
	must(t, err)
	names := st.ConsumerNames(ctx)
	for name := range names.Name() {
		must(t, st.DeleteConsumer(ctx, name))
	}
	must(t, names.Err())
	must(t, st.Purge(ctx))
	h.startWithoutLedger()
	h.wantNothingLost()
	h.wantAllowed(h.send(h.body(h.order)), "a request with its own idempotency key")
	h.stop()
}

// TestJournalCreatedBeforeConsumers: a new scaled-out deployment creates
// its journal before its ingress consumers, however long creating the
// consumers takes, so journalLoss never takes a new journal for one
// created again.
func TestJournalCreatedBeforeConsumers(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.cfg.Consumer.Partitions = 2
	a := h.startInstance("a")
	waitFor(t, func() bool { return a.held() == 2 })
	st, err := h.js.Stream(ctx, journal.Stream)
	must(t, err)
	in, err := h.js.Stream(ctx, StreamIngress)
	must(t, err)
	names := in.ConsumerNames(ctx)
	n := 0
	for name := range names.Name() {
		c, err := in.Consumer(ctx, name)
		must(t, err)
		if created := c.CachedInfo().Created; created.Before(st.CachedInfo().Created) {
			t.Errorf("consumer %s created at %s, before the journal (%s)", name, created, st.CachedInfo().Created)
		}
		n++
	}
	must(t, names.Err())
	if n == 0 {
		t.Fatal("no ingress consumers")
	}
	a.stop(t)
}

// TestJournalAgeLimitCutShort: while the deployment runs, the journal's
// age limit is edited below what the ledger needs, and records a fresh
// message depends on age out. The partition's next owner finds the limit
// short and denies what it can no longer know: a copy of a message
// allowed before, and a retry of its request.
func TestJournalAgeLimitCutShort(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.allowErrors = true // the short age limit is logged as an error
	h.cfg.Consumer.Partitions = 1
	a := h.startInstance("a")
	waitFor(t, func() bool { return a.held() == 1 })
	b := h.startInstance("b")
	first := h.firstAcked()
	sc := journal.StreamConfig(journal.Config{MaxAge: h.cfg.journalMaxAge(), Replicas: 1})
	sc.MaxAge, sc.Duplicates = time.Second, time.Second
	_, err := h.js.UpdateStream(ctx, sc)
	must(t, err)
	st, err := h.js.Stream(ctx, journal.Stream)
	must(t, err)
	waitFor(t, func() bool {
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	a.stop(t)
	waitFor(t, func() bool { return b.held() == 1 })
	h.afterLoss(first, "the journal stream's max age is shorter than the ledger needs")
	h.endScaleOut(t, b, a)
}
