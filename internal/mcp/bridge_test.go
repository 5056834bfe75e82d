package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestBridgeCallsUpstreamWithVerifiedArguments: an agent's sealed
// tools/call arguments pass the gateway, reach the upstream MCP server
// (official Go SDK) through the bridge exactly as sent, and the tool's
// structured result comes back as the verified reply with the catalog's
// sensitive field removed.
func TestBridgeCallsUpstreamWithVerifiedArguments(t *testing.T) {
	h := newHarness(t)
	h.startBridge()
	ag := h.agent(newActor(t), "refund:draft")
	ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
	defer cancel()
	_, reply, err := ag.SendAndWait(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund",
		Sealed: []byte(`{"order_id":"o1","amount_cents":500}`)}, client.WaitOptions{TrustedGateways: []string{h.gwSigning}})
	must(t, err)
	if string(reply.Payload) != `{"refund_id":"r-o1","status":"drafted"}` || reply.Responder != h.bridgeID.pub {
		t.Errorf("reply = %s from %s; want the redacted tool result from the bridge", reply.Payload, reply.Responder)
	}
	if got := h.upstream.calls(); len(got) != 1 || got[0] != `draft_refund {"order_id":"o1","amount_cents":500}` {
		t.Errorf("upstream calls = %q; want the one verified call", got)
	}
	h.scanSecrets(`"order_id":"o1"`, "cust@example.com")
}

// TestBridgeRefusesUnverifiedDelivery: a message published straight to
// the capability subject, with a forged decision token, is terminated by
// the bridge's consumer and never reaches the upstream server.
func TestBridgeRefusesUnverifiedDelivery(t *testing.T) {
	h := newHarness(t)
	h.startBridge()
	m := nats.NewMsg("agentgw.cap.tenant_a.refunds.draft_refund")
	m.Data = []byte(`{"order_id":"forged","amount_cents":1}`)
	m.Header.Set(header.Decision, "eyJhbGciOiJFZDI1NTE5In0.e30.AAAA")
	_, err := h.js.PublishMsg(h.ctx, m)
	must(t, err)
	select {
	case err := <-h.rejected:
		var d *reason.Denial
		if !errors.As(err, &d) {
			t.Errorf("rejection %v is not a typed denial", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the forged delivery was not rejected")
	}
	// A real call after it shows the bridge is consuming and the forged
	// one never got through.
	ag := h.agent(newActor(t), "kb:read")
	ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
	defer cancel()
	_, reply, err := ag.SendAndWait(ctx, client.Request{Capability: envelope.Read, Target: "kb.search",
		Sealed: []byte(`{"query":"refunds"}`)}, client.WaitOptions{TrustedGateways: []string{h.gwSigning}})
	must(t, err)
	var res struct {
		Content []struct{ Text string } `json:"content"`
	}
	if json.Unmarshal(reply.Payload, &res) != nil || len(res.Content) != 1 || res.Content[0].Text != "3 articles about refunds" {
		t.Errorf("search reply = %s; want the tool's text content", reply.Payload)
	}
	if got := h.upstream.calls(); len(got) != 1 || got[0] != `search {"query":"refunds"}` {
		t.Errorf("upstream calls = %q; want only the verified search", got)
	}
}

// TestBridgeStdioUpstream: the same tool served by a stdio MCP server
// (this test binary, run as the official Go SDK's stdio server).
func TestBridgeStdioUpstream(t *testing.T) {
	h := newHarness(t)
	exe, err := os.Executable()
	must(t, err)
	t.Setenv(stdioServerEnv, "1")
	for i := range h.cfg.Tools {
		h.cfg.Tools[i].Upstream = Upstream{Command: []string{exe}, Tool: h.cfg.Tools[i].Upstream.Tool, Env: []string{stdioServerEnv}}
	}
	h.startBridge()
	ag := h.agent(newActor(t), "refund:draft")
	ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
	defer cancel()
	_, reply, err := ag.SendAndWait(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund",
		Sealed: []byte(`{"order_id":"o2","amount_cents":700}`)}, client.WaitOptions{TrustedGateways: []string{h.gwSigning}})
	must(t, err)
	if string(reply.Payload) != `{"refund_id":"r-o2","status":"drafted"}` {
		t.Errorf("reply over stdio = %s; want the redacted tool result", reply.Payload)
	}
}

// TestBridgeUpstreamCredential: the bridge presents its own upstream
// bearer token (from the environment variable the mapping names) to an
// upstream server that requires it; the token appears in no log, audit
// event or denied record.
func TestBridgeUpstreamCredential(t *testing.T) {
	h := newHarness(t)
	const secret = "upstream-s3cret-token"
	t.Setenv("AGENTGW_TEST_UPSTREAM_TOKEN", secret)
	h.upstream = startUpstream(t, secret)
	for i := range h.cfg.Tools {
		h.cfg.Tools[i].Upstream.URL, h.cfg.Tools[i].Upstream.BearerEnv = h.upstream.URL, "AGENTGW_TEST_UPSTREAM_TOKEN"
	}
	h.startBridge()
	ag := h.agent(newActor(t), "refund:draft")
	ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
	defer cancel()
	_, reply, err := ag.SendAndWait(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund",
		Sealed: []byte(`{"order_id":"o3","amount_cents":300}`)}, client.WaitOptions{TrustedGateways: []string{h.gwSigning}})
	must(t, err)
	if string(reply.Payload) != `{"refund_id":"r-o3","status":"drafted"}` {
		t.Errorf("reply = %s; want the tool result", reply.Payload)
	}
	for _, a := range h.upstream.authorizations() {
		if a != "Bearer "+secret {
			t.Errorf("upstream saw Authorization %.20q; want the bridge's own token", a)
		}
	}
	h.scanSecrets(secret)
}

