package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMCPUsage: the mcp subcommands refuse a missing or invalid mapping
// file before connecting to anything.
func TestMCPUsage(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "mcp.yaml")
	if err := os.WriteFile(bad, []byte("tenant: Not A Tenant\ntools: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"mcp", "serve"},
		{"mcp", "serve", "--config", bad},
		{"mcp", "bridge", "--config", bad, "--credential", "x", "--curve-seed", "y", "--gateway-xkey", "z"},
	} {
		if code := dispatch(args); code != exitUsage {
			t.Errorf("agentgw %v = %d; want %d", args, code, exitUsage)
		}
	}
}
