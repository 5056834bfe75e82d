package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestFloodScenario runs the flood scenario small and checks that the
// report is consistent: every victim message measured in both phases,
// every flood message denied, the ratio from the figures. It never
// asserts on speed.
func TestFloodScenario(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Messages = 400
	cfg.Agents = 4
	cfg.Flood = true
	cfg.FloodVictimRate = 500
	cfg.ProgressEvery = -1
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	f := rep.Flood
	if f == nil {
		t.Fatal("no flood result")
	}
	if len(rep.Scenarios) != 0 || rep.MCP != nil {
		t.Errorf("flood ran %d mix scenarios and MCP %v; want the flood alone", len(rep.Scenarios), rep.MCP != nil)
	}
	if f.Flooded.Count == 0 || f.Quiet.Count != max(f.Flooded.Count, 50) {
		t.Errorf("victim measured %d times flooded, %d alone; want some, and as many alone (at least 50)", f.Flooded.Count, f.Quiet.Count)
	}
	if f.FloodMessages != cfg.Messages || f.FloodPerSec <= 0 {
		t.Errorf("flood of %d at %v msgs/s; want %d decided", f.FloodMessages, f.FloodPerSec, cfg.Messages)
	}
	if want := float64(f.Flooded.P99) / float64(f.Quiet.P99); f.P99Ratio != want {
		t.Errorf("P99Ratio = %v; want %v", f.P99Ratio, want)
	}
	if f.FloodAheadMax < f.FloodAheadP99 || f.FloodAheadMax > cfg.Messages {
		t.Errorf("flood ahead max %d, p99 %d; want p99 ≤ max ≤ %d", f.FloodAheadMax, f.FloodAheadP99, cfg.Messages)
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "victim p99 flooded/alone") || strings.Contains(out.String(), "allow/deny/held") {
		t.Errorf("table:\n%s\nwant the flood table alone", out.String())
	}
}
