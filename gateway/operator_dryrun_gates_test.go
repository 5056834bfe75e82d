package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/budget"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/operator"
	"github.com/agentgw/agentgw/subjects/reason"
)

// The tests of this file hold a dry run to the gates the real replay
// runs: where it says deny, the replay is denied with the same reason;
// where the replay runs a gate it does not (the approval and response
// gates), it predicts nothing.

// TestDryRunOfDeniedGrantNotPredicted: an approver's grant refused by
// policy is denied. Once the forbid is lifted, the real replay of the
// grant releases the held payment (the approval gate decides it), so a
// dry run, which does not run that gate, must not predict a denial: it
// answers not_predicted, whether or not the forbid is in force.
func TestDryRunOfDeniedGrantNotPredicted(t *testing.T) {
	barred := newActor(t)
	var p string
	f := newApprovalFlow(t, func(f *approvalFlow) {
		f.cfg.ReloadInterval = 50 * time.Millisecond
		barred.token = f.credential(f.issuer, barred, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
		p = filepath.Join(f.dir, "barred.cedar")
		must(t, os.WriteFile(p, fmt.Appendf(nil, "forbid (principal == Agent::%q, action == Action::\"approve\", resource);\n", barred.pub), 0o600))
		f.cfg.Policies = append(f.cfg.Policies, p)
	})
	seq := f.answer(barred, f.grant(), f.req.HeldMessageID)
	f.wantReason(seq, reason.PolicyDenied)
	denied := f.deniedSeq(seq)
	op := f.operator(operator.Scope)
	ctx := context.Background()
	dry, err := op.Replay(ctx, denied, true)
	must(t, err)
	if dry.Route != DryRunNotPredicted || dry.Reason != "" || !strings.Contains(dry.Detail, "approval gate") {
		t.Errorf("dry run of a denied grant, forbid in force = %+v; want route %s naming the approval gate", dry, DryRunNotPredicted)
	}
	v := f.gw.Policy().Version()
	must(t, os.WriteFile(p, []byte("@id(\"noop\")\nforbid (principal == Agent::\"UNOBODY\", action, resource);\n"), 0o600))
	waitFor(t, func() bool { return f.gw.Policy().Version() != v })
	dry, err = op.Replay(ctx, denied, true)
	must(t, err)
	if dry.Route != DryRunNotPredicted {
		t.Errorf("dry run of a denied grant, forbid lifted = %+v; want route %s", dry, DryRunNotPredicted)
	}
	res, err := op.Replay(ctx, denied, false)
	must(t, err)
	if out := f.outputFor(res.IngressSeq); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Errorf("replayed grant went to %s (%s); want the held payment released", out.Subject, out.Header.Get(header.Reason))
	}
	f.stop()
	f.validateAudit()
}

// TestDryRunOfDeniedResponseNotPredicted: a consumer's response to no
// outstanding request is denied no_such_request by the response gate; a
// dry run, which does not run it, answers not_predicted, not the
// catalog's verdict on the response's target (a request reference).
func TestDryRunOfDeniedResponseNotPredicted(t *testing.T) {
	h := newHarness(t)
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.*"}, time.Hour, "")
	h.start()
	seq := h.respond(h.consumer, envelope.NewMessageID(), `{"refund_id":"r-1","status":"drafted"}`)
	h.wantReason(seq, reason.NoSuchRequest)
	dry, err := h.operator(operator.Scope).Replay(context.Background(), h.deniedSeq(seq), true)
	must(t, err)
	if dry.Route != DryRunNotPredicted || dry.Reason != "" || !strings.Contains(dry.Detail, "response gate") {
		t.Errorf("dry run of a denied response = %+v; want route %s naming the response gate", dry, DryRunNotPredicted)
	}
	h.stop()
	h.validateAudit()
	// The gateway stores the request's audit event before it answers.
	evs := h.operatorEvents()["agentgw.audit.tenant_a"]
	if len(evs) != 1 || evs[0].Route != "" || !evs[0].DryRun || !strings.HasPrefix(evs[0].Detail, DryRunNotPredicted+": ") {
		t.Errorf("operator_replay events of the dry run = %+v; want one, with no route and the detail saying %s", evs, DryRunNotPredicted)
	}
}

// TestDryRunOfDuplicateRequestStaysDuplicate: a request denied
// duplicate_request (or idempotency_conflict) is denied so again on its
// replay, the idempotency entry of the first request being live: the
// dry run reads that entry and predicts the same denial, so the one
// re-submission is not spent on a replay predicted to pass.
func TestDryRunOfDuplicateRequestStaysDuplicate(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx := context.Background()
	key := func(b *envelope.Builder) { b.IdempotencyKey = "refund-42" }
	if out := h.outputFor(h.send(h.body(key))); out.Header.Get(header.Route) != "allow" {
		t.Fatalf("first went to %s", out.Subject)
	}
	op := h.operator(operator.Scope)
	dup := h.send(h.body(key))
	h.wantReason(dup, reason.DuplicateRequest)
	other := h.send(h.body(func(b *envelope.Builder) {
		key(b)
		b.Payload = envelope.Payload{Plain: []byte(`{"q":"another question"}`)}
	}))
	h.wantReason(other, reason.IdempotencyConflict)
	for _, c := range []struct {
		ingress uint64
		want    reason.Code
	}{{dup, reason.DuplicateRequest}, {other, reason.IdempotencyConflict}} {
		denied := h.deniedSeq(c.ingress)
		dry, err := op.Replay(ctx, denied, true)
		must(t, err)
		if dry.Route != "deny" || dry.Reason != string(c.want) {
			t.Errorf("dry run of the %s record = %+v; want deny %s", c.want, dry, c.want)
		}
		res, err := op.Replay(ctx, denied, false)
		must(t, err)
		if out := h.outputFor(res.IngressSeq); out.Header.Get(header.Reason) != dry.Reason {
			t.Errorf("dry run predicted %s %s; the replay went to %s (%s)", dry.Route, dry.Reason, out.Subject, out.Header.Get(header.Reason))
		}
	}
	h.stop()
}