// TestBridgeStdioEnvironment: a stdio upstream gets PATH, HOME and the
// variables its mapping names, and nothing else of the bridge's
// environment: not another upstream's bearer token, not the NATS
// credentials.
func TestBridgeStdioEnvironment(t *testing.T) {
	h := newHarness(t)
	exe, err := os.Executable()
	must(t, err)
	const other = "other-upstream-s3cret"
	t.Setenv(stdioServerEnv, "1")
	t.Setenv("AGENTGW_TEST_OTHER_TOKEN", other)
	t.Setenv("NATS_CREDS", "/etc/agentgw/bridge-nats.creds")
	t.Setenv("AGENTGW_TEST_PASSED", "passed-on")
	h.upstream = startUpstream(t, other)
	for i := range h.cfg.Tools {
		h.cfg.Tools[i].Upstream = Upstream{URL: h.upstream.URL, BearerEnv: "AGENTGW_TEST_OTHER_TOKEN", Tool: h.cfg.Tools[i].Upstream.Tool}
		if h.cfg.Tools[i].Target == "kb.search" {
			h.cfg.Tools[i].Upstream = Upstream{Command: []string{exe}, Tool: "environ", Env: []string{stdioServerEnv, "AGENTGW_TEST_PASSED"}}
		}
	}
	h.startBridge()
	ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
	defer cancel()
	_, reply, err := h.agent(newActor(t), "kb:read").SendAndWait(ctx, client.Request{Capability: envelope.Read, Target: "kb.search",
		Sealed: []byte(`{"query":"env"}`)}, client.WaitOptions{TrustedGateways: []string{h.gwSigning}})
	must(t, err)
	got := string(reply.Payload)
	for _, bad := range []string{other, "AGENTGW_TEST_OTHER_TOKEN", "NATS_CREDS", "bridge-nats.creds"} {
		if strings.Contains(got, bad) {
			t.Errorf("the stdio upstream's environment holds %q; want only PATH, HOME and its own variables", bad)
		}
	}
	for _, want := range []string{"AGENTGW_TEST_PASSED=passed-on", "PATH="} {
		if !strings.Contains(got, want) {
			t.Errorf("the stdio upstream's environment = %.300s; want %q in it", got, want)
		}
	}
}

// TestBridgeSlowUpstreamHoldsOnlyItsTarget: an upstream that hangs
// holds neither the bridge's other targets (each has its own consumer)
// nor its own for longer than its timeout: a refund completes while the
// search's upstream hangs, and the search is answered with an error once
// its timeout passes.
func TestBridgeSlowUpstreamHoldsOnlyItsTarget(t *testing.T) {
	h := newHarness(t)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	slow := sdk.NewServer(&sdk.Implementation{Name: "slow-upstream", Version: "1"}, nil)
	slow.AddTool(&sdk.Tool{Name: "search", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(ctx context.Context, _ *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, errors.New("gave up")
	})
	srv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return slow }, &sdk.StreamableHTTPOptions{Stateless: true, JSONResponse: true}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	for i := range h.cfg.Tools {
		if h.cfg.Tools[i].Target == "kb.search" {
			h.cfg.Tools[i].Upstream.URL, h.cfg.Tools[i].Upstream.Timeout = srv.URL, 2*time.Second
		}
	}
	h.startBridge()
	ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
	defer cancel()
	search := make(chan *client.Reply, 1)
	go func() {
		_, reply, err := h.agent(newActor(t), "kb:read").SendAndWait(ctx, client.Request{Capability: envelope.Read, Target: "kb.search",
			Sealed: []byte(`{"query":"slow"}`)}, client.WaitOptions{TrustedGateways: []string{h.gwSigning}})
		if err != nil {
			t.Errorf("search: %v", err)
		}
		search <- reply
	}()
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("the search never reached its upstream")
	}
	_, reply, err := h.agent(newActor(t), "refund:draft").SendAndWait(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund",
		Sealed: []byte(`{"order_id":"o-fast","amount_cents":100}`)}, client.WaitOptions{TrustedGateways: []string{h.gwSigning}})
	must(t, err)
	if string(reply.Payload) != `{"refund_id":"r-o-fast","status":"drafted"}` {
		t.Errorf("refund reply while the search's upstream hangs = %s; want the refund's answer", reply.Payload)
	}
	select {
	case <-search:
		t.Error("the search was answered before the refund; want its upstream still hanging")
	default:
	}
	if r := <-search; r == nil || !strings.Contains(string(r.Payload), `"isError":true`) || !strings.Contains(string(r.Payload), "did not answer in time") {
		t.Errorf("search reply after its upstream's timeout = %v; want an error answer", r)
	}
}
