package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentgw/agentgw/client"
)

// scriptedSearch serves kb.search for h: a query "held" signals entered
// and waits for release, "hang" waits for release too while hangs is
// set, and a request naming "break" is refused at the HTTP level (500),
// a failure that is not the tool's answer; anything else is found at
// once.
func scriptedSearch(t *testing.T, h *harness, timeout time.Duration, hangs *atomic.Bool) (entered chan string, release chan struct{}) {
	t.Helper()
	entered, release = make(chan string, 8), make(chan struct{})
	s := sdk.NewServer(&sdk.Implementation{Name: "scripted-upstream", Version: "1"}, nil)
	s.AddTool(&sdk.Tool{Name: "search", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		var in struct{ Query string }
		_ = json.Unmarshal(req.Params.Arguments, &in)
		select {
		case entered <- in.Query:
		default: // nobody looks any more
		}
		switch in.Query {
		case "held":
			select {
			case <-release:
			case <-ctx.Done():
			}
		case "hang":
			if hangs.Load() {
				// A cancelled call does not end the upstream's request
				// (the MCP client sends a cancellation): the test's
				// end does.
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
		}
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "found " + in.Query}}}, nil
	})
	mcpHandler := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, &sdk.StreamableHTTPOptions{Stateless: true, JSONResponse: true})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"query":"break"`)) {
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		mcpHandler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	for i := range h.cfg.Tools {
		if h.cfg.Tools[i].Target == "kb.search" {
			h.cfg.Tools[i].Upstream.URL, h.cfg.Tools[i].Upstream.Timeout = srv.URL, timeout
		}
	}
	return entered, release
}

// searchFor sends a search for query as a new searcher and returns its
// reply's payload on the channel (or the error's text).
func searchFor(ctx context.Context, h *harness, query string) <-chan string {
	ag := searcher(h)
	out := make(chan string, 1)
	go func() {
		_, reply, err := ag.SendAndWait(ctx, client.Request{Capability: "read", Target: "kb.search",
			Sealed: []byte(`{"query":"` + query + `"}`)}, client.WaitOptions{TrustedGateways: []string{h.gwSigning}})
		if err != nil {
			out <- err.Error()
			return
		}
		out <- string(reply.Payload)
	}()
	return out
}

// TestBridgeBrokenCallHoldsNoOtherCall: a call that fails in a way
// that may have broken the upstream connection makes the next call
// connect again, without waiting for the calls still running on the
// old connection: one held call does not hold the tool's other calls.
func TestBridgeBrokenCallHoldsNoOtherCall(t *testing.T) {
	h := newHarness(t)
	entered, release := scriptedSearch(t, h, 20*time.Second, &atomic.Bool{})
	h.startBridge()
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	held := searchFor(ctx, h, "held")
	if q := <-entered; q != "held" {
		t.Fatalf("upstream entered %q first; want the held call", q)
	}
	if got := <-searchFor(ctx, h, "break"); !strings.Contains(got, "upstream tool unavailable") {
		t.Fatalf("broken call answered %s; want the bridge's error answer", got)
	}
	fast := searchFor(ctx, h, "fast")
	select {
	case got := <-fast:
		if !strings.Contains(got, "found fast") {
			t.Errorf("call after the broken one answered %s; want the upstream's answer", got)
		}
	case <-time.After(5 * time.Second):
		t.Error("the call after the broken one waited for the held call")
	}
	close(release)
	if got := <-held; !strings.Contains(got, "found held") {
		t.Errorf("held call answered %s; want the upstream's answer", got)
	}
}

// TestBridgeStoppedCallIsNotAnswered: a call cut short because the
// bridge stops is not the tool's answer. The delivery is handed back,
// and the bridge, run again, calls the tool for it rather than sending
// an error it remembered.
func TestBridgeStoppedCallIsNotAnswered(t *testing.T) {
	h := newHarness(t)
	var hangs atomic.Bool
	hangs.Store(true)
	entered, _ := scriptedSearch(t, h, 20*time.Second, &hangs)
	b, stop := h.startBridgeWith(nil)
	// The handed-back delivery comes again after its redelivery delay,
	// which a loaded machine (CI under -race) stretches: the reply is
	// waited for generously; this bounds a hang, it times nothing.
	ctx, cancel := context.WithTimeout(h.ctx, 90*time.Second)
	defer cancel()
	reply := searchFor(ctx, h, "hang")
	if q := <-entered; q != "hang" {
		t.Fatalf("upstream entered %q; want the hanging call", q)
	}
	stop()
	// The same bridge again, its upstream now answering.
	hangs.Store(false)
	again := make(chan error, 1)
	rctx, rcancel := context.WithCancel(h.ctx)
	go func() { again <- b.Run(rctx) }()
	defer func() {
		rcancel()
		if err := <-again; err != nil {
			t.Errorf("bridge Run again: %v", err)
		}
	}()
	if got := <-reply; !strings.Contains(got, "found hang") {
		t.Errorf("reply after the bridge ran again = %s; want the tool's answer, not a remembered error", got)
	}
}

// TestUpstreamTimeoutHoldsNoOtherCall: a call that runs out of time
// while another call of the same upstream still runs leaves the session
// alone, and a call made meanwhile is answered at once: closing the
// session would wait for the running call, and calls would queue behind
// the close.
func TestUpstreamTimeoutHoldsNoOtherCall(t *testing.T) {
	end := make(chan struct{})
	s := sdk.NewServer(&sdk.Implementation{Name: "sleepy-upstream", Version: "1"}, nil)
	s.AddTool(&sdk.Tool{Name: "sleep", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(ctx context.Context, r *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		var in struct{ MS int }
		_ = json.Unmarshal(r.Params.Arguments, &in)
		select {
		case <-time.After(time.Duration(in.MS) * time.Millisecond):
		case <-ctx.Done():
		case <-end: // a timed-out call's request is not ended by its client
		}
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "slept"}}}, nil
	})
	srv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, &sdk.StreamableHTTPOptions{Stateless: true, JSONResponse: true}))
	defer srv.Close()
	defer close(end)
	up, err := newUpstream(Upstream{URL: srv.URL, Concurrency: 4})
	must(t, err)
	defer up.close()
	call := func(timeout time.Duration, ms string) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := up.call(ctx, "sleep", json.RawMessage(`{"ms":`+ms+`}`), nil)
		return err
	}
	must(t, call(5*time.Second, "1")) // connected
	long, short := make(chan error, 1), make(chan error, 1)
	go func() { long <- call(10*time.Second, "3000") }()
	go func() { short <- call(300*time.Millisecond, "60000") }()
	time.Sleep(600 * time.Millisecond) // the short call has run out of time
	t0 := time.Now()
	if err := call(2*time.Second, "1"); err != nil {
		t.Errorf("call after another's timeout = %v after %v; want it answered while the long call runs", err, time.Since(t0))
	}
	if err := <-short; err == nil {
		t.Error("a call past its timeout succeeded")
	}
	if err := <-long; err != nil {
		t.Errorf("long call = %v", err)
	}
}