// TestDryRunOfContentDeniedNotPredicted: a dry run opens no payload and
// takes no budget, so of a record denied content_denied, whose target's
// content policy reads the payload, it cannot know the decision. It
// answers not_predicted (exit 4) rather than the allow of the gates it
// runs, which the real replay, spending the one re-submission, would
// contradict.
func TestDryRunOfContentDeniedNotPredicted(t *testing.T) {
	h := newHarness(t)
	h.start()
	body, _ := h.sealedRefund(h.agent, 500000, nil)
	seq := h.send(body)
	h.wantReason(seq, reason.ContentDenied)
	denied := h.deniedSeq(seq)
	op := h.operator(operator.Scope)
	dry, err := op.Replay(context.Background(), denied, true)
	must(t, err)
	if dry.Route != DryRunNotPredicted || !strings.Contains(dry.Detail, "stage content") {
		t.Errorf("dry run: %s %s (%s); want not_predicted, naming the content stage", dry.Route, dry.Reason, dry.Detail)
	}
	res, err := op.Replay(context.Background(), denied, false)
	must(t, err)
	if out := h.outputFor(res.IngressSeq); out.Header.Get(header.Reason) != string(reason.ContentDenied) {
		t.Errorf("the replay: %s %s; want denied again content_denied", out.Header.Get(header.Route), out.Header.Get(header.Reason))
	}
}

// TestDryRunOfSpentBudgetNotPredicted: a request denied by policy has
// taken its agent's one budget token (the budget gate runs before
// Cedar). Once the forbid is lifted, the gates a dry run runs let its
// record through, but the real replay takes a token the agent does not
// have and is denied budget_exceeded, spending the one re-submission.
// The dry run answers not_predicted, naming the budget.
func TestDryRunOfSpentBudgetNotPredicted(t *testing.T) {
	h := newHarness(t)
	h.cfg.Budgets.Agent = budget.Limit{Rate: 0.0001, Burst: 1}
	h.start()
	seq := h.send(h.body(func(b *envelope.Builder) { b.Capability, b.Target = envelope.ToolCall, "ops.forbidden" }))
	h.wantReason(seq, reason.PolicyDenied)
	denied := h.deniedSeq(seq)
	lifted := strings.Replace(testPolicy, "@id(\"forbid-ops\")\nforbid (principal, action, resource == Target::\"ops.forbidden\");", "", 1)
	if lifted == testPolicy {
		t.Fatal("the test policy has no forbid-ops to lift")
	}
	replaceFile(t, h.cfg.Policies[0], lifted)
	must(t, h.gw.Reload())
	op := h.operator(operator.Scope)
	dry, err := op.Replay(context.Background(), denied, true)
	must(t, err)
	if dry.Route != DryRunNotPredicted || !strings.Contains(dry.Detail, "budget") {
		t.Errorf("dry run: %s %s (%s); want not_predicted, naming the budget", dry.Route, dry.Reason, dry.Detail)
	}
	res, err := op.Replay(context.Background(), denied, false)
	must(t, err)
	if out := h.outputFor(res.IngressSeq); out.Header.Get(header.Reason) != string(reason.BudgetExceeded) {
		t.Errorf("the replay: %s %s; want denied budget_exceeded", out.Header.Get(header.Route), out.Header.Get(header.Reason))
	}
}

// TestDryRunDenyOfBudgetPolicyNotPredicted: a dry run decides policy
// without a budget (it takes no token), so a forbid that reads
// context.budget errs on the empty record and denies, whatever the
// budget is. When the deciding policies read the budget, a denial is not
// predicted: here the agent's bucket has refilled and the real replay is
// allowed.
func TestDryRunDenyOfBudgetPolicyNotPredicted(t *testing.T) {
	h := newHarness(t)
	// Keep headroom: refuse kb.search once the agent has fewer than 18
	// tokens left (agent budget below: burst 20, rate 10/s).
	pol := testPolicy + `
@id("headroom")
forbid (principal, action == Action::"read", resource == Target::"kb.search")
when { context.budget.agent_remaining < 18 };
`
	must(t, os.WriteFile(h.cfg.Policies[0], []byte(pol), 0o600))
	h.cfg.Budgets.Agent = budget.Limit{Rate: 10, Burst: 20}
	h.start()
	var last uint64
	for range 3 {
		last = h.send(h.body(nil)) // remaining 19, 18, 17
	}
	h.wantReason(last, reason.PolicyDenied)
	denied := h.deniedSeq(last)
	h.clock.Advance(5 * time.Second) // the agent's bucket refills

	op := h.operator(operator.Scope)
	ctx := context.Background()
	dry, err := op.Replay(ctx, denied, true)
	must(t, err)
	if dry.Route != DryRunNotPredicted || !strings.Contains(dry.Detail, "budget") {
		t.Errorf("dry run = %+v; want not_predicted, naming the budget", dry)
	}
	res, err := op.Replay(ctx, denied, false)
	must(t, err)
	if out := h.outputFor(res.IngressSeq); out.Header.Get(header.Route) != "allow" {
		t.Errorf("the real replay went to %s (%s); want it allowed, the budget refilled", out.Subject, out.Header.Get(header.Reason))
	}
}
