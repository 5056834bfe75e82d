package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/envelope"
)

// refund sends one draft_refund for order as ag and waits for its reply.
func (h *harness) refund(ag *client.Agent, order string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
	defer cancel()
	_, _, err := ag.SendAndWait(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund",
		Sealed: []byte(`{"order_id":"` + order + `","amount_cents":500}`)}, client.WaitOptions{TrustedGateways: []string{h.gwSigning}})
	must(h.t, err)
}

// TestBridgeRestartCallsNoToolAgain: a restarted bridge resumes its
// durable consumers where they stopped. The answered, acknowledged
// delivery is not handed over again (an ephemeral consumer delivering
// everything would run the refund a second time), and a bridge without
// a durable name is refused.
func TestBridgeRestartCallsNoToolAgain(t *testing.T) {
	h := newHarness(t)
	ag := h.agent(newActor(t), "refund:draft")
	_, stop := h.startBridgeWith(nil)
	h.refund(ag, "o-before")
	stop()

	h.startBridgeWith(nil)
	h.refund(ag, "o-after")
	// The consumer hands deliveries over in stream order: had the first
	// come again, it would have been called before the second.
	want := []string{`draft_refund {"order_id":"o-before","amount_cents":500}`, `draft_refund {"order_id":"o-after","amount_cents":500}`}
	if got := h.upstream.calls(); !slices.Equal(got, want) {
		t.Errorf("upstream calls across a restart = %q; want each refund once", got)
	}
	// Each call names its request, for a tool that must not act twice.
	if ids := h.upstream.requestIDs(); len(ids) != 2 || ids[0] == ids[1] || !strings.HasPrefix(ids[0], tenant+"/"+ag.PublicKey()+"/") {
		t.Errorf("upstream request ids = %q; want <tenant>/<agent>/<message id> for each", ids)
	}

	ccfg := client.DefaultConsumerConfig()
	ccfg.Curve, ccfg.TrustedGateways = h.bridgeID.curve, []string{h.gwSigning}
	ccfg.Responder = h.agent(h.bridgeID, "respond:refunds.draft_refund", "respond:payments.send", "respond:kb.search")
	if _, err := NewBridge(h.js, h.cfg, ccfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "durable") {
		t.Errorf("NewBridge without a durable name = %v; want ErrConfig naming the durable", err)
	}
	ccfg.Durable = "mcp-bridge"
	if _, err := NewBridge(h.js, h.cfg, ccfg); err != nil {
		t.Errorf("NewBridge with a durable name = %v; want a bridge", err)
	}
}

// TestBridgeBindsPreCreatedConsumers: with Bind and the tenant as its
// durable name the bridge reads each target with the consumer an
// administrator pre-created for it (deploy/, `agentgw run`: tenant users
// may bind those and create none), <tenant>~<target>.
func TestBridgeBindsPreCreatedConsumers(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
	defer cancel()
	for _, target := range []string{"refunds.draft_refund", "payments.send", "kb.search"} {
		_, err := h.js.CreateOrUpdateConsumer(ctx, gateway.StreamCap, jetstream.ConsumerConfig{
			Durable: client.CapabilityConsumerName(tenant, target), FilterSubject: "agentgw.cap." + tenant + "." + target,
			AckPolicy: jetstream.AckExplicitPolicy,
		})
		must(t, err)
	}
	h.startBridgeWith(func(c *client.ConsumerConfig) { c.Durable, c.Bind = tenant, true })
	h.refund(h.agent(newActor(t), "refund:draft"), "o-bound")
	_, reply, err := h.agent(newActor(t), "kb:read").SendAndWait(ctx, client.Request{Capability: envelope.Read, Target: "kb.search",
		Sealed: []byte(`{"query":"bound"}`)}, client.WaitOptions{TrustedGateways: []string{h.gwSigning}})
	must(t, err)
	if want := "3 articles about bound"; !strings.Contains(string(reply.Payload), want) {
		t.Errorf("search reply = %s; want the tool's answer", reply.Payload)
	}
	for _, target := range []string{"refunds.draft_refund", "kb.search"} {
		c, err := h.js.Consumer(ctx, gateway.StreamCap, client.CapabilityConsumerName(tenant, target))
		must(t, err)
		info, err := c.Info(ctx)
		must(t, err)
		if info.Delivered.Consumer == 0 {
			t.Errorf("pre-created consumer of %s delivered nothing; want the bridge to read through it", target)
		}
	}
}

// TestBridgePassesArgumentBytesThrough: the upstream receives the
// arguments the gateway, its policy and the approver checked, byte for
// byte: an integer beyond float64's exact range (2^53+1) arrives as
// sent, not rounded to 9007199254740992 by a decode into Go values.
func TestBridgePassesArgumentBytesThrough(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	var got []string
	raw := sdk.NewServer(&sdk.Implementation{Name: "raw-upstream", Version: "1"}, nil)
	raw.AddTool(&sdk.Tool{Name: "search", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(_ context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		mu.Lock()
		got = append(got, string(req.Params.Arguments))
		mu.Unlock()
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "ok"}}}, nil
	})
	srv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return raw }, &sdk.StreamableHTTPOptions{Stateless: true, JSONResponse: true}))
	t.Cleanup(srv.Close)
	for i := range h.cfg.Tools {
		if h.cfg.Tools[i].Target == "kb.search" {
			h.cfg.Tools[i].Upstream.URL = srv.URL
		}
	}
	h.startBridge()
	ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
	defer cancel()
	const args = `{"query":"ledger","account":9007199254740993,"ratio":0.10000000000000000555}`
	_, _, err := h.agent(newActor(t), "kb:read").SendAndWait(ctx, client.Request{Capability: envelope.Read, Target: "kb.search",
		Sealed: []byte(args)}, client.WaitOptions{TrustedGateways: []string{h.gwSigning}})
	must(t, err)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != args {
		t.Errorf("upstream arguments = %q; want exactly %s", got, args)
	}
}
