package oidc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/exchange"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/internal/e2e/oidc/testidp"
	"github.com/agentgw/agentgw/subjects/reason"
)

const approvalCatalog = `
approval_risks: [critical]
targets:
  - name: payments.send
    kind: tool_call
    scope: pay:send
    tenants: [tenant_a]
    risk: critical
    plain: true
`

// TestSelfApprovalAcrossKeysRefused: one identity at a real OpenID
// provider may hold credentials for several agent keys, all exchanged
// from its tokens. "Approver is not the requester" holds for the
// identity, not only the key: a grant from a second key of the same IdP
// subject is refused self_approval, and the request stays held until
// someone else, another IdP subject, grants it.
func TestSelfApprovalAcrossKeysRefused(t *testing.T) {
	h := newHarness(t)
	h.corp.AddClient(testidp.Client{ID: "payments-bot", Secret: "s3cret-payments", Audience: []string{idpAudience},
		Claims: map[string]any{"groups": []string{"payers", "payment-approvers"}, "org": "tenant_a"}})
	h.corp.AddClient(testidp.Client{ID: "treasurer", Secret: "s3cret-treasurer", Audience: []string{idpAudience},
		Claims: map[string]any{"groups": []string{"payment-approvers"}, "org": "tenant_a"}})
	ctx := h.startPayments(t)
	h.serve()
	js, err := jetstream.New(h.nc)
	must(t, err)

	// One IdP subject, two agent keys: a credential for each.
	bot := h.token(h.corp, "payments-bot", "s3cret-payments")
	requester, second := h.agent, newAgent(t)
	agent := h.sdkAgent(requester, bot)
	selfApprover := h.approver(js, second, bot)

	rcpt, err := agent.Send(ctx, client.Request{Capability: envelope.ToolCall, Target: "payments.send", Plain: map[string]any{"amount_cents": 990000}})
	must(t, err)
	req := approvalFor(t, h, rcpt.Seq)

	ans, err := selfApprover.Grant(ctx, req, "my own payment, from my other key")
	must(t, err)
	m := outputFor(t, h, ans.Seq)
	if got := reason.Code(m.Header.Get(header.Reason)); got != reason.SelfApproval {
		t.Fatalf("grant by the requester's IdP subject through another key went to %s, reason %q (%s); want self_approval",
			m.Subject, got, m.Header.Get(header.Detail))
	}
	if n := len(streamMsgs(t, h, gateway.StreamCap)); n != 0 {
		t.Fatalf("capability deliveries after a self-approval = %d; want 0", n)
	}

	// Another IdP subject may approve; the refused answer left the
	// request held.
	treasurer := h.approver(js, newAgent(t), h.token(h.corp, "treasurer", "s3cret-treasurer"))
	ans, err = treasurer.Grant(ctx, req, "checked")
	must(t, err)
	if m := outputFor(t, h, ans.Seq); m.Subject != "agentgw.cap.tenant_a.payments.send" {
		t.Fatalf("grant by another IdP subject went to %s (%s); want agentgw.cap.tenant_a.payments.send", m.Subject, m.Header.Get(header.Reason))
	}
}

// startPayments starts the gateway with the approval catalog, the IdP
// mapping group payers to pay:send and payment-approvers to
// approve:payments.*.
func (h *harness) startPayments(t *testing.T) context.Context {
	t.Helper()
	h.cfg.IdPs[0].Rules = append(h.cfg.IdPs[0].Rules,
		exchange.Rule{ID: "payers", Claim: "groups", Contains: "payers", Scopes: []string{"pay:send"}},
		exchange.Rule{ID: "payment-approvers", Claim: "groups", Contains: "payment-approvers", Scopes: []string{"approve:payments.*"}})
	ctx, _ := startGateway(t, h, approvalCatalog)
	return ctx
}

// sdkAgent is an SDK agent for a with a credential exchanged from tok.
func (h *harness) sdkAgent(a *agent, tok string) *client.Agent {
	h.t.Helper()
	c, err := client.Exchange(context.Background(), h.nc, h.exchangeCfg(a, tok), client.WithClock(h.clock.Now))
	must(h.t, err)
	cfg := client.DefaultAgentConfig()
	cfg.Credential, cfg.Key = c.Token, a.kp
	ag, err := client.NewAgent(h.nc, cfg)
	must(h.t, err)
	return ag
}

// approver is an SDK approver for a with a credential exchanged from tok.
func (h *harness) approver(js jetstream.JetStream, a *agent, tok string) *client.Approver {
	h.t.Helper()
	c, err := client.Exchange(context.Background(), h.nc, h.exchangeCfg(a, tok), client.WithClock(h.clock.Now))
	must(h.t, err)
	cfg := client.ApproverConfig{AgentConfig: client.DefaultAgentConfig()}
	cfg.Credential, cfg.Key, cfg.TrustedGateways = c.Token, a.kp, []string{h.gwKey}
	ap, err := client.NewApprover(h.nc, js, cfg)
	must(h.t, err)
	return ap
}

// approvalFor waits for the approval request of ingress sequence seq.
func approvalFor(t *testing.T, h *harness, seq uint64) approval.Request {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range streamMsgs(t, h, gateway.StreamApproval) {
			if m.Header.Get(header.IngressSeq) == fmt.Sprint(seq) {
				var req approval.Request
				must(t, json.Unmarshal(m.Data, &req))
				return req
			}
		}
		for _, m := range streamMsgs(t, h, gateway.StreamDenied) {
			if m.Header.Get(header.IngressSeq) == fmt.Sprint(seq) {
				t.Fatalf("request %d denied %s (%s); want it held", seq, m.Header.Get(header.Reason), m.Header.Get(header.Detail))
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no approval request for ingress sequence %d", seq)
	return approval.Request{}
}
