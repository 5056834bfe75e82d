package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestRunMCP: the MCP comparison runs in the same run as a scenario and
// reports both paths, every call checked for its result, with the calls
// in flight it was asked for (the last round short when they do not
// divide the calls).
func TestRunMCP(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Messages, cfg.Warmup, cfg.Agents, cfg.Mixes, cfg.Baselines = 50, 0, 2, []Mix{MixPlain}, false
	cfg.MCPCalls, cfg.MCPConcurrency = 22, 4
	cfg.ProgressEvery = -1
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	if rep.MCP == nil || rep.MCP.Calls != 22 || rep.MCP.Concurrency != 4 || rep.MCP.Direct.Count != 22 || rep.MCP.Gateway.Count != 22 {
		t.Fatalf("MCP result = %+v; want 22 calls on both paths, 4 in flight", rep.MCP)
	}
	if rep.MCP.Direct.Max <= 0 || rep.MCP.Gateway.Max <= 0 || rep.MCP.DirectRate <= 0 || rep.MCP.GatewayRate <= 0 || rep.MCP.GatewayCPUus <= 0 {
		t.Errorf("MCP latencies = %+v; want measured durations, rates and CPU", rep.MCP)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "through agentgw") || !strings.Contains(table.String(), "direct to upstream") || !strings.Contains(table.String(), "4 in flight") {
		t.Errorf("table lacks the MCP rows:\n%s", table.String())
	}
}
