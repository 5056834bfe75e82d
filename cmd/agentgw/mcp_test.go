package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/subjects/reason"
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

// TestMCPServeHeaderLimit: headers arrive before anyone is
// authenticated, so the endpoint's server refuses ~1 MB of them (431),
// where net/http's default would read and hold them, and takes a
// request with a bearer token of the largest size the endpoint reads.
func TestMCPServeHeaderLimit(t *testing.T) {
	srv := mcpHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no bearer token", http.StatusUnauthorized)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	send := func(headers string) int {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"+headers+"Content-Length: 0\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	var pad strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&pad, "X-Pad-%d: %s\r\n", i, strings.Repeat("a", 1000))
	}
	if code := send(pad.String()); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("~1 MB of unauthenticated headers: status %d; want 431", code)
	}
	if code := send("Authorization: Bearer " + strings.Repeat("a", 16<<10) + "\r\n"); code != http.StatusUnauthorized {
		t.Errorf("a 16 KiB bearer token: status %d; want it read (401 from the handler)", code)
	}
}

// TestMCPBridgeHandsBackForWantOfKey: the bridge's consumers hand back
// what they refuse for want of a key, and say so, so that a bridge
// started with a rotated-out --gateway-key does not terminate tool calls
// the bridges with the gateway's key would make
// (internal/mcp.TestBridgeHandsBackWhatItLacksTheKeyFor runs it); any
// other refusal is printed without the hand-back.
func TestMCPBridgeHandsBackForWantOfKey(t *testing.T) {
	var stderr strings.Builder
	ccfg := bridgeConsumerConfig(nil, []string{"NGW"}, nil, "tenant_a", true, &stderr)
	if !ccfg.HandBackUnknownKeys || ccfg.Durable != "tenant_a" || !ccfg.Bind {
		t.Fatalf("bridge consumer: HandBackUnknownKeys %v, Durable %q, Bind %v; want true, tenant_a, true", ccfg.HandBackUnknownKeys, ccfg.Durable, ccfg.Bind)
	}
	const subj = "agentgw.cap.tenant_a.refunds.draft_refund"
	ccfg.OnReject(subj, reason.Mark(reason.Deny(reason.DecisionInvalid, "untrusted gateway"), client.ErrUnknownKey))
	ccfg.OnReject(subj, reason.Deny(reason.DecisionInvalid, "bad signature"))
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "decision_token_invalid, for want of a key: handed back") || strings.Contains(lines[1], "handed back") || !strings.Contains(lines[1], "decision_token_invalid") {
		t.Errorf("bridge rejections printed:\n%s\nwant the first handed back for want of a key, the second not", stderr.String())
	}
}
