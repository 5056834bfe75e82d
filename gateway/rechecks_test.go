package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestAnswerDoesNotReleaseAnotherAgentsCopy: an answer names the held
// request by tenant and message id. After agent A's request was denied,
// agent B re-signs A's body; it is refused approval_invalid, not held
// again under the same id, so a second approver's grant of A's request
// (shown to it while pending) releases nothing.
func TestAnswerDoesNotReleaseAnotherAgentsCopy(t *testing.T) {
	f := newApprovalFlow(t)
	approver2 := newActor(t)
	approver2.token = f.credential(f.issuer, approver2, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
	agentB := newActor(t)
	agentB.token = f.credential(f.issuer, agentB, "tenant_a", []string{"pay:send"}, time.Hour, "")

	bodyA := f.heldBody()
	shownToApprover2 := f.req // approver 2 fetched A's request (agent A)
	if shownToApprover2.Agent != f.agent.pub {
		t.Fatal("setup: request not A's")
	}

	// Approver 1 denies A's request.
	deny := f.grant()
	deny.Decision = approval.Deny
	f.wantReason(f.answer(f.approver, deny, f.req.HeldMessageID), reason.ApprovalDenied)

	// Agent B re-signs A's exact body on its own subject: held again
	// under the same (tenant, message id) and the same body digest.
	seqB := f.publish(f.ingress(agentB, "tenant_a"), bodyA, f.signed(agentB, agentB.token, bodyA))
	f.wantReason(seqB, reason.ApprovalInvalid)

	// Approver 2 grants the request it was shown: A's.
	ans := approval.Answer{Decision: approval.Grant, BodyDigest: shownToApprover2.BodyDigest, PolicyVersion: shownToApprover2.PolicyVersion}
	seq := f.answer(approver2, ans, shownToApprover2.HeldMessageID)
	out := f.outputFor(seq)
	if strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("approver 2 granted agent A's request (agent %s, which approver 1 had denied); the gateway released agent B's copy on %s",
			shownToApprover2.Agent, out.Subject)
	}
}

// TestWithdrawnRequestNotHeldAgainUnderAnotherKey: a revoked agent's
// held request is withdrawn; the same body signed by another agent of
// the tenant is not held again under its message id, so a grant of the
// withdrawn request releases nothing.
func TestWithdrawnRequestNotHeldAgainUnderAnotherKey(t *testing.T) {
	f := newApprovalFlow(t)
	agentB := newActor(t)
	agentB.token = f.credential(f.issuer, agentB, "tenant_a", []string{"pay:send"}, time.Hour, "")
	bodyA := f.heldBody()

	replaceFile(t, f.cfg.Revocations.File, "jtis: []\nprincipals: []\nkeys: ["+f.agent.pub+"]\n")
	must(t, f.gw.Reload())
	f.waitWithdrawn(f.heldSeq)

	seqB := f.publish(f.ingress(agentB, "tenant_a"), bodyA, f.signed(agentB, agentB.token, bodyA))
	f.wantReason(seqB, reason.ApprovalInvalid)
	out := f.outputFor(f.answer(f.approver, f.grant(), f.req.HeldMessageID))
	if strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("grant of revoked agent A's withdrawn request (agent %s) released agent B's copy on %s", f.req.Agent, out.Subject)
	}
}

