package mcp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentgw/agentgw/client"
)

// TestTwoBridgesCallToolOnce: two bridge instances share the durable
// (AckWait 1 s here) and the upstream tool takes 4 s. The first
// instance's consumer tells JetStream the delivery is in progress while
// the call runs, so it is not redelivered to the second instance, whose
// own record knows nothing of it and would call the tool again.
func TestTwoBridgesCallToolOnce(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	calls := map[string]int{} // agentgw/request-id -> upstream calls
	started := make(chan struct{}, 16)
	s := sdk.NewServer(&sdk.Implementation{Name: "slow-upstream", Version: "1"}, nil)
	s.AddTool(&sdk.Tool{Name: "search", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		id, _ := req.Params.Meta[RequestIDMeta].(string)
		mu.Lock()
		calls[id]++
		mu.Unlock()
		started <- struct{}{}
		select { // a slow tool (a payment provider taking its time): past AckWait, within its timeout
		case <-time.After(4 * time.Second):
		case <-ctx.Done():
		}
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "found"}}}, nil
	})
	srv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, &sdk.StreamableHTTPOptions{Stateless: true, JSONResponse: true}))
	t.Cleanup(srv.Close)
	for i := range h.cfg.Tools {
		if h.cfg.Tools[i].Target == "kb.search" {
			h.cfg.Tools[i].Upstream.URL = srv.URL
			h.cfg.Tools[i].Upstream.Timeout = 10 * time.Second
		}
	}
	var perInstance [2]atomic.Int32
	start := func(i int) { // one instance of `agentgw mcp bridge --durable mcp-bridge`
		responder := h.agent(h.bridgeID, "respond:refunds.draft_refund", "respond:payments.send", "respond:kb.search",
			"respond:refunds.issue", "respond:refunds_issue")
		ccfg := client.DefaultConsumerConfig()
		ccfg.Curve, ccfg.TrustedGateways, ccfg.Responder = h.bridgeID.curve, []string{h.gwSigning}, responder
		ccfg.Durable, ccfg.AckWait = "mcp-bridge", time.Second
		b, err := NewBridge(h.js, h.cfg, ccfg, WithCallHook(func(string) { perInstance[i].Add(1) }))
		must(t, err)
		ctx, cancel := context.WithCancel(h.ctx)
		done := make(chan error, 1)
		go func() { done <- b.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	start(0)
	ctx, cancel := context.WithTimeout(h.ctx, 40*time.Second)
	defer cancel()
	ag := searcher(h)
	replied := make(chan error, 1)
	go func() { _, err := search(ctx, h, ag, 0); replied <- err }()
	<-started // instance 0 is calling the tool
	start(1)  // a second instance comes up (scale-out, a rolling deploy)
	if err := <-replied; err != nil {
		t.Fatalf("search: %v", err)
	}
	time.Sleep(5 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	for id, n := range calls {
		if n > 1 {
			t.Errorf("upstream tool called %d times for one request %s (instance calls: %d, %d); no crash", n, id, perInstance[0].Load(), perInstance[1].Load())
		}
	}
}
