package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/approval"
)

// TestServeInterruptAnswersCallsInFlight: `agentgw mcp serve`
// interrupted while a tools/call waits for the gateway (held for
// approval) closes the endpoint and answers the call with -32012
// no_reply, saying the endpoint closed and the call may still run,
// before it exits, rather than cutting the connection, which a client
// would take as a call to make again. A task of the principal is held at
// the same time; the process exits 0.
func TestServeInterruptAnswersCallsInFlight(t *testing.T) {
	h := newEndpointHarness(t)
	held := h.watchHeld()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	must(t, ln.Close())
	srv := h.startServe(addr)
	url := "http://" + addr + "/mcp"
	tok := h.signed("sam", "billing")
	post := func(body string) (int, string, error) {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}

	_, resp, err := post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_payment","task":{"ttl":60000},"arguments":{"amount_cents":7101,"to":"acct-shutdown"}}}`)
	must(t, err)
	if !strings.Contains(resp, `"taskId"`) {
		t.Fatalf("task-augmented call: %s", resp)
	}
	if r := <-held; fmt.Sprint(r.Fields["amount_cents"]) != "7101" {
		t.Fatalf("held request %v; want the task's payment", r.Fields)
	}
	type answer struct {
		status int
		body   string
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		status, body, err := post(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"send_payment","arguments":{"amount_cents":7102,"to":"acct-shutdown"}}}`)
		answered <- answer{status, body, err}
	}()
	if r := <-held; fmt.Sprint(r.Fields["amount_cents"]) != "7102" {
		t.Fatalf("held request %v; want the synchronous payment", r.Fields)
	}

	must(t, srv.cmd.Process.Signal(os.Interrupt))
	a := <-answered
	if a.err != nil {
		t.Fatalf("the call in flight when mcp serve was interrupted: %v; want its JSON-RPC answer\n%s", a.err, srv.out.String())
	}
	var got struct {
		ID    int            `json:"id"`
		Error *jsonrpc.Error `json:"error"`
	}
	if a.status != http.StatusOK || json.Unmarshal([]byte(a.body), &got) != nil || got.ID != 2 || got.Error == nil || got.Error.Code != CodeNoReply {
		t.Fatalf("the call in flight when mcp serve was interrupted = %d %q; want id 2 with error %d", a.status, a.body, CodeNoReply)
	}
	var data DeniedData
	if json.Unmarshal(got.Error.Data, &data) != nil || data.Reason != "no_reply" || got.Error.Message != closedMessage {
		t.Errorf("its error = %+v; want no_reply, saying the endpoint closed and the call may still run", got.Error)
	}
	if err := <-srv.exited; err != nil {
		t.Errorf("agentgw mcp serve exited: %v; want 0\n%s", err, srv.out.String())
	}
}

// watchHeld runs an approver that reports every held request of the
// test tenant and leaves it unanswered (held until its deadline), until
// the test ends.
func (h *endpointHarness) watchHeld() <-chan approval.Request {
	h.t.Helper()
	a := newActor(h.t)
	cfg := client.ApproverConfig{AgentConfig: client.DefaultAgentConfig()}
	cfg.Credential, cfg.Key, cfg.Curve, cfg.GatewayXKey = h.credential(a, "approve:payments.send"), a.kp, a.curve, h.gwCurve
	cfg.TrustedGateways = []string{h.gwSigning}
	ap, err := client.NewApprover(h.nc, h.js, cfg)
	must(h.t, err)
	ctx, cancel := context.WithCancel(h.ctx)
	held := make(chan approval.Request, 16)
	done := make(chan error, 1)
	go func() {
		done <- ap.Watch(ctx, func(ctx context.Context, r approval.Request) error {
			select {
			case held <- r:
			case <-ctx.Done():
			}
			return nil
		})
	}()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("approver Watch: %v", err)
		}
	})
	return held
}

// serveProcess is an `agentgw mcp serve` process.
type serveProcess struct {
	cmd    *exec.Cmd
	exited chan error // its Wait's error, once it exits
	out    *syncBuffer
}

// startServe builds agentgw and runs `agentgw mcp serve` on addr with
// the harness's mapping (its resource, the harness's, names the tokens'
// audience) and a key directory of its own, until it exits or the test
// ends, and returns once it serves.
func (h *endpointHarness) startServe(addr string) *serveProcess {
	t := h.t
	t.Helper()
	bin := filepath.Join(t.TempDir(), "agentgw")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/agentgw/agentgw/cmd/agentgw").CombinedOutput(); err != nil {
		t.Fatalf("go build agentgw: %v\n%s", err, out)
	}
	cfg := *h.cfg
	cfg.Endpoint.KeyDir = t.TempDir()
	data, err := yaml.Marshal(&cfg)
	must(t, err)
	cfgPath := filepath.Join(t.TempDir(), "mcp.yaml")
	must(t, os.WriteFile(cfgPath, data, 0o600))
	p := &serveProcess{exited: make(chan error, 1), out: &syncBuffer{}}
	p.cmd = exec.Command(bin, "mcp", "serve", "--config", cfgPath, "--listen", addr, "--server", h.natsURL)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	must(t, p.cmd.Start())
	var waited error
	done := make(chan struct{})
	go func() {
		waited = p.cmd.Wait()
		close(done)
		p.exited <- waited
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
			t.Error("agentgw mcp serve did not stop on interrupt")
		}
	})
	meta := "http://" + addr + "/.well-known/oauth-protected-resource/mcp"
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(meta); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-done:
			t.Fatalf("agentgw mcp serve exited: %v\n%s", waited, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agentgw mcp serve not ready\n%s", p.out.String())
		}
	}
}
