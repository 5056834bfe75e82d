package main

import (
	"net/http"
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

// TestMCPServeTimeouts: the endpoint's HTTP server bounds how long a
// client may take to send a request and keep an idle connection, and
// sets no write timeout, which would cut a response waiting for an
// approval or streaming.
func TestMCPServeTimeouts(t *testing.T) {
	s := mcpHTTPServer(http.NotFoundHandler())
	if s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.IdleTimeout <= 0 {
		t.Errorf("mcp serve server: ReadHeaderTimeout %v, ReadTimeout %v, IdleTimeout %v; want each set", s.ReadHeaderTimeout, s.ReadTimeout, s.IdleTimeout)
	}
	if s.WriteTimeout != 0 {
		t.Errorf("mcp serve server: WriteTimeout %v; want none (responses wait up to approval_wait and may stream)", s.WriteTimeout)
	}
}
