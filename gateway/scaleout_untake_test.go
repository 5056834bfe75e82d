package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/store/journal"
	"github.com/agentgw/agentgw/subjects/reason"
)

// unackedHarness is a scaled-out harness of one partition whose
// messages come back only by recovery (ack_wait an hour).
func unackedHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.allowErrors = true
	h.cfg.Consumer.Partitions = 1
	h.cfg.Consumer.AckWait = time.Hour
	h.opts = append(h.opts, func(g *Gateway) { g.expireEvery = 100 * time.Millisecond })
	return h
}

// editCatalog replaces old by new in h's catalog file, before the start.
func editCatalog(t *testing.T, h *harness, old, new string) {
	cat, err := os.ReadFile(h.cfg.Catalog)
	must(t, err)
	edited := strings.Replace(string(cat), old, new, 1)
	if edited == string(cat) {
		t.Fatalf("test catalog: %q not found", old)
	}
	must(t, os.WriteFile(h.cfg.Catalog, []byte(edited), 0o600))
}

// startSkippingAck starts instance a, which leaves the batch after skip
// is set unacknowledged, once.
func (h *harness) startSkippingAck() (*instance, *atomic.Bool) {
	skip := new(atomic.Bool)
	a := h.startInstance("a", func(in *instance) {
		in.gw.beforeAck = func() error {
			if skip.CompareAndSwap(true, false) {
				return errors.New("test: this batch is never acknowledged")
			}
			return nil
		}
	})
	waitFor(h.t, func() bool { return a.held() == 1 })
	return a, skip
}

// ageOut waits until seq is a's one unacknowledged message, stops a, and
// purges the journal: what journal_max_age does to seq's records.
func (h *harness) ageOut(a *instance, seq uint64) {
	ctx := context.Background()
	cons, err := h.js.Consumer(ctx, StreamIngress, h.cfg.Consumer.Durable)
	must(h.t, err)
	waitFor(h.t, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 1 && info.Delivered.Stream == seq
	})
	a.stop(h.t)
	js, err := h.js.Stream(ctx, journal.Stream)
	must(h.t, err)
	must(h.t, js.Purge(ctx))
}

// TestRedecidedGrantKeepsTakeOfUnknownFate: a grant takes a hold and
// releases the held request (the release is stored), but is not
// acknowledged (a hook here; a kill between its PubAcks and its ack and a
// partition left without an owner, or a full output stream, for longer
// than the journal's retention). Its journal records age out (a purge
// here, as in TestScaleOutRecoveryAfterJournalLoss) and its partition
// changes owner, which decides the grant again (message_expired by then).
// The new owner cannot know whether the first decision was published, so
// it must not give the take back: given back, the request was released a
// second time by the next grant (a target approval_ttl longer than the
// journal's retention), or ended a second time by the expiry scan (the
// defaults).
func TestRedecidedGrantKeepsTakeOfUnknownFate(t *testing.T) {
	t.Run("target-approval-ttl-2h", func(t *testing.T) { redecidedGrantKeepsTake(t, true) })
	t.Run("defaults", func(t *testing.T) { redecidedGrantKeepsTake(t, false) })
}

