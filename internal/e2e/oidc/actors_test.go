package oidc_test

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/exchange"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
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
	ctx := h.startPayments(t)
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

// TestExchangeRefusesRevokedPrincipal: a revoked IdP identity gets no
// credential, for any agent key, nor does a token delegated to a revoked
// actor; another identity still does.
func TestExchangeRefusesRevokedPrincipal(t *testing.T) {
	h := newHarness(t)
	h.cfg.IdPs[0].AllowAct = true
	rev := identity.NewRevocations()
	h.serve(exchange.WithRevocations(rev))
	bot := h.token(h.corp, "billing-bot", "s3cret-billing")
	if got := h.raw(bot, nil, h.signBy(h.agent.kp)); got != "" {
		t.Fatalf("before the revocation: refused %s", got)
	}
	rev.ReplacePrincipals([]string{exchange.Principal(h.corp.Issuer, "billing-bot"), exchange.Principal(h.corp.Issuer, "mallory")})
	if got := h.raw(bot, nil, h.signBy(h.agent.kp)); got != reason.Revoked {
		t.Errorf("a revoked principal: %q; want revoked", got)
	}
	delegated := signedBy(t, h, map[string]any{"sub": "alice", "groups": []string{"payers"}, "act": map[string]any{"sub": "mallory"}})
	if got := h.raw(delegated, nil, h.signBy(h.agent.kp)); got != reason.Revoked {
		t.Errorf("a token delegated to a revoked actor: %q; want revoked", got)
	}
	alice := signedBy(t, h, map[string]any{"sub": "alice", "groups": []string{"payers"}})
	if got := h.raw(alice, nil, h.signBy(h.agent.kp)); got == reason.Revoked {
		t.Errorf("another identity: refused %s", got)
	}
}
