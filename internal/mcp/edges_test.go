package mcp

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// TestEndpointLostAcksAreNoReply: the ingress stream stores the call's
// envelope but its acknowledgements never reach the endpoint (a stream
// leader lost, a slow server), so every attempt times out. The envelope
// is decided and the tool runs all the same: the client is told the call
// has no reply (-32012, it may still be decided), never that it was not
// sent, which would invite it to call the tool a second time.
func TestEndpointLostAcksAreNoReply(t *testing.T) {
	h := newEndpointHarness(t)
	tok := h.signed("tess", "support")
	if _, resp := h.postRPC(tok, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"warm"}}}`); !strings.Contains(resp, "articles about warm") {
		t.Fatalf("warm-up call: %s", resp)
	}
	// The stream now takes the envelopes from a relay, which stores
	// them and sends the publisher no acknowledgement.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := h.js.Stream(ctx, "AGENTGW_IN")
	must(t, err)
	cfg := s.CachedInfo().Config
	cfg.Subjects = []string{"relay.in.*.*"}
	cfg.SubjectTransform.Source = "relay.in.*.*"
	_, err = h.js.UpdateStream(ctx, cfg)
	must(t, err)
	relay, err := h.nc.Subscribe("agentgw.in.*.*", func(m *nats.Msg) {
		out := nats.NewMsg("relay." + strings.TrimPrefix(m.Subject, "agentgw."))
		out.Header, out.Data = m.Header, m.Data
		_ = h.nc.PublishMsg(out)
	})
	must(t, err)
	defer func() { _ = relay.Unsubscribe() }()
	must(t, h.nc.Flush())

	_, resp := h.postRPC(tok, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"search","arguments":{"query":"lostack"}}}`)
	if !strings.Contains(resp, `"code":-32012`) || strings.Contains(resp, "not sent") {
		t.Errorf("a call whose acknowledgements were lost: %s; want -32012 (no reply), never \"not sent\"", resp)
	}
	ran := func() bool {
		return slices.ContainsFunc(h.upstream.calls(), func(c string) bool { return strings.Contains(c, "lostack") })
	}
	deadline := time.Now().Add(15 * time.Second)
	for !ran() {
		if time.Now().After(deadline) {
			t.Fatal("the stored call never reached the tool: the test shows nothing")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEndpointRebindingHostRefused: on its loopback listener the endpoint
// answers only requests addressed to a loopback host (DNS rebinding), on
// every path: a synchronous call (the MCP SDK's handler), and what the
// endpoint answers itself (a task-augmented call, tasks/list).
func TestEndpointRebindingHostRefused(t *testing.T) {
	h := newEndpointHarness(t)
	tok := h.signed("tess", "support")
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"rebind"}}}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"search","task":{"ttl":5000},"arguments":{"query":"rebind"}}}`,
		`{"jsonrpc":"2.0","id":3,"method":"tasks/list","params":{}}`,
	} {
		req, err := http.NewRequest(http.MethodPost, h.resource, strings.NewReader(body))
		must(t, err)
		req.Host = "rebind.attacker.example"
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s with Host rebind.attacker.example: %d %s; want 403", body, resp.StatusCode, b)
		}
	}
	if calls := h.upstream.calls(); slices.ContainsFunc(calls, func(c string) bool { return strings.Contains(c, "rebind") }) {
		t.Errorf("a refused call reached the tool: %v", calls)
	}
}

// TestServeSaysWhenTheGatewayKeyIsNotTrusted: `agentgw mcp serve` left
// out of a rotation of the gateway's signing key (trusted_gateways names
// another key) refuses its calls' notices and replies; each call ends
// with no reply, and stderr names the key that signed what came.
func TestServeSaysWhenTheGatewayKeyIsNotTrusted(t *testing.T) {
	other, err := nkeys.CreateServer()
	must(t, err)
	otherPub, _ := other.PublicKey()
	h := newEndpointHarnessWith(t, endpointOptions{cli: true, policy: testPolicy, trusted: []string{otherPub}, callTimeout: 5 * time.Second})
	tok := h.signed("tess", "support")
	if _, resp := h.postRPC(tok, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"rotated"}}}`); !strings.Contains(resp, `"code":-32012`) {
		t.Fatalf("a call whose notice and reply the endpoint cannot verify: %s; want -32012 (no reply)", resp)
	}
	out := h.cliOut.String()
	want := "agentgw mcp serve: tools/call search: refused a decision notice or reply: decision_token_invalid"
	if !strings.Contains(out, want) || !strings.Contains(out, h.gwSigning) || !strings.Contains(out, "not among endpoint.trusted_gateways") {
		t.Errorf("agentgw mcp serve's output:\n%s\nwant %q naming the gateway's key %s", out, want, h.gwSigning)
	}
	// One line per call (the notice and the reply were both refused),
	// and nothing of the call's arguments or the reply's payload.
	if n := strings.Count(out, "refused a decision notice or reply"); n != 1 {
		t.Errorf("agentgw mcp serve printed %d refusals for one call; want 1:\n%s", n, out)
	}
	if strings.Contains(out, "rotated") || strings.Contains(out, "articles about") {
		t.Errorf("agentgw mcp serve's output holds the call's arguments or its reply:\n%s", out)
	}
}
