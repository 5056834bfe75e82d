package mcp

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
)

// TestBridgeAnswerPerDecision: an answer is remembered for its delivery's
// decision. A redelivery (the same token) gets it again without a call;
// the same agent's message id sent again later, to another target, is a
// new decision: its own tool is called, and the first target's answer
// (which that target's sensitive fields were redacted from, not the
// second's) is not sent.
func TestBridgeAnswerPerDecision(t *testing.T) {
	h := newHarness(t)
	b := h.startBridge()
	delivery := func(target, token, payload string) *client.Delivery {
		return &client.Delivery{Envelope: &envelope.Body{Tenant: tenant, MessageID: "reused-0123456789abcdef"},
			Agent: "UAGENT", Target: target, Payload: []byte(payload), Claims: &decision.Claims{ID: token}}
	}
	refund := delivery("refunds.draft_refund", "token-1", `{"order_id":"o1","amount_cents":500}`)
	id := tenant + "/UAGENT/reused-0123456789abcdef"
	first, err := b.answerFor(h.ctx, refund, id, answerKey(refund))
	must(t, err)
	again, err := b.answerFor(h.ctx, refund, id, answerKey(refund))
	must(t, err)
	if string(again) != string(first) || len(h.upstream.calls()) != 1 {
		t.Fatalf("a redelivery: answer %s, upstream calls %q; want the remembered %s, one call", again, h.upstream.calls(), first)
	}
	search := delivery("kb.search", "token-2", `{"query":"refunds"}`)
	other, err := b.answerFor(h.ctx, search, id, answerKey(search))
	must(t, err)
	if string(other) == string(first) || len(h.upstream.calls()) != 2 {
		t.Errorf("the id sent again to kb.search: answer %s, upstream calls %q; want search's own answer", other, h.upstream.calls())
	}
}

// TestBridgeAnswerTooLargeToSend: the harness's search tool quotes its
// query, and encoding/json escapes '<' as \u003c: 12,000 of them make an
// answer larger than an envelope's body. Respond failed locally, the
// delivery was handed over again at once, and again, some hundreds of
// times a second until its token expired; the requester got nothing. It
// is now told the answer is too large, once.
func TestBridgeAnswerTooLargeToSend(t *testing.T) {
	h := newHarness(t)
	h.startBridge()
	ag := h.agent(newActor(t), "kb:read")
	r, err := waitReply(h, ag, client.Request{Capability: envelope.Read, Target: "kb.search",
		Sealed: []byte(`{"query":"` + strings.Repeat("<", 12000) + `"}`)}, 20*time.Second)
	if err != nil {
		t.Fatalf("requester: %v", err)
	}
	if !strings.Contains(string(r.Payload), "too large") {
		t.Errorf("reply %s; want the answer-too-large error", r.Payload)
	}
	cons, err := h.js.Consumer(h.ctx, gateway.StreamCap, BridgeConsumerName("mcp-bridge", "kb.search"))
	must(t, err)
	info, err := cons.Info(h.ctx)
	must(t, err)
	if info.Delivered.Consumer > 2 || len(h.upstream.calls()) != 1 {
		t.Errorf("delivered %d times, upstream called %d times; want once each", info.Delivered.Consumer, len(h.upstream.calls()))
	}
}

// waitReply sends req and waits for its reply.
func waitReply(h *harness, ag *client.Agent, req client.Request, d time.Duration) (*client.Reply, error) {
	ctx, cancel := context.WithTimeout(h.ctx, d)
	defer cancel()
	_, r, err := ag.SendAndWait(ctx, req, client.WaitOptions{TrustedGateways: []string{h.gwSigning}})
	return r, err
}
