package gateway

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/audit"
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
