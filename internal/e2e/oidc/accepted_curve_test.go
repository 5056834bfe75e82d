package oidc_test

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/exchange"
	"github.com/agentgw/agentgw/gateway/exchange/protocol"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestExchangeTakesProofsToAcceptedCurveKey: a gateway that rotated its
// curve key and keeps the old one (keys.accepted_curves, here
// exchange.WithAcceptedKeys) still takes an xkey proof sealed to the old
// key from a requester that has not yet taken the new one, and counts
// it; a proof to a key it never held is refused, and no credential names
// the old key as an agent's xkey.
func TestExchangeTakesProofsToAcceptedCurveKey(t *testing.T) {
	h := newHarness(t)
	prev, err := identity.NewCurve()
	must(t, err)
	prevX, _ := prev.PublicKey()
	prevBox, err := identity.NewBox(prev)
	must(t, err)
	var mu sync.Mutex
	var opened []string
	h.serve(exchange.WithAcceptedKeys(func(key string) {
		mu.Lock()
		opened = append(opened, key)
		mu.Unlock()
	}, prevBox))
	billing := h.token(h.corp, "billing-bot", "s3cret-billing")
	other, err := identity.NewCurve()
	must(t, err)
	otherX, _ := other.PublicKey()
	sealedTo := func(to string) func(r *protocol.Request) {
		return func(r *protocol.Request) {
			p, err := protocol.SealXKeyProof(h.agent.ck, to, r.Agent, r.RequestID)
			must(t, err)
			r.XKeyProof = p
		}
	}
	for _, tt := range []struct {
		name string
		req  func(r *protocol.Request)
		want reason.Code
	}{
		{name: "allow/proof_to_current_key", req: sealedTo(h.gwX)},
		{name: "allow/proof_to_accepted_key", req: sealedTo(prevX)},
		{name: "deny/proof_to_a_key_never_held", req: sealedTo(otherX), want: reason.ExchangeProofInvalid},
		{name: "deny/xkey_is_the_accepted_key", want: reason.ExchangeProofInvalid, req: func(r *protocol.Request) {
			r.XKey = prevX
			p, err := protocol.SealXKeyProof(prev, h.gwX, r.Agent, r.RequestID)
			must(t, err)
			r.XKeyProof = p
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := h.raw(billing, tt.req, h.signBy(h.agent.kp))
			if ev := h.lastEvent(); got != tt.want || ev.Reason != string(tt.want) {
				t.Fatalf("exchange = %q (audit %q: %s); want %q", got, ev.Reason, ev.Detail, tt.want)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(opened) != 1 || opened[0] != prevX {
		t.Errorf("accepted-key opens reported %v; want exactly one, of %s", opened, prevX)
	}
}

// TestRotatedGatewayServesAgentOnPreviousCurveKey: a gateway hosting the
// exchange is restarted with a new curve key and the old one in
// keys.accepted_curves. An SDK agent still configured with the old key
// (GatewayXKey) exchanges its IdP token, its proof sealed to the old key,
// and sends a sealed request to the old key: both are taken, and the
// request is delivered. The same agent against the rotated gateway
// without the old key is refused at the exchange.
func TestRotatedGatewayServesAgentOnPreviousCurveKey(t *testing.T) {
	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprintf("keep_previous=%v", keep), func(t *testing.T) {
			h := newHarness(t)
			old, oldX := h.gwCurve, h.gwX
			next, err := identity.NewCurve()
			must(t, err)
			h.gwCurve = next
			h.gwX, _ = next.PublicKey()
			ctx := startExchangeGateway(t, h, func(cfg *gateway.Config, dir string) {
				if keep {
					writeSeed(t, filepath.Join(dir, "curve-previous.nk"), old)
					cfg.Keys.AcceptedCurves = []string{filepath.Join(dir, "curve-previous.nk")}
				}
			})
			xcfg := h.exchangeCfg(h.agent, h.token(h.corp, "billing-bot", "s3cret-billing"))
			xcfg.GatewayXKey = oldX
			src, err := client.NewCredentialSource(h.nc, xcfg)
			must(t, err)
			ag, err := client.NewExchangeAgent(h.nc, client.DefaultAgentConfig(), src)
			must(t, err)
			rcpt, err := ag.Send(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.create", Sealed: []byte(`{"order_id":"o1","amount_cents":100}`)})
			if !keep {
				if reason.Of(err) != reason.ExchangeProofInvalid {
					t.Fatalf("send after an exchange with a proof to the dropped key = %v; want exchange_proof_invalid", err)
				}
				return
			}
			must(t, err)
			if out := outputFor(t, h, rcpt.Seq); out.Subject != "agentgw.cap.tenant_a.refunds.create" {
				t.Fatalf("request sealed to the previous key went to %s (%s %s); want delivered", out.Subject, out.Header.Get(header.Reason), out.Header.Get(header.Detail))
			}
			// The exchange's proof and the payload, each opened once.
			var m dto.Metric
			must(t, h.gw.Metrics().AcceptedCurveOpens.WithLabelValues(oldX).Write(&m))
			if n := m.GetCounter().GetValue(); n != 2 {
				t.Errorf("agentgw_accepted_curve_opens_total{key=old} = %v; want 2 (the proof and the payload)", n)
			}
		})
	}
}
