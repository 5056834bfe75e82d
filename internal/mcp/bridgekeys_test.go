package mcp

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/identity"
)

// TestBridgeHandsBackWhatItLacksTheKeyFor: a bridge whose trusted gateway
// keys were not updated before a signing-key rotation refuses a genuine
// tool call for want of a key (client.ErrUnknownKey). With
// HandBackUnknownKeys, which `agentgw mcp bridge` sets, the call stays
// pending on the durable and a bridge that trusts the gateway's key then
// calls the tool, once; without it the refusal terminates the call: the
// durable holds nothing pending, and no bridge can ever make it.
func TestBridgeHandsBackWhatItLacksTheKeyFor(t *testing.T) {
	for _, handBack := range []bool{true, false} {
		t.Run(fmt.Sprintf("handBack=%v", handBack), func(t *testing.T) {
			h := newHarness(t)
			ag := h.agent(newActor(t), "refund:draft")
			old, err := identity.NewGatewayKey()
			must(t, err)
			oldPub, _ := old.PublicKey()
			_, stop := h.startBridgeWith(func(c *client.ConsumerConfig) {
				c.TrustedGateways = []string{oldPub}
				c.HandBackUnknownKeys = handBack
			})
			ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
			defer cancel()
			_, err = ag.Send(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund",
				Sealed: []byte(`{"order_id":"o-rotated","amount_cents":500}`)})
			must(t, err)
			select {
			case err := <-h.rejected:
				if !errors.Is(err, client.ErrUnknownKey) {
					t.Fatalf("the bridge with a rotated-out key rejected the call with %v; want ErrUnknownKey", err)
				}
			case <-ctx.Done():
				t.Fatal("the bridge with a rotated-out key rejected nothing")
			}
			stop()
			if got := h.upstream.calls(); len(got) != 0 {
				t.Fatalf("the bridge with a rotated-out key called the tool: %q", got)
			}

			// Handed back, the delivery is pending acknowledgement;
			// terminated, nothing is pending and the ack floor has
			// passed it. The settle follows OnReject: wait for it.
			cons, err := h.js.Consumer(ctx, gateway.StreamCap, BridgeConsumerName("mcp-bridge", "refunds.draft_refund"))
			must(t, err)
			var info *jetstream.ConsumerInfo
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				info, err = cons.Info(h.ctx)
				must(t, err)
				if settled := info.NumAckPending == 0 && info.NumPending == 0; settled != handBack || time.Now().After(deadline) {
					break
				}
			}
			if pending := info.NumAckPending + int(info.NumPending); (pending == 1) != handBack || pending > 1 {
				t.Fatalf("the durable after the refusal: %d awaiting ack, %d not delivered; want the call %s", info.NumAckPending, info.NumPending,
					map[bool]string{true: "pending (handed back)", false: "terminated (nothing pending)"}[handBack])
			}
			if !handBack {
				return
			}

			h.startBridgeWith(nil)
			// A hand-back comes again after NakDelay (one second).
			for deadline := time.Now().Add(10 * time.Second); len(h.upstream.calls()) == 0 && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
			}
			if got := h.upstream.calls(); len(got) != 1 {
				t.Errorf("upstream calls by the bridge with the gateway's key = %q; want the refund once", got)
			}
		})
	}
}
