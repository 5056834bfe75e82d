package demo

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/internal/devenv"
	"github.com/agentgw/agentgw/internal/mcp"
)

// mcpRoundTrip serves refunds.draft_refund from an MCP tool server (the
// official Go SDK, on loopback) through the MCP bridge, with the refunds
// tool's identity, and sends the agent's refund to it: the bridge calls
// the upstream tool with the verified arguments and the answer comes
// back through the gateway without the customer's email.
func (s *scene) mcpRoundTrip(ctx context.Context, emit func(Row), step *int) error {
	var mu sync.Mutex
	var calls []string
	up := sdk.NewServer(&sdk.Implementation{Name: "refunds-mcp", Version: "1"}, nil)
	type refundIn struct {
		OrderID     string `json:"order_id"`
		AmountCents int    `json:"amount_cents"`
	}
	type refundOut struct {
		RefundID      string `json:"refund_id"`
		Status        string `json:"status"`
		CustomerEmail string `json:"customer_email"`
	}
	sdk.AddTool(up, &sdk.Tool{Name: "draft_refund", Description: "Draft a refund"}, func(_ context.Context, req *sdk.CallToolRequest, in refundIn) (*sdk.CallToolResult, refundOut, error) {
		mu.Lock()
		calls = append(calls, string(req.Params.Arguments))
		mu.Unlock()
		return nil, refundOut{RefundID: "rf_mcp_" + in.OrderID, Status: "drafted", CustomerEmail: "jane.doe@example.com"}, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: mcp: %w", err)
	}
	srv := &http.Server{Handler: sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return up },
		&sdk.StreamableHTTPOptions{Stateless: true, JSONResponse: true}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	cfg := &mcp.Config{Tenant: devenv.Tenant, Tools: []mcp.Tool{{
		Name: "draft_refund", Target: "refunds.draft_refund", Scope: "refund:draft",
		Upstream: mcp.Upstream{URL: "http://" + ln.Addr().String() + "/"},
	}}}
	if err := cfg.Validate(); err != nil {
		return err
	}
	ccfg, err := s.refundsTool()
	if err != nil {
		return err
	}
	// The bridge reads each target with the consumer <Durable>~<target>:
	// with the tenant, the one the dev server pre-creates, bound.
	ccfg.Durable = devenv.Tenant
	bridge, err := mcp.NewBridge(s.toolJS, cfg, ccfg)
	if err != nil {
		return err
	}
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- bridge.Run(bctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	defer wcancel()
	_, reply, err := s.agent.SendAndWait(wctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund",
		Sealed: []byte(`{"order_id":"ord_77","amount_cents":7700}`)}, client.WaitOptions{TrustedGateways: []string{s.m.GatewayKey}})
	cancel()
	if berr := <-done; berr != nil && err == nil {
		err = berr
	}
	if err != nil {
		return fmt.Errorf("demo: mcp round trip: %w", err)
	}
	mu.Lock()
	n := len(calls)
	mu.Unlock()
	if n != 1 {
		return fmt.Errorf("demo: the upstream MCP server saw %d calls; want 1", n)
	}
	*step++
	emit(Row{Step: *step, Who: "mcp tool", What: "refund via the MCP bridge (upstream MCP server)", Decision: "reply",
		Policy: reply.Claims.PolicyIDs, Where: "agent's reply subject: " + string(reply.Payload)})
	return nil
}
