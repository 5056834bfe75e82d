package oidc_test

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/exchange"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestActorMayNotApproveWhatItSent: with allow_act, Bob holds a token
// delegated by Alice (sub alice, act bob) and sends a payment held for
// approval. Its credential names Alice's principal and Bob's among its
// actors, so Bob may not grant it with a credential of his own token,
// and neither may Alice; Carol may.
func TestActorMayNotApproveWhatItSent(t *testing.T) {
	h := newHarness(t)
	h.cfg.IdPs[0].AllowAct = true
	h.cfg.IdPs[0].Rules = append(h.cfg.IdPs[0].Rules,
		exchange.Rule{ID: "payers", Claim: "groups", Contains: "payers", Scopes: []string{"pay:send"}},
		exchange.Rule{ID: "payment-approvers", Claim: "groups", Contains: "payment-approvers", Scopes: []string{"approve:payments.*"}})
	ctx, _ := startGateway(t, h, approvalCatalog)
	h.serve()
	js, err := jetstream.New(h.nc)
	must(t, err)

	delegated := signedBy(t, h, map[string]any{"sub": "alice", "groups": []string{"payers"}, "act": map[string]any{"sub": "bob"}})
	rcpt, err := h.sdkAgent(h.agent, delegated).Send(ctx, client.Request{Capability: envelope.ToolCall, Target: "payments.send", Plain: map[string]any{"amount_cents": 990000}})
	must(t, err)
	req := approvalFor(t, h, rcpt.Seq)

	for _, who := range []string{"bob", "alice"} {
		tok := signedBy(t, h, map[string]any{"sub": who, "groups": []string{"payment-approvers"}})
		ans, err := h.approver(js, newAgent(t), tok).Grant(ctx, req, who+" approves")
		must(t, err)
		m := outputFor(t, h, ans.Seq)
		if got := reason.Code(m.Header.Get(header.Reason)); got != reason.SelfApproval {
			t.Errorf("%s's grant of the request Bob sent for Alice went to %s, reason %q; want self_approval", who, m.Subject, got)
		}
	}
	carol := signedBy(t, h, map[string]any{"sub": "carol", "groups": []string{"payment-approvers"}})
	ans, err := h.approver(js, newAgent(t), carol).Grant(ctx, req, "carol approves")
	must(t, err)
	if m := outputFor(t, h, ans.Seq); m.Subject != "agentgw.cap.tenant_a.payments.send" {
		t.Fatalf("carol's grant went to %s (%s); want the payment delivered", m.Subject, m.Header.Get(header.Reason))
	}
}