// TestShortenedApprovalTTLAppliesToHeld: the catalog shortens a
// target's approval_ttl while a request is held; a grant after the new
// TTL has passed (but before the hold's own deadline) is refused
// approval_expired, not released.
func TestShortenedApprovalTTLAppliesToHeld(t *testing.T) {
	f := newApprovalFlow(t)
	f.editTarget("payments.send", func(e string) string {
		return strings.Replace(e, "    risk: critical\n", "    risk: critical\n    approval_ttl: 1m\n", 1)
	})
	f.clock.Advance(5 * time.Minute)
	f.approver.token = f.credential(f.issuer, f.approver, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
	f.wantReason(f.answer(f.approver, f.grant(), f.req.HeldMessageID), reason.ApprovalExpired)
}

// TestShortenedResponseDeadlineAppliesToDelivered: the catalog shortens
// a target's response_deadline after a request was delivered; an answer
// after the new deadline (but before the record's own) is refused
// response_late.
func TestShortenedResponseDeadlineAppliesToDelivered(t *testing.T) {
	h := newHarness(t)
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.*"}, time.Hour, "")
	h.start()
	env := h.deliveredRefund()
	h.editTarget("refunds.draft_refund", func(e string) string {
		return strings.Replace(e, "    response_deadline: 1m\n", "    response_deadline: 10s\n", 1)
	})
	h.clock.Advance(40 * time.Second)
	h.wantReason(h.respond(h.consumer, env.MessageID, `{"refund_id":"r1","status":"drafted"}`), reason.ResponseLate)
}

// heldBody is the held request's exact body, from the ingress stream.
func (f *approvalFlow) heldBody() []byte {
	f.t.Helper()
	s, err := f.js.Stream(context.Background(), StreamIngress)
	must(f.t, err)
	raw, err := s.GetMsg(context.Background(), f.heldSeq)
	must(f.t, err)
	return raw.Data
}

// TestHeldMarkerPrunedAtLaterClockRefusesCopy: the marker that keeps a
// message id from being held twice is pruned at the clock of the prune;
// a batch judged earlier than that clock (a recovered batch, up to
// ack_wait back; here the clock stepped back), or under a skew raised
// across a restart since, must not take another agent's copy of the
// ended request as fresh and hold it again, where a second approver's
// grant of the first request would release it. The prune records a
// marker horizon past the marker's message's expiry, before which a
// marker counts as set, so the copy is refused.
func TestHeldMarkerPrunedAtLaterClockRefusesCopy(t *testing.T) {
	for name, after := range map[string]func(f *approvalFlow){
		"clock_stepped_back": func(f *approvalFlow) { f.clock.Advance(-(f.cfg.Limits.Skew + 2*time.Second)) },
		"skew_raised": func(f *approvalFlow) {
			f.stop()
			f.cfg.Limits.Skew *= 3
			f.start()
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newApprovalFlow(t, midGeneration)
			approver2 := newActor(t)
			approver2.token = f.credential(f.issuer, approver2, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
			agentB := newActor(t)
			agentB.token = f.credential(f.issuer, agentB, "tenant_a", []string{"pay:send"}, time.Hour, "")
			bodyA, shown := f.heldBody(), f.req
			expires := f.clock.Now().Add(60 * time.Second) // the body's expires_at

			deny := f.grant()
			deny.Decision = approval.Deny
			f.wantReason(f.answer(f.approver, deny, f.req.HeldMessageID), reason.ApprovalDenied)

			f.clock.Advance(expires.Add(2*f.cfg.Limits.Skew + time.Second).Sub(f.clock.Now()))
			st, err := f.gw.ledger.Prune(f.clock.Now(), 0)
			if err != nil || st.Markers == 0 || st.Generations != 0 {
				t.Fatalf("prune = %+v, %v; want the marker pruned, no generation", st, err)
			}
			after(f)
			seqB := f.publish(f.ingress(agentB, "tenant_a"), bodyA, f.signed(agentB, agentB.token, bodyA))
			if out := f.outputFor(seqB); !strings.HasPrefix(out.Subject, "agentgw.denied.") {
				t.Fatalf("agent B's copy of the ended request went to %s; want it refused", out.Subject)
			}
			out := f.outputFor(f.answer(approver2, approval.Answer{Decision: approval.Grant, BodyDigest: shown.BodyDigest, PolicyVersion: shown.PolicyVersion}, shown.HeldMessageID))
			if strings.HasPrefix(out.Subject, "agentgw.cap.") {
				t.Fatalf("a grant of agent A's denied request released agent B's copy on %s", out.Subject)
			}
		})
	}
}

// TestMarkerPruneLeavesIdempotencyKeysJudged: pruning single-use markers
// does not make the ledger say it lost idempotency entries. A fresh
// request with an idempotency key of its own, judged a little before the
// clock of a prune that removed only markers (as a recovered batch is),
// is decided, not refused ledger_incomplete.
func TestMarkerPruneLeavesIdempotencyKeysJudged(t *testing.T) {
	f := newApprovalFlow(t, midGeneration)
	expires := f.clock.Now().Add(60 * time.Second)
	deny := f.grant()
	deny.Decision = approval.Deny
	f.wantReason(f.answer(f.approver, deny, f.req.HeldMessageID), reason.ApprovalDenied)
	skew := f.cfg.Limits.Skew
	f.clock.Advance(expires.Add(2*skew + time.Second).Sub(f.clock.Now()))
	if st, err := f.gw.ledger.Prune(f.clock.Now(), 0); err != nil || st.Markers == 0 || st.Generations != 0 {
		t.Fatalf("prune = %+v, %v; want markers pruned, no generation", st, err)
	}
	f.clock.Advance(-2 * time.Second) // judged as a recovered batch would be
	body := f.body(func(b *envelope.Builder) { b.IdempotencyKey = "order-4711" })
	if out := f.outputFor(f.send(body)); !strings.HasPrefix(out.Subject, "agentgw.cap.tenant_a.kb.search") {
		t.Fatalf("fresh request with its own idempotency key: %s (%s: %s); want delivered", out.Subject, out.Header.Get(header.Reason), out.Header.Get(header.Detail))
	}
}

// midGeneration sets the clock so that the held request's expiry falls 60
// s into a ledger generation: its generation is not yet dead (raising no
// horizon) when the prune of its marker is due.
func midGeneration(f *approvalFlow) {
	width := f.cfg.ledgerOptions().GenWidth
	exp := f.clock.Now().Add(60 * time.Second)
	next := time.Unix(0, (exp.UnixNano()/int64(width)+1)*int64(width)).Add(60 * time.Second)
	f.clock.Advance(next.Sub(exp))
}

// TestAnswerEndsRequestItCannotRelease: a held request whose target has
// left the catalog, or whose body is over max_body_bytes now, can no
// longer be released, but an answer still ends it: a grant denies it
// with that reason, a deny as approval_denied, the hold taken either way.
// A deny refused for the catalog's sake would leave the request held for
// a later grant, once the catalog is changed back, to release.
func TestAnswerEndsRequestItCannotRelease(t *testing.T) {
	deny := func(f *approvalFlow) approval.Answer {
		a := f.grant()
		a.Decision = approval.Deny
		return a
	}
	for _, c := range []struct {
		name   string
		change func(f *approvalFlow) (undo func())
		grant  reason.Code
	}{
		{"target left the catalog", func(f *approvalFlow) func() {
			var entry string
			f.editTarget("payments.send", func(e string) string { entry = e; return "" })
			return func() { f.editTarget("ops.forbidden", func(e string) string { return entry + e }) }
		}, reason.UnknownTarget},
		{"body over max_body_bytes now", func(f *approvalFlow) func() {
			f.holdLarge()
			limit := f.cfg.Limits.MaxBodyBytes
			f.stop()
			f.cfg.Limits.MaxBodyBytes = len(f.heldBody()) - 1
			f.start()
			return func() { f.stop(); f.cfg.Limits.MaxBodyBytes = limit; f.start() }
		}, reason.Oversized},
	} {
		t.Run(c.name+"/grant", func(t *testing.T) {
			f := newApprovalFlow(t)
			c.change(f)
			held, _ := f.gw.pendingApprovals()
			out := f.outputFor(f.answer(f.approver, f.grant(), f.req.HeldMessageID))
			if out.Header.Get(header.MessageID) != f.req.HeldMessageID || reason.Code(out.Header.Get(header.Reason)) != c.grant {
				t.Errorf("the grant's output: message %s, %s; want the held request denied %s", out.Header.Get(header.MessageID), out.Header.Get(header.Reason), c.grant)
			}
			if n, _ := f.gw.pendingApprovals(); n != held-1 {
				t.Errorf("%d requests held, %d before the grant; want its hold taken", n, held)
			}
		})
		t.Run(c.name+"/deny, then undone and granted", func(t *testing.T) {
			f := newApprovalFlow(t)
			undo := c.change(f)
			out := f.outputFor(f.answer(f.approver, deny(f), f.req.HeldMessageID))
			if out.Header.Get(header.MessageID) != f.req.HeldMessageID || reason.Code(out.Header.Get(header.Reason)) != reason.ApprovalDenied {
				t.Errorf("the deny's output: message %s, %s; want the held request denied approval_denied", out.Header.Get(header.MessageID), out.Header.Get(header.Reason))
			}
			undo()
			other := newActor(t)
			other.token = f.credential(f.issuer, other, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
			f.wantReason(f.answer(other, f.grant(), f.req.HeldMessageID), reason.ApprovalInvalid)
			if got := f.all(StreamCap); len(got) != 0 {
				t.Errorf("%d capability messages; want the denied request never released", len(got))
			}
		})
	}
}

// holdLarge holds a payment of some 4 KB, much larger than an answer,
// and makes it the flow's request.
func (f *approvalFlow) holdLarge() {
	f.t.Helper()
	body := f.body(func(b *envelope.Builder) {
		b.Capability, b.Target = envelope.ToolCall, "payments.send"
		b.Payload = envelope.Payload{Plain: json.RawMessage(`{"amount_cents":990000,"iban":"` + strings.Repeat("D", 4000) + `"}`)}
	})
	f.heldSeq = f.send(body)
	out := f.outputFor(f.heldSeq)
	if !strings.HasPrefix(out.Subject, "agentgw.approval.") {
		f.t.Fatalf("large request went to %s (%s); want the approval queue", out.Subject, out.Header.Get(header.Reason))
	}
	must(f.t, json.Unmarshal(out.Data, &f.req))
}
