package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestSendAndDecideThroughSDK: Agent.SendAndDecide returns where the
// message went, and a denial as a *DeniedError with the reason code;
// a notice signed by an untrusted gateway key is not believed.
func TestSendAndDecideThroughSDK(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := client.DefaultAgentConfig()
	cfg.Credential, cfg.Key, cfg.Curve, cfg.GatewayXKey = h.agent.token, h.agent.kp, h.agent.curve, h.gwCurve
	agent, err := client.NewAgent(h.nc, cfg, client.WithClock(h.clock.Now))
	must(t, err)
	trust := client.WaitOptions{TrustedGateways: []string{h.gwSigning}}

	_, d, err := agent.SendAndDecide(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund",
		Sealed: []byte(`{"order_id":"ord_3","amount_cents":300}`)}, trust)
	must(t, err)
	if d.Route != notice.RouteAllow || d.Target != "refunds.draft_refund" {
		t.Errorf("SendAndDecide = %+v; want delivered to refunds.draft_refund", d)
	}

	rc, d, err := agent.SendAndDecide(ctx, client.Request{Capability: envelope.Read, Target: "kb.nowhere",
		Plain: json.RawMessage(`{"q":"x"}`)}, trust)
	var denied *client.DeniedError
	if !errors.As(err, &denied) || denied.Reason != reason.UnknownTarget || denied.MessageID != rc.MessageID || d == nil {
		t.Fatalf("SendAndDecide(unknown target) = %+v, %v; want *DeniedError unknown_target", d, err)
	}

	// Another gateway's key: the notice arrives but is not believed.
	other := client.WaitOptions{TrustedGateways: []string{newActor(t).pub}}
	short, stop := context.WithTimeout(ctx, 2*time.Second)
	defer stop()
	_, _, err = agent.SendAndDecide(short, client.Request{Capability: envelope.Read, Target: "kb.search",
		Plain: json.RawMessage(`{"q":"x"}`)}, other)
	if !errors.Is(err, client.ErrNoDecision) {
		t.Errorf("SendAndDecide trusting another gateway = %v; want ErrNoDecision", err)
	}
	if _, err := agent.WatchDecisions(client.WaitOptions{}); !errors.Is(err, client.ErrConfig) {
		t.Errorf("WatchDecisions without trusted keys = %v; want ErrConfig", err)
	}
	h.stop()
	h.scanSecrets()
}
