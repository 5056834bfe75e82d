package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/budget"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/subjects/reason"
)

// approvalFlow sets up a harness with an approver and one held payment.
type approvalFlow struct {
	*harness
	approver *actor
	req      approval.Request
	heldSeq  uint64
}

// newApprovalFlow starts the gateway and holds the harness agent's
// critical payment; each setup runs before the gateway starts.
func newApprovalFlow(t *testing.T, setup ...func(*approvalFlow)) *approvalFlow {
	h := newHarness(t)
	f := &approvalFlow{harness: h, approver: newActor(t)}
	f.approver.token = h.credential(h.issuer, f.approver, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
	for _, s := range setup {
		s(f)
	}
	h.start()
	body := h.body(func(b *envelope.Builder) {
		b.Capability, b.Target = envelope.ToolCall, "payments.send"
		b.Payload = envelope.Payload{Plain: json.RawMessage(`{"amount_cents":990000,"iban":"DE00123"}`)}
	})
	f.heldSeq = h.send(body)
	out := h.outputFor(f.heldSeq)
	if !strings.HasPrefix(out.Subject, "agentgw.approval.tenant_a.payments.send") {
		t.Fatalf("critical request went to %s (%s); want the approval queue", out.Subject, out.Header.Get(header.Reason))
	}
	must(t, json.Unmarshal(out.Data, &f.req))
	f.checkApprovalToken(out)
	if strings.Contains(string(out.Data), "DE00123") {
		t.Fatal("approval request shows a field the catalog does not mark approver-visible")
	}
	if f.req.Fields["amount_cents"] != float64(990000) {
		t.Fatalf("approval request fields = %v; want amount_cents", f.req.Fields)
	}
	return f
}

// answer publishes an approve envelope from a (with its token).
func (f *approvalFlow) answer(a *actor, ans approval.Answer, target string) uint64 {
	raw, err := json.Marshal(ans)
	must(f.t, err)
	body := f.body(func(b *envelope.Builder) {
		b.Capability, b.Target = envelope.Approve, target
		b.Payload = envelope.Payload{Plain: raw}
	})
	return f.publish(f.ingress(a, "tenant_a"), body, f.signed(a, a.token, body))
}

// answerAsSDK publishes ans from the approver to the held request under
// the idempotency key the SDKs give every answer to it.
func (f *approvalFlow) answerAsSDK(ans approval.Answer) uint64 {
	f.t.Helper()
	raw, err := json.Marshal(ans)
	must(f.t, err)
	body := f.body(func(b *envelope.Builder) {
		b.Capability, b.Target, b.IdempotencyKey = envelope.Approve, f.req.HeldMessageID, "approve-"+f.req.HeldMessageID
		b.Payload = envelope.Payload{Plain: raw}
	})
	return f.publish(f.ingress(f.approver, "tenant_a"), body, f.signed(f.approver, f.approver.token, body))
}

func (f *approvalFlow) grant() approval.Answer {
	return approval.Answer{Decision: approval.Grant, BodyDigest: f.req.BodyDigest, PolicyVersion: f.req.PolicyVersion}
}

func TestApprovalGrantReleasesExactlyOnce(t *testing.T) {
	f := newApprovalFlow(t)
	if n, _ := f.gw.pendingApprovals(); n != 1 {
		t.Errorf("pending approvals = %d; want 1", n)
	}
	// The requester cannot approve itself, even with the scope.
	f.agent.token = f.credential(f.issuer, f.agent, "tenant_a", []string{"pay:send", "approve:payments.*"}, time.Hour, "")
	f.wantReason(f.answer(f.agent, f.grant(), f.req.HeldMessageID), reason.SelfApproval)
	// "Approve A, execute B": an answer bound to other bytes is refused.
	wrong := f.grant()
	wrong.BodyDigest = "sha256:" + strings.Repeat("0", 64)
	f.wantReason(f.answer(f.approver, wrong, f.req.HeldMessageID), reason.ApprovalInvalid)
	// An approver without the scope for this target is refused.
	other := newActor(t)
	other.token = f.credential(f.issuer, other, "tenant_a", []string{"approve:refunds.*"}, time.Hour, "")
	f.wantReason(f.answer(other, f.grant(), f.req.HeldMessageID), reason.MissingScope)

	seq := f.answer(f.approver, f.grant(), f.req.HeldMessageID)
	out := f.outputFor(seq)
	if !strings.HasPrefix(out.Subject, "agentgw.cap.tenant_a.payments.send") {
		t.Fatalf("granted request went to %s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
	if ev := f.auditFor(seq); ev.Kind != "approval_granted" || ev.Approver != f.approver.pub {
		t.Errorf("audit = %+v; want approval_granted by the approver", ev)
	}
	if n, _ := f.gw.pendingApprovals(); n != 0 {
		t.Errorf("pending approvals after the grant = %d; want 0", n)
	}
	// Single use: the second grant finds nothing pending.
	f.wantReason(f.answer(f.approver, f.grant(), f.req.HeldMessageID), reason.ApprovalInvalid)
	if n := len(f.all(StreamCap)); n != 1 {
		t.Errorf("capability deliveries = %d; want exactly 1", n)
	}
	r, err := invariant.Wait(context.Background(), f.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
	f.stop()
	f.scanSecrets()
	f.validateAudit()
}

func TestApprovalDenied(t *testing.T) {
	f := newApprovalFlow(t)
	ans := f.grant()
	ans.Decision, ans.Reason = approval.Deny, "too large"
	seq := f.answer(f.approver, ans, f.req.HeldMessageID)
	out := f.outputFor(seq)
	if got := out.Header.Get(header.Reason); got != string(reason.ApprovalDenied) {
		t.Fatalf("reason = %q; want approval_denied", got)
	}
	if out.Header.Get(header.MessageID) != f.req.HeldMessageID {
		t.Error("the denied stream does not carry the held message")
	}
	if len(f.all(StreamCap)) != 0 {
		t.Error("a denied request reached its capability subject")
	}
}

func TestApprovalExpiresAcrossRestart(t *testing.T) {
	f := newApprovalFlow(t)
	f.stop()
	f.clock.Advance(f.cfg.Limits.ApprovalTTL + time.Second)
	f.start()
	deadline := time.Now().Add(10 * time.Second)
	var found bool
	for !found && time.Now().Before(deadline) {
		for _, m := range f.all(StreamDenied) {
			if m.Header.Get(header.Reason) == string(reason.ApprovalExpired) && m.Header.Get(header.MessageID) == f.req.HeldMessageID {
				found = true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !found {
		t.Fatal("held request did not expire to the denied stream after a restart")
	}
	// A grant after expiry finds nothing.
	f.wantReason(f.answer(f.approver, f.grant(), f.req.HeldMessageID), reason.ApprovalInvalid)
	r, err := invariant.Wait(context.Background(), f.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil || len(r.FollowUps) != 1 {
		t.Fatalf("invariant: %v; follow-ups %d want 1", err, len(r.FollowUps))
	}
}

// answerRaw publishes an approve envelope from a whose plain payload is
// exactly raw.
func (f *approvalFlow) answerRaw(a *actor, raw string) uint64 {
	body := f.body(func(b *envelope.Builder) {
		b.Capability, b.Target = envelope.Approve, f.req.HeldMessageID
		b.Payload = envelope.Payload{Plain: json.RawMessage(raw)}
	})
	return f.publish(f.ingress(a, "tenant_a"), body, f.signed(a, a.token, body))
}

// TestApprovalAnswerReadStrictly sends answers that a case-insensitive
// or lenient decoder would read as a grant: each is approval_invalid and
// leaves the request held, so the exact answer still releases it once.
func TestApprovalAnswerReadStrictly(t *testing.T) {
	f := newApprovalFlow(t)
	bd, pv := f.req.BodyDigest, f.req.PolicyVersion
	for name, raw := range map[string]string{
		"deny/decision-case":       `{"Decision":"grant","body_digest":"` + bd + `","policy_version":"` + pv + `"}`,
		"deny/digest-case":         `{"decision":"grant","Body_Digest":"` + bd + `","policy_version":"` + pv + `"}`,
		"deny/version-case":        `{"decision":"grant","body_digest":"` + bd + `","POLICY_VERSION":"` + pv + `"}`,
		"deny/long-s":              `{"decision":"grant","body_digest":"` + bd + `","policy_version":"` + pv + `","rea\u017fon":"ok"}`,
		"deny/unknown":             `{"decision":"grant","body_digest":"` + bd + `","policy_version":"` + pv + `","note":"x"}`,
		"deny/null-reason":         `{"decision":"grant","body_digest":"` + bd + `","policy_version":"` + pv + `","reason":null}`,
		"deny/decision-not-string": `{"decision":["grant"],"body_digest":"` + bd + `","policy_version":"` + pv + `"}`,
		"deny/missing-version":     `{"decision":"grant","body_digest":"` + bd + `"}`,
	} {
		seq := f.answerRaw(f.approver, raw)
		if got := reason.Code(f.outputFor(seq).Header.Get(header.Reason)); got != reason.ApprovalInvalid {
			t.Errorf("answer %s: reason = %q; want approval_invalid", name, got)
		}
	}
	if n, _ := f.gw.pendingApprovals(); n != 1 {
		t.Fatalf("pending approvals after malformed answers = %d; want 1", n)
	}
	seq := f.answerRaw(f.approver, `{"decision":"grant","reason":"ok","body_digest":"`+bd+`","policy_version":"`+pv+`"}`)
	if out := f.outputFor(seq); !strings.HasPrefix(out.Subject, "agentgw.cap.tenant_a.payments.send") {
		t.Fatalf("exact answer went to %s (%s); want the capability subject", out.Subject, out.Header.Get(header.Reason))
	}
}

// TestApprovalRefusedApproverLeavesRequestHeld: an approver with the
// scope whose `approve` the policy forbids is refused policy_denied, and
// the request stays held: another approver's grant still releases it,
// once.
func TestApprovalRefusedApproverLeavesRequestHeld(t *testing.T) {
	barred := newActor(t)
	f := newApprovalFlow(t, func(f *approvalFlow) {
		barred.token = f.credential(f.issuer, barred, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
		p := filepath.Join(f.dir, "barred.cedar")
		must(t, os.WriteFile(p, fmt.Appendf(nil, "forbid (principal == Agent::%q, action == Action::\"approve\", resource);\n", barred.pub), 0o600))
		f.cfg.Policies = append(f.cfg.Policies, p)
	})
	f.wantReason(f.answer(barred, f.grant(), f.req.HeldMessageID), reason.PolicyDenied)
	if n, _ := f.gw.pendingApprovals(); n != 1 {
		t.Errorf("pending approvals after the refused grant = %d; want 1", n)
	}
	out := f.outputFor(f.answer(f.approver, f.grant(), f.req.HeldMessageID))
	if !strings.HasPrefix(out.Subject, "agentgw.cap.tenant_a.payments.send") {
		t.Fatalf("grant after a refused one: %s (%s); want the release", out.Subject, out.Header.Get(header.Reason))
	}
	if n := len(f.all(StreamCap)); n != 1 {
		t.Errorf("capability deliveries = %d; want exactly 1", n)
	}
}

// TestExpiryCarriesOnPastABadHold: holds expire in deadline order, and
// one that cannot be ended must not stop the others. A held request
// larger than a max_body_bytes lowered across a restart still expires
// (its body passed the limit it was held under), and hold records that
// no longer decode, due first and more of them than expiry reads at a
// time, are reported and left while the requests held after them expire.
func TestExpiryCarriesOnPastABadHold(t *testing.T) {
	f := newApprovalFlow(t)
	big := f.body(func(b *envelope.Builder) {
		b.Capability, b.Target = envelope.ToolCall, "payments.send"
		b.Payload = envelope.Payload{Plain: json.RawMessage(`{"amount_cents":990000,"iban":"` + strings.Repeat("D", 4000) + `"}`)}
	})
	bigSeq := f.send(big)
	if out := f.outputFor(bigSeq); !strings.HasPrefix(out.Subject, "agentgw.approval.") {
		t.Fatalf("large request went to %s (%s); want the approval queue", out.Subject, out.Header.Get(header.Reason))
	}
	bigEnv, err := envelope.Parse(big, envelope.Limits{})
	must(t, err)
	// Due before both: more records the expiry cannot read than it
	// reads at a time.
	b := f.gw.ledgers()[0].NewBatch()
	for i := range duePage + 44 {
		must(t, b.PutHold(holdID("tenant_a", fmt.Sprintf("%032x", i)), f.clock.Now(), []byte("{")))
	}
	must(t, b.Commit())
	b.Close()

	f.stop()
	f.cfg.Limits.MaxBodyBytes = 2048
	f.clock.Advance(f.cfg.Limits.ApprovalTTL + time.Minute)
	f.start()
	want := map[string]bool{f.req.HeldMessageID: false, bigEnv.MessageID: false}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range f.all(StreamDenied) {
			if id := m.Header.Get(header.MessageID); m.Header.Get(header.Reason) == string(reason.ApprovalExpired) {
				if _, ok := want[id]; ok {
					want[id] = true
				}
			}
		}
		// The failure is logged once the scan has gone past every hold.
		reported := strings.Contains(f.logs.String(), "approval expiry failed")
		if want[f.req.HeldMessageID] && want[bigEnv.MessageID] && reported {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !want[f.req.HeldMessageID] || !want[bigEnv.MessageID] {
		t.Fatalf("expired: %v; want both held requests expired past the bad hold", want)
	}
	if !strings.Contains(f.logs.String(), "approval expiry failed") {
		t.Error("the bad hold was not reported")
	}
}

// TestApprovalReleaseSeesBudget: policy at a release sees the requester's
// rate budget as it is at the grant, not an empty one. The held request
// took one of its agent's two tokens; the agent spends the other while
// it waits; a policy forbidding payments with no agent token left then
// denies the release.
func TestApprovalReleaseSeesBudget(t *testing.T) {
	f := newApprovalFlow(t, func(f *approvalFlow) {
		f.cfg.Budgets.Agent = budget.Limit{Rate: 0.001, Burst: 2}
		p := filepath.Join(f.dir, "budget.cedar")
		must(t, os.WriteFile(p, []byte(`@id("no-budget-no-pay")
forbid (principal, action, resource == Target::"payments.send")
when { context.budget has agent_remaining && context.budget.agent_remaining < 1 };
`), 0o600))
		f.cfg.Policies = append(f.cfg.Policies, p)
	})
	f.outputFor(f.send(f.body(nil))) // the agent's last token
	out := f.outputFor(f.answer(f.approver, f.grant(), f.req.HeldMessageID))
	if got := reason.Code(out.Header.Get(header.Reason)); got != reason.PolicyDenied {
		t.Fatalf("grant after the requester's budget ran out: %s %q; want denied %s", out.Subject, got, reason.PolicyDenied)
	}
	if n := len(f.all(StreamCap)); n != 1 { // the read only
		t.Errorf("capability deliveries = %d; want 1 (the read)", n)
	}
}

// TestRefusedAnswerLeavesItsKeyFree: an answer the gate refuses leaves
// the request held for another answer, and its idempotency key free: the
// approver's corrected answer under the same key (the SDKs use
// "approve-<held id>" for every answer to a request) is judged, not
// refused as a duplicate of the refused one. An answer that took the hold
// keeps its key: the same answer again is a duplicate.
func TestRefusedAnswerLeavesItsKeyFree(t *testing.T) {
	f := newApprovalFlow(t)
	answer := func(ans approval.Answer) uint64 { return f.answerAsSDK(ans) }
	// The approver's credential lacks the target's scope: refused.
	f.approver.token = f.credential(f.issuer, f.approver, "tenant_a", []string{"approve:refunds.*"}, time.Hour, "")
	f.wantReason(answer(f.grant()), reason.MissingScope)
	// Given the scope, the same answer under the same key is judged.
	f.approver.token = f.credential(f.issuer, f.approver, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
	out := f.outputFor(answer(f.grant()))
	if !strings.HasPrefix(out.Subject, "agentgw.cap.tenant_a.payments.send") {
		t.Fatalf("corrected answer: the request went to %s (%s: %s); want its capability subject", out.Subject, out.Header.Get(header.Reason), out.Header.Get(header.Detail))
	}
	f.wantReason(answer(f.grant()), reason.DuplicateRequest)
	f.endApproval(0)
}

// TestDenyingAnswerKeepsItsKey: an answer that took the hold keeps its
// idempotency key with the decision it made, a denial included: the same
// answer again is a duplicate of that decision, a contradicting one a
// conflict (what a ledger rebuilt from the journal, scaled out, knows
// too: the entry is recorded with the outcome, not only provisionally).
func TestDenyingAnswerKeepsItsKey(t *testing.T) {
	f := newApprovalFlow(t)
	answer := func(decision string) uint64 {
		ans := f.grant()
		ans.Decision = decision
		return f.answerAsSDK(ans)
	}
	f.wantReason(answer(approval.Deny), reason.ApprovalDenied)
	again := f.outputFor(answer(approval.Deny))
	if got, detail := reason.Code(again.Header.Get(header.Reason)), again.Header.Get(header.Detail); got != reason.DuplicateRequest || !strings.Contains(detail, "deny approval_denied") {
		t.Fatalf("the same denial again: %s (%s); want duplicate_request of the recorded denial", got, detail)
	}
	f.wantReason(answer(approval.Grant), reason.IdempotencyConflict)
	f.endApproval(0)
}

// TestAnswerAtDeadlineCounts: a request expires once the clock is later
// than its deadline; at the deadline itself the expiry leaves it held, and
// an answer then still counts (docs/wire.md, "Approvals").
func TestAnswerAtDeadlineCounts(t *testing.T) {
	f := newApprovalFlow(t)
	f.clock.Advance(f.req.Deadline.Sub(f.clock.Now()))
	if !f.clock.Now().Equal(f.req.Deadline) {
		t.Fatalf("clock %v; want the deadline %v", f.clock.Now(), f.req.Deadline)
	}
	must(t, f.gw.expireDue(context.Background()))
	if n, _ := f.gw.pendingApprovals(); n != 1 {
		t.Fatalf("pending approvals at the deadline = %d; want 1", n)
	}
	out := f.outputFor(f.answer(f.approver, f.grant(), f.req.HeldMessageID))
	if !strings.HasPrefix(out.Subject, "agentgw.cap.tenant_a.payments.send") {
		t.Fatalf("answer at the deadline: the request went to %s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
	f.endApproval(0)
}