func redecidedGrantKeepsTake(t *testing.T, longTTL bool) {
	ctx := context.Background()
	h := unackedHarness(t)
	if longTTL {
		// limits.approval_ttl keeps its default (15m); the target's own
		// is longer than the journal's retention.
		editCatalog(t, h, "    approver_visible: [amount_cents]\n", "    approver_visible: [amount_cents]\n    approval_ttl: 2h\n")
	}
	a, skipAck := h.startSkippingAck()
	heldSeq := h.send(h.heldRequest())
	var req approval.Request
	must(t, json.Unmarshal(h.outputFor(heldSeq).Data, &req))
	skipAck.Store(true)
	grantSeq := h.grant(req)
	if out := h.outputFor(grantSeq); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("first grant: %s %q; want the release", out.Subject, out.Header.Get(header.Reason))
	}
	h.ageOut(a, grantSeq)
	h.clock.Advance(20 * time.Minute)

	b := h.startInstance("b")
	waitFor(t, func() bool { return b.held() == 1 })
	d := h.waitIn(StreamDenied, grantSeq, func(*jetstream.RawStreamMsg) bool { return true })
	t.Logf("grant decided again: %s %q", d.Subject, d.Header.Get(header.Reason))
	kv, err := h.js.KeyValue(ctx, HoldsBucket)
	must(t, err)
	if !longTTL {
		// The hold given back is past its deadline: the expiry scan ends
		// the request, which the first grant released, a second time.
		time.Sleep(time.Second)
		rel, exp := h.fates(req.HeldMessageID)
		if rel != 1 || exp != 0 {
			t.Errorf("held request released %d times, expired %d times; want released once, never expired", rel, exp)
		}
		b.stop(t)
		return
	}
	e, err := kv.Get(ctx, holdKey(holdID("tenant_a", req.HeldMessageID)))
	must(t, err)
	var kh kvHold
	must(t, json.Unmarshal(e.Value(), &kh))
	if kh.State != kvTaken || kh.TakenBy != grantSeq {
		t.Errorf("hold after the grant was decided again: %s by %d; want still taken by the grant (%d)", kh.State, kh.TakenBy, grantSeq)
	}
	second := h.grant(req)
	out := h.outputFor(second)
	rel, exp := h.fates(req.HeldMessageID)
	if rel != 1 || exp != 0 {
		t.Errorf("held request released %d times, expired %d times (second grant: %s %q); want released once, the second grant refused",
			rel, exp, out.Subject, out.Header.Get(header.Reason))
	}
	b.stop(t)
}

// TestRedecidedResponseKeepsAnswerOfUnknownFate: a response uses up its
// request's one answer and its reply is stored, but it is not
// acknowledged; its journal records age out and its partition changes
// owner, which decides it again and refuses it (the responder's
// credential has expired meanwhile). Not knowing whether the reply was
// published, the new owner must not give the answer back: given back, a
// second response reached the requester too.
func TestRedecidedResponseKeepsAnswerOfUnknownFate(t *testing.T) {
	h := unackedHarness(t)
	// An answer window long enough for the second response to be issued
	// after what the purge below makes the new owner refuse
	// (ledger_incomplete, a minute past the purge, by the server's clock).
	editCatalog(t, h, "response_deadline: 1m\n", "response_deadline: 10m\n")
	const lifetime = 10 * time.Second
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.*"}, lifetime, "")
	a, skipAck := h.startSkippingAck()
	env := h.deliveredRefund()
	skipAck.Store(true)
	first := h.respond(h.consumer, env.MessageID, `{"refund_id":"r1","status":"drafted"}`)
	replySubject := "agentgw.reply.tenant_a." + h.agent.pub
	if out := h.outputFor(first); out.Subject != replySubject {
		t.Fatalf("first response: %s %q; want the reply", out.Subject, out.Header.Get(header.Reason))
	}
	h.ageOut(a, first)
	// Past the responder's credential, within the request's answer window.
	h.clock.Advance(lifetime + h.cfg.Limits.Skew + 2*time.Second)
	b := h.startInstance("b")
	waitFor(t, func() bool { return b.held() == 1 })
	if d := h.waitIn(StreamDenied, first, func(*jetstream.RawStreamMsg) bool { return true }); reason.Code(d.Header.Get(header.Reason)) != reason.CredentialExpired {
		t.Fatalf("response decided again: %s %q; want denied %s", d.Subject, d.Header.Get(header.Reason), reason.CredentialExpired)
	}
	h.clock.Advance(3 * time.Minute)
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.*"}, time.Hour, "")
	again := h.outputFor(h.respond(h.consumer, env.MessageID, `{"refund_id":"r2","status":"drafted"}`))
	if n := len(h.replies()); n != 1 || again.Subject == replySubject {
		t.Errorf("%d replies, the second response went to %s %q; want one reply, the second response refused",
			n, again.Subject, again.Header.Get(header.Reason))
	}
	b.stop(t)
}

