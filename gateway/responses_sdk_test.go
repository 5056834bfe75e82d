package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/notice"
)

// TestResponseThroughSDK: the agent sends and awaits, the consumer
// answers in one call from its handler, the agent gets the redacted
// reply — all through the SDK and the real gateway.
func TestResponseThroughSDK(t *testing.T) {
	h := newHarness(t)
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.draft_refund"}, time.Hour, "")
	h.start()
	<-h.gw.Ready() // the consumer needs the capability stream
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	agentCfg := func(a *actor) client.AgentConfig {
		c := client.DefaultAgentConfig()
		c.Credential, c.Key, c.Curve, c.GatewayXKey = a.token, a.kp, a.curve, h.gwCurve
		return c
	}
	agent, err := client.NewAgent(h.nc, agentCfg(h.agent), client.WithClock(h.clock.Now))
	must(t, err)
	responder, err := client.NewAgent(h.nc, agentCfg(h.consumer), client.WithClock(h.clock.Now))
	must(t, err)
	ccfg := client.DefaultConsumerConfig()
	ccfg.Tenant, ccfg.Targets, ccfg.Curve = "tenant_a", []string{"refunds.draft_refund"}, h.consumer.curve
	ccfg.TrustedGateways, ccfg.Responder = []string{h.gwSigning}, responder
	consumer, err := client.NewConsumer(h.js, ccfg, client.WithClock(h.clock.Now))
	must(t, err)
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- consumer.Consume(cctx, func(ctx context.Context, d *client.Delivery) error {
			_, err := consumer.Respond(ctx, d, map[string]string{"refund_id": "r-9", "status": "drafted", "customer_email": "x@example.com"})
			return err
		})
	}()
	h.secrets = append(h.secrets, "x@example.com")
	// The notice that the request was delivered does not end the wait.
	var seen []*client.Decision
	rc, reply, err := agent.SendAndWait(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund",
		Sealed: []byte(`{"order_id":"ord_3","amount_cents":300}`)}, client.WaitOptions{TrustedGateways: []string{h.gwSigning},
		OnDecision: func(d *client.Decision) { seen = append(seen, d) }})
	ccancel()
	if cerr := <-done; cerr != nil {
		t.Fatalf("Consume: %v", cerr)
	}
	must(t, err)
	if string(reply.Payload) != `{"refund_id":"r-9","status":"drafted"}` || reply.Responder != h.consumer.pub {
		t.Fatalf("reply = %s from %s; want the redacted answer from the consumer", reply.Payload, reply.Responder)
	}
	for _, d := range seen {
		if d.Route != notice.RouteAllow || d.Target != "refunds.draft_refund" || d.MessageID != rc.MessageID {
			t.Errorf("OnDecision saw %+v; want only the delivery of %s", d, rc.MessageID)
		}
	}
	h.stop()
	h.scanSecrets()
}
