package mcp

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/identity"
)

// TestBridgeHandsBackWhatItLacksTheKeyFor: a bridge whose trusted gateway
// keys were not updated before a signing-key rotation refuses a genuine
// tool call for want of a key (client.ErrUnknownKey). With
// HandBackUnknownKeys, which `agentgw mcp bridge` sets, the call goes back
// on the durable and a bridge that trusts the gateway's key calls the
// tool, once; without it the refusal terminates the call and no bridge
// ever makes it.
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

			h.startBridgeWith(nil)
			// A hand-back comes again after NakDelay (one second).
			deadline := time.Now().Add(5 * time.Second)
			for len(h.upstream.calls()) == 0 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			got := h.upstream.calls()
			want := 0
			if handBack {
				want = 1
			}
			if len(got) != want {
				t.Errorf("upstream calls by the bridge with the gateway's key = %q; want %d", got, want)
			}
		})
	}
}
