package transport_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/internal/gwtest"
)

// TestDeployGatewayRecovers: the deploy gateway user may do what a
// gateway does at its start after a crash: read the unacknowledged range
// of its ingress consumer by sequence and decide it before anything new.
func TestDeployGatewayRecovers(t *testing.T) {
	d := newDeployment(t, nil)
	cfg := d.gatewayConfig(t)

	// A first run creates the streams and the gateway's consumer.
	first, err := gateway.New(cfg, gateway.WithLogger(zerolog.Nop()))
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	select {
	case <-first.Ready():
	case err := <-done:
		t.Fatalf("gateway Run = %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("gateway not ready")
	}
	cancel()
	must(t, <-done)
	must(t, first.Close())
	d.provision(t)

	agentNC, _ := d.connectUser(t, agent1)
	a1 := d.agent(t, agentNC, d.users[agent1], "refund:draft")
	plain := []byte(`{"order_id":"ord_r","amount_cents":1200}`)
	if _, err := a1.Send(context.Background(), client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund", Sealed: plain}); err != nil {
		t.Fatalf("Send = %v", err)
	}
	// Delivered to a gateway that dies before deciding it: taken from the
	// gateway's consumer as the gateway user, never acknowledged.
	gwNC, _ := d.connectCert(t, d.pki.gateway)
	gjs, err := jetstream.New(gwNC)
	must(t, err)
	fetchOne(t, gjs, gateway.StreamIngress, cfg.Consumer.Durable)
	gwNC.Close()

	second, err := gateway.New(cfg, gateway.WithLogger(zerolog.Nop()))
	must(t, err)
	gwtest.Run(t, second, "after a crash, as the deploy gateway user")
	nc, _ := d.connectUser(t, refundsConsumr)
	m := fetchOne(t, tenantJS(t, nc), gateway.StreamCap, durableRefunds)
	dl, err := client.VerifyDelivery(m.Subject(), m.Headers(), m.Data(), d.verifyOptions(d.users[refundsConsumr], "refunds.draft_refund"))
	if err != nil || string(dl.Payload) != string(plain) {
		t.Fatalf("VerifyDelivery = %v; want the held message delivered", err)
	}
	must(t, m.DoubleAck(context.Background()))
	if n := second.Stats().Recovered.Load(); n != 1 {
		t.Errorf("recovered %d messages at the start; want 1 (decided by recovery, not by a redelivery after ack_wait)", n)
	}
	if v := d.log.Violations(`go:agentgw-gateway"`); len(v) > 0 {
		t.Errorf("the recovering gateway hit permission violations:\n%s", strings.Join(v, "\n"))
	}
}
