package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/approval"
)

// tsOutcome is one call's outcome as the TypeScript client reports it.
type tsOutcome struct {
	OK         bool            `json:"ok"`
	Structured json.RawMessage `json:"structured"`
	Code       int             `json:"code"`
	Data       DeniedData      `json:"data"`
	Message    string          `json:"message"`
}

// TestTypeScriptClient: the official MCP TypeScript SDK client (npm
// @modelcontextprotocol/sdk, which speaks the 2025-11-25 revision)
// connects to `agentgw mcp serve` (the built binary) as two principals with tokens from a real
// OpenID provider, and sees: tools listed per principal; a call allowed
// on its arguments; a call denied on its arguments by Cedar content
// policy; a call outside the principal's scopes denied; a call held for
// approval, granted and completed; its captured HTTP request replayed
// and refused; a token for another audience refused; a held call made
// as a task (the tasks utility) completing after the grant. The upstream
// server sees only the allowed and the granted call, and no token,
// credential or sealed argument is in the gateway's log, audit events
// or denied records. It needs node and `npm ci` in testdata/tsclient
// (.ci/run does both); without them it fails.
func TestTypeScriptClient(t *testing.T) {
	dir := filepath.Join("testdata", "tsclient")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: the TypeScript SDK end-to-end test needs it")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk")); err != nil {
		t.Fatalf("run `npm ci` in %s first (.ci/run does): %v", dir, err)
	}
	h := newEndpointHarness(t, true)
	h.approve(func(r approval.Request) string {
		if r.Target == "payments.send" {
			return approval.Grant
		}
		return approval.Deny
	})
	ctx, cancel := context.WithTimeout(h.ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"MCP_URL="+h.resource,
		"ALICE_TOKEN="+h.token("alice-ide", "s3cret-alice"),
		"BOB_TOKEN="+h.token("bob-ide", "s3cret-bob"),
		"OTHER_TOKEN="+h.token("alice-other-api", "s3cret-other"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node client.mjs: %v\n%s", err, stderr.String())
	}
	var out struct {
		ProtocolVersion   string    `json:"protocolVersion"`
		AliceTools        []string  `json:"aliceTools"`
		BobTools          []string  `json:"bobTools"`
		Allowed           tsOutcome `json:"allowed"`
		DeniedOnArguments tsOutcome `json:"deniedOnArguments"`
		OutsideScopes     tsOutcome `json:"outsideScopes"`
		HeldGranted       tsOutcome `json:"heldGranted"`
		Replay            struct {
			Status int    `json:"status"`
			Body   string `json:"body"`
		} `json:"replay"`
		OtherAudience tsOutcome `json:"otherAudience"`
		Task          struct {
			Types      []string        `json:"types"`
			TaskID     string          `json:"taskId"`
			Structured json.RawMessage `json:"structured"`
			Error      string          `json:"error"`
			Final      string          `json:"final"`
			BobSees    bool            `json:"bobSees"`
		} `json:"task"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("client output %q: %v", stdout.String(), err)
	}
	t.Logf("TypeScript client negotiated protocol %s", out.ProtocolVersion)
	if want := []string{"draft_refund", "search", "send_payment"}; !slices.Equal(out.AliceTools, want) {
		t.Errorf("alice's tools = %v; want %v", out.AliceTools, want)
	}
	if want := []string{"search"}; !slices.Equal(out.BobTools, want) {
		t.Errorf("bob's tools = %v; want %v", out.BobTools, want)
	}
	if !out.Allowed.OK || string(out.Allowed.Structured) != `{"refund_id":"r-ts-1","status":"drafted"}` {
		t.Errorf("allowed call = %+v; want the redacted result", out.Allowed)
	}
	if d := out.DeniedOnArguments; d.OK || d.Code != CodeDenied || d.Data.Reason != "content_denied" {
		t.Errorf("over-ceiling call = %+v; want JSON-RPC error %d content_denied by refund-ceiling", d, CodeDenied)
	}
	if d := out.OutsideScopes; d.OK || d.Code != CodeDenied || d.Data.Reason != "missing_scope" {
		t.Errorf("bob's draft_refund = %+v; want JSON-RPC error %d missing_scope", d, CodeDenied)
	}
	if !out.HeldGranted.OK || string(out.HeldGranted.Structured) != `{"payment_id":"p-777"}` {
		t.Errorf("held call = %+v; want the result after the grant", out.HeldGranted)
	}
	if tk := out.Task; tk.TaskID == "" || string(tk.Structured) != `{"payment_id":"p-778"}` || tk.Final != TaskCompleted || tk.BobSees {
		t.Errorf("held call as a task = %+v; want a task, completed with the result after the grant, invisible to bob", tk)
	}
	if out.Replay.Status != 400 || !strings.Contains(out.Replay.Body, `"reason":"replay"`) {
		t.Errorf("replayed request = %d %s; want 400 with reason replay", out.Replay.Status, out.Replay.Body)
	}
	if out.OtherAudience.OK || out.OtherAudience.Code != 401 {
		t.Errorf("token for another audience: %+v; want a 401 refusal", out.OtherAudience)
	}
	want := []string{
		`draft_refund {"order_id":"ts-1","amount_cents":900}`,
		`send_payment {"amount_cents":777,"to":"ts-acct"}`,
		`send_payment {"amount_cents":778,"to":"ts-acct-2"}`,
	}
	if got := h.upstream.calls(); !slices.Equal(got, want) {
		t.Errorf("upstream calls = %q; want only the allowed and the granted call", got)
	}
	// The principals' seeds, from the endpoint's key_dir.
	secrets := []string{"ts-big", "ts-acct"}
	files, err := os.ReadDir(h.cfg.Endpoint.KeyDir)
	must(t, err)
	if len(files) != 2 {
		t.Errorf("key_dir holds %d principals; want alice and bob", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(h.cfg.Endpoint.KeyDir, f.Name()))
		must(t, err)
		secrets = append(secrets, strings.Fields(string(data))...)
	}
	h.scanTexts(map[string]string{"agentgw mcp serve output": h.cliOut.String()}, secrets...)
}
