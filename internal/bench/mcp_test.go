package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestRunMCP: the MCP comparison runs in the same run as a scenario and
// reports both paths, every call checked for its result.
func TestRunMCP(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Messages, cfg.Warmup, cfg.Agents, cfg.Mixes, cfg.Baselines = 50, 0, 2, []Mix{MixPlain}, false
	cfg.MCPCalls = 20
	cfg.ProgressEvery = -1
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	if rep.MCP == nil || rep.MCP.Calls != 20 || rep.MCP.Direct.Count != 20 || rep.MCP.Gateway.Count != 20 {
		t.Fatalf("MCP result = %+v; want 20 calls on both paths", rep.MCP)
	}
	if rep.MCP.Direct.Max <= 0 || rep.MCP.Gateway.Max <= 0 {
		t.Errorf("MCP latencies = %+v; want measured durations", rep.MCP)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "through agentgw") || !strings.Contains(table.String(), "direct to upstream") {
		t.Errorf("table lacks the MCP rows:\n%s", table.String())
	}
}
