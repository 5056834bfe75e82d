package transport_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/envelope"
)

// TestDeployScaleOutPermissions runs the gateway in scale-out mode (the
// deploy example's three instances are this, times three) as the deploy
// gateway user: leases, the journal, the holds bucket and their ordered
// consumers, and the per-tenant consumers of fair_tenants, must all be
// within GATEWAY_PERMISSIONS. A delivery and an
// approval grant go through, the expiry scan runs a few times, and the
// server logs no permission violation for the gateway.
func TestDeployScaleOutPermissions(t *testing.T) {
	d := newDeployment(t, nil)
	d.startGateway(t, func(cfg *gateway.Config) {
		cfg.Consumer.Partitions = 3
		cfg.Consumer.FairTenants = true
		cfg.ScaleOut = &gateway.ScaleOutConfig{Instance: "gw1", LeaseTTL: 3 * time.Second, LeaseRenew: time.Second, LeaseMargin: 600 * time.Millisecond}
	})
	deadline := time.Now().Add(20 * time.Second)
	for len(d.gw.Partitions()) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the instance holds partitions %v; want all 3 (violations: %v)", d.gw.Partitions(), d.log.Violations(`go:agentgw-gateway"`))
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.provision(t)
	ctx := context.Background()
	agentNC, _ := d.connectUser(t, agent1)
	a1 := d.agent(t, agentNC, d.users[agent1], "refund:draft", "kb:read", "pay:send")

	plain := []byte(`{"order_id":"ord_1","amount_cents":1200}`)
	if _, err := a1.Send(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund", Sealed: plain}); err != nil {
		t.Fatalf("agent Send = %v", err)
	}
	cnc, _ := d.connectUser(t, refundsConsumr)
	m := fetchOne(t, tenantJS(t, cnc), gateway.StreamCap, durableRefunds)
	if _, err := client.VerifyDelivery(m.Subject(), m.Headers(), m.Data(), d.verifyOptions(d.users[refundsConsumr], "refunds.draft_refund")); err != nil {
		t.Fatalf("VerifyDelivery = %v; want a genuine delivery", err)
	}
	must(t, m.DoubleAck(ctx))

	// A held payment, granted by the approver (another partition, most
	// likely): the hold lives in the shared bucket.
	d.approvalRoundTrip(t, ctx, a1)
	time.Sleep(2500 * time.Millisecond) // a few expiry scans and lease renewals
	if v := d.log.Violations(`go:agentgw-gateway"`); len(v) > 0 {
		t.Errorf("the scaled-out gateway hit permission violations:\n%s", strings.Join(v, "\n"))
	}
}