// TestRedecidedGrantKeepsTakeUnderShorterJournalAge: a rolling change
// that lengthens the journal's retention (scale_out.journal_max_age, and
// limits.approval_ttl, which the minimum retention follows). The journal
// ran with the old instances' age limit (a little over a minute with
// these limits); the new instance sets three hours at its start, before it
// rebuilds, so neither its own limits nor the stream's settings say what
// the old limit removed. A grant releases its held request, is not
// acknowledged, and its partition has no owner for longer than the old
// limit, which removes its records (not a loss any writer marks). The
// new instance must not take those records for never written: the
// grant's fate is unknown, and its take is kept.
func TestRedecidedGrantKeepsTakeUnderShorterJournalAge(t *testing.T) {
	ctx := context.Background()
	h := unackedHarness(t)
	h.cfg.Limits.MaxTTL, h.cfg.Limits.Skew, h.cfg.Limits.ApprovalTTL = 10*time.Second, time.Second, 10*time.Second
	// The journal's window includes ack_wait: the harness's 2 s, not
	// unackedHarness's hour (nothing runs to redeliver the grant while
	// its records age out).
	h.cfg.Consumer.AckWait = 2 * time.Second
	editCatalog(t, h, "    approver_visible: [amount_cents]\n", "    approver_visible: [amount_cents]\n    approval_ttl: 2h\n")
	a, skipAck := h.startSkippingAck()
	js, err := h.js.Stream(ctx, journal.Stream)
	must(t, err)
	oldAge := js.CachedInfo().Config.MaxAge

	held := h.body(func(bb *envelope.Builder) {
		bb.Capability, bb.Target, bb.TTL = envelope.ToolCall, "payments.send", 10*time.Second
		bb.Payload = envelope.Payload{Plain: json.RawMessage(`{"amount_cents":990000,"iban":"DE00123"}`)}
	})
	var req approval.Request
	must(t, json.Unmarshal(h.outputFor(h.send(held)).Data, &req))
	grant := func() uint64 {
		ap := newActor(t)
		ap.token = h.credential(h.issuer, ap, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
		raw, err := json.Marshal(approval.Answer{Decision: approval.Grant, BodyDigest: req.BodyDigest, PolicyVersion: req.PolicyVersion})
		must(t, err)
		body := h.body(func(bb *envelope.Builder) {
			bb.Capability, bb.Target, bb.TTL = envelope.Approve, req.HeldMessageID, 10*time.Second
			bb.Payload = envelope.Payload{Plain: raw}
		})
		return h.publish(h.ingress(ap, "tenant_a"), body, h.signed(ap, ap.token, body))
	}
	skipAck.Store(true)
	grantSeq := grant()
	if out := h.outputFor(grantSeq); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("first grant: %s %q; want the release", out.Subject, out.Header.Get(header.Reason))
	}
	cons, err := h.js.Consumer(ctx, StreamIngress, h.cfg.Consumer.Durable)
	must(t, err)
	waitFor(t, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 1 && info.Delivered.Stream == grantSeq
	})
	a.stop(t)
	start := time.Now()
	// The old age limit removes partition 0's records.
	deadline := time.Now().Add(oldAge + 2*time.Minute)
	for {
		_, err := js.GetLastMsgForSubject(ctx, journal.Subject(0))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partition 0's journal records not aged out after %s: %v", oldAge, err)
		}
		time.Sleep(time.Second)
	}
	// Another partition's owner appends meanwhile: the journal is not
	// empty, which its next claim would take for a loss.
	_, err = h.js.PublishMsg(ctx, &nats.Msg{Subject: journal.Subject(1), Header: nats.Header{"Agentgw-Journal-Epoch": []string{"1"}}, Data: []byte{1}})
	must(t, err)
	h.clock.Advance(time.Since(start) + 5*time.Minute)

	h.journalMaxAge = 3 * time.Hour
	h.cfg.Limits.ApprovalTTL = 2 * time.Hour
	b := h.startInstance("b")
	waitFor(t, func() bool { return b.held() == 1 })
	h.waitIn(StreamDenied, grantSeq, func(*jetstream.RawStreamMsg) bool { return true })
	out := h.outputFor(grant())
	if rel, exp := h.fates(req.HeldMessageID); rel != 1 || exp != 0 {
		t.Errorf("held request released %d times, expired %d times (second grant: %s %q); want released once, the second grant refused",
			rel, exp, out.Subject, out.Header.Get(header.Reason))
	}
	b.stop(t)
}
