package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
)

// gatedSearch is an upstream whose search tool counts the calls it is
// running and holds each until wait lets it go.
type gatedSearch struct {
	mu          sync.Mutex
	calls, busy int
	top         int           // the most calls running at once
	conns       int           // connections the upstream accepted
	gate        chan struct{} // holdUntil's current round
	wait        func(ctx context.Context, running int)
}

// serve replaces the kb.search tool's upstream in h with g.
func (g *gatedSearch) serve(t *testing.T, h *harness, concurrency int) {
	t.Helper()
	s := sdk.NewServer(&sdk.Implementation{Name: "gated-upstream", Version: "1"}, nil)
	s.AddTool(&sdk.Tool{Name: "search", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(ctx context.Context, _ *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		g.mu.Lock()
		g.calls++
		g.busy++
		g.top = max(g.top, g.busy)
		running := g.busy
		g.mu.Unlock()
		g.wait(ctx, running)
		g.mu.Lock()
		g.busy--
		g.mu.Unlock()
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "found"}}}, nil
	})
	srv := httptest.NewUnstartedServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, &sdk.StreamableHTTPOptions{Stateless: true, JSONResponse: true}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			g.mu.Lock()
			g.conns++
			g.mu.Unlock()
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	for i := range h.cfg.Tools {
		if h.cfg.Tools[i].Target == "kb.search" {
			h.cfg.Tools[i].Upstream.URL, h.cfg.Tools[i].Upstream.Concurrency = srv.URL, concurrency
		}
	}
}

// searcher is an agent that may search; the harness records its
// credential, so make searchers before the goroutines that use them.
func searcher(h *harness) *client.Agent { return h.agent(newActor(h.t), "kb:read") }

// search sends one kb.search request as ag and waits for its reply.
func search(ctx context.Context, h *harness, ag *client.Agent, i int) (*client.Reply, error) {
	_, reply, err := ag.SendAndWait(ctx, client.Request{Capability: envelope.Read, Target: "kb.search",
		Sealed: fmt.Appendf(nil, `{"query":"q%d"}`, i)}, client.WaitOptions{TrustedGateways: []string{h.gwSigning}})
	return reply, err
}

// holdUntil makes each call wait until n run at once, or 3 s pass,
// round after round: the n-th call of a round lets its round go.
func (g *gatedSearch) holdUntil(n int) {
	g.gate = make(chan struct{})
	g.wait = func(ctx context.Context, running int) {
		g.mu.Lock()
		gate := g.gate
		if running == n {
			close(gate)
			g.gate = make(chan struct{})
		}
		g.mu.Unlock()
		select {
		case <-gate:
		case <-time.After(3 * time.Second):
		case <-ctx.Done():
		}
	}
}

// searchAll sends a search as each of agents at once, numbered from
// first, and checks that each is answered by the upstream.
func searchAll(ctx context.Context, t *testing.T, h *harness, agents []*client.Agent, first int) {
	t.Helper()
	var wg sync.WaitGroup
	for i, ag := range agents {
		wg.Go(func() {
			reply, err := search(ctx, h, ag, first+i)
			switch {
			case err != nil || reply == nil || !strings.Contains(string(reply.Payload), `"text":"found"`):
				t.Errorf("search %d: %v, %v; want the upstream's answer", first+i, reply, err)
			case strings.Contains(string(reply.Payload), `"isError":true`):
				t.Errorf("search %d answered %s; want the upstream's answer", first+i, reply.Payload)
			}
		})
	}
	wg.Wait()
}

// searchers makes n searchers.
func searchers(h *harness, n int) []*client.Agent {
	agents := make([]*client.Agent, n)
	for i := range agents {
		agents[i] = searcher(h)
	}
	return agents
}

// gatedBridge runs a bridge whose kb.search upstream, with concurrency
// n, holds each call until n run at once; ctx ends with the test.
func gatedBridge(t *testing.T, n int) (*harness, *gatedSearch, context.Context) {
	h := newHarness(t)
	g := &gatedSearch{}
	g.holdUntil(n)
	g.serve(t, h, n)
	h.startBridge()
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	t.Cleanup(cancel)
	return h, g, ctx
}

// TestBridgeCallsOneToolConcurrently: the bridge makes up to the tool's
// upstream concurrency calls of one tool at once. Each call waits until
// four run, so a bridge calling one at a time would never get there.
func TestBridgeCallsOneToolConcurrently(t *testing.T) {
	const n = 4
	h, g, ctx := gatedBridge(t, n)
	searchAll(ctx, t, h, searchers(h, n), 0)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.top != n || g.calls != n {
		t.Errorf("upstream ran %d calls, at most %d at once; want %d, all at once", g.calls, g.top, n)
	}
}

// TestBridgeKeepsUpstreamConnections: the bridge keeps a connection to
// a URL upstream for each call it runs at once, so a second round of
// concurrent calls dials none (with the HTTP client's default of two
// idle connections per host, every call past two would dial anew).
func TestBridgeKeepsUpstreamConnections(t *testing.T) {
	const n = 8
	h, g, ctx := gatedBridge(t, n)
	agents := searchers(h, n)
	dialed := make([]int, 2)
	for r := range dialed {
		searchAll(ctx, t, h, agents, r*n)
		g.mu.Lock()
		dialed[r] = g.conns
		g.mu.Unlock()
	}
	if dialed[0] < n || dialed[1] != dialed[0] {
		t.Errorf("upstream accepted %d connections in the first round and %d in all; want at least %d, then none more", dialed[0], dialed[1], n)
	}
}

// TestBridgeRedeliveryWaitsForItsCall: a delivery that comes again
// (AckWait passed) while the call it repeats still runs waits for that
// call's answer: the tool is called once.
func TestBridgeRedeliveryWaitsForItsCall(t *testing.T) {
	h := newHarness(t)
	g := &gatedSearch{}
	g.wait = func(ctx context.Context, _ int) {
		// Hold the call until the delivery came again.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			info, err := h.js.Consumer(ctx, client.StreamCapability, BridgeConsumerName("mcp-bridge", "kb.search"))
			if err == nil {
				if ci, err := info.Info(ctx); err == nil && ci.NumRedelivered > 0 {
					time.Sleep(200 * time.Millisecond) // the redelivery reaches the bridge
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Error("the delivery never came again")
	}
	g.serve(t, h, 4)
	// The consumer's in-progress word off, as when it is lost: the
	// delivery comes again while its call runs.
	h.startBridgeWith(func(c *client.ConsumerConfig) { c.AckWait, c.InProgress = time.Second, -1 })
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	reply, err := search(ctx, h, searcher(h), 0)
	if err != nil || reply == nil {
		t.Fatalf("search: %v, %v; want the upstream's answer", reply, err)
	}
	time.Sleep(500 * time.Millisecond) // the redelivery's own answer is sent
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.calls != 1 {
		t.Errorf("upstream called %d times for one request delivered twice; want once", g.calls)
	}
}
