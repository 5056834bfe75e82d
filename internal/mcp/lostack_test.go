package mcp

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
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
