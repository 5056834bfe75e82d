package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/operator"
	"github.com/agentgw/agentgw/subjects/reason"
)

// operatorEvents returns the operator_replay audit events stored, by
// subject.
func (h *harness) operatorEvents() map[string][]audit.Event {
	h.t.Helper()
	out := map[string][]audit.Event{}
	for _, m := range h.all(StreamAudit) {
		for _, line := range audit.Lines(m.Data) {
			var ev audit.Event
			must(h.t, json.Unmarshal(line, &ev))
			if ev.Kind == audit.KindOperatorReplay {
				out[m.Subject] = append(out[m.Subject], ev)
			}
		}
	}
	return out
}

// TestOperatorUnverifiedRequestAuditedUnroutable: an operator request is
// filed under its credential's tenant only once it is signed by the
// credential's key. The holder of the credential alone (a bearer token)
// must not write events into the tenant's audit stream; its request, and
// one whose credential does not verify at all, are audited under the
// unroutable tenant, without a tenant.
func TestOperatorUnverifiedRequestAuditedUnroutable(t *testing.T) {
	h := newHarness(t)
	h.start()
	denied := h.deniedSeq(h.send(h.forbiddenBody()))
	op, thief := newActor(t), newActor(t)
	tok := h.credential(h.issuer, op, "tenant_a", []string{operator.Scope}, time.Hour, "").Reveal()
	data := operatorRequestData("tenant_a", denied, true, h.clock.Now())
	if res := h.rawOperatorRequest(tok, data, func(d []byte) []byte { return thief.signr.Sign(operator.SigningInput(d)) }); res.Code != string(reason.BadSignature) {
		t.Fatalf("request signed by another key = %+v; want bad_signature", res)
	}
	bad := h.rawOperatorRequest("not-a-credential", data, func(d []byte) []byte { return op.signr.Sign(operator.SigningInput(d)) })
	if bad.Code == "" {
		t.Fatalf("request with no valid credential = %+v; want refused", bad)
	}
	var events map[string][]audit.Event
	waitFor(t, func() bool {
		events = h.operatorEvents()
		n := 0
		for _, evs := range events {
			n += len(evs)
		}
		return n >= 2
	})
	if n := len(events["agentgw.audit.tenant_a"]); n != 0 {
		t.Errorf("%d operator events in tenant_a's audit stream; want none", n)
	}
	got := events["agentgw.audit."+UnroutableTenant]
	if len(got) != 2 {
		t.Fatalf("unroutable operator events = %+v; want 2", got)
	}
	for i, want := range []string{string(reason.BadSignature), bad.Code} {
		if got[i].Reason != want || got[i].Tenant != "" {
			t.Errorf("unroutable event %d = reason %q, tenant %q; want %s, no tenant", i, got[i].Reason, got[i].Tenant, want)
		}
	}
	if got[0].Operator != op.pub {
		t.Errorf("bad_signature event names operator %q; want the credential's subject %s", got[0].Operator, op.pub)
	}
	h.stop()
	h.validateAudit()
}

// TestApprovalEventsNameTheirOperators: an answer's audit event names the
// operator who replayed the answer as operator, and the operator whose
// replay the held request was as held_operator. An answer denied, then
// replayed by an operator once its approver's revocation was lifted,
// releases the request under that operator's name; a held re-submission
// granted by an approver names its operator as held_operator only.
func TestApprovalEventsNameTheirOperators(t *testing.T) {
	t.Run("answer replayed", func(t *testing.T) {
		f := newApprovalFlow(t)
		f.gw.revocations.RevokeKey(f.approver.pub)
		first := f.answer(f.approver, f.grant(), f.req.HeldMessageID)
		f.wantReason(first, reason.Revoked)
		f.gw.revocations.Replace(nil, nil)
		res, err := f.operator(operator.Scope).Replay(context.Background(), f.deniedSeq(first), false)
		must(t, err)
		if out := f.outputFor(res.IngressSeq); !strings.HasPrefix(out.Subject, "agentgw.cap.tenant_a.payments.send") {
			t.Fatalf("the replayed grant went to %s (%s); want the release", out.Subject, out.Header.Get(header.Reason))
		}
		replays := f.operatorEvents()["agentgw.audit.tenant_a"]
		if ev := f.auditFor(res.IngressSeq); ev.Kind != audit.KindApprovalGranted || len(replays) != 1 || ev.Operator != replays[0].Operator || ev.HeldOperator != "" {
			t.Errorf("release event %s operator %q held_operator %q; want approval_granted by the replaying operator (%d replay events)", ev.Kind, ev.Operator, ev.HeldOperator, len(replays))
		}
	})
	t.Run("held request replayed", func(t *testing.T) {
		h := newHarness(t)
		h.start()
		op := h.replayOperator()
		_, req := h.heldResubmission(op)
		grant := h.grant(req)
		if out := h.outputFor(grant); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
			t.Fatalf("the grant went to %s (%s); want the release", out.Subject, out.Header.Get(header.Reason))
		}
		if ev := h.auditFor(grant); ev.Kind != audit.KindApprovalGranted || ev.Operator != "" || ev.HeldOperator != op.pub {
			t.Errorf("release event %s operator %q held_operator %q; want approval_granted, the held request's operator %s", ev.Kind, ev.Operator, ev.HeldOperator, op.pub)
		}
	})
}

// TestDecisionLogNamesWhoAnswered: the log line of an event says who
// answered or replayed what, as its stream record does: an operator's
// dry run is not logged as a replay that went through, nor a grant as
// a decision of nobody's.
func TestDecisionLogNamesWhoAnswered(t *testing.T) {
	var buf bytes.Buffer
	g := &Gateway{log: zerolog.New(&buf)}
	g.logDecision(audit.Event{Kind: audit.KindOperatorReplay, Route: "allow", Tenant: "tenant_a",
		Operator: "UOPERATOR", DeniedSeq: 42, DryRun: true, CredentialID: "jti-op"})
	g.logDecision(audit.Event{Kind: audit.KindApprovalGranted, Route: "allow", Tenant: "tenant_a",
		Approver: "UAPPROVER", HeldMessageID: "held-1", HeldOperator: "UHELDOP"})
	line := buf.String()
	for _, want := range []string{`"operator":"UOPERATOR"`, `"denied_seq":42`, `"dry_run":true`,
		`"approver":"UAPPROVER"`, `"held_message_id":"held-1"`, `"held_operator":"UHELDOP"`} {
		if !strings.Contains(line, want) {
			t.Errorf("the log lacks %s:\n%s", want, line)
		}
	}
}
