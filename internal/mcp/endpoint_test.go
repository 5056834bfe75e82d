package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentgw/agentgw/gateway/approval"
)

func toolNames(t *testing.T, s *sdk.ClientSession) []string {
	t.Helper()
	res, err := s.ListTools(context.Background(), nil)
	must(t, err)
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	return names
}

func callErr(err error) *jsonrpc.Error {
	if e, ok := errors.AsType[*jsonrpc.Error](err); ok {
		return e
	}
	return nil
}

func deniedReason(t *testing.T, err error) string { return denied(t, err).Reason }

func denied(t *testing.T, err error) DeniedData {
	t.Helper()
	e := callErr(err)
	if e == nil || e.Code != CodeDenied {
		t.Fatalf("call error = %v; want a JSON-RPC error %d", err, CodeDenied)
	}
	var d DeniedData
	must(t, json.Unmarshal(e.Data, &d))
	return d
}

// TestEndpoint drives the MCP endpoint with the official Go SDK client,
// against a real gateway, token exchange, OpenID provider, bridge and
// upstream tool server.
func TestEndpoint(t *testing.T) {
	h := newEndpointHarness(t)
	aliceTok := h.token("alice-ide", "s3cret-alice")
	bobTok := h.token("bob-ide", "s3cret-bob")
	alice, bob := h.connect(aliceTok), h.connect(bobTok)
	ctx, cancel := context.WithTimeout(h.ctx, 60*time.Second)
	defer cancel()

	t.Run("list/per-principal", func(t *testing.T) {
		if got, want := toolNames(t, alice), []string{"draft_refund", "search", "send_payment"}; !slices.Equal(got, want) {
			t.Errorf("alice's tools = %v; want %v", got, want)
		}
		if got, want := toolNames(t, bob), []string{"search"}; !slices.Equal(got, want) {
			t.Errorf("bob's tools = %v; want %v", got, want)
		}
	})

	t.Run("call/allowed", func(t *testing.T) {
		res, err := alice.CallTool(ctx, &sdk.CallToolParams{Name: "draft_refund", Arguments: map[string]any{"order_id": "o-7", "amount_cents": 1200}})
		must(t, err)
		got, _ := json.Marshal(res.StructuredContent)
		if string(got) != `{"refund_id":"r-o-7","status":"drafted"}` || res.IsError {
			t.Errorf("draft_refund result = %s; want the redacted verified reply", got)
		}
	})

	t.Run("call/denied-on-arguments", func(t *testing.T) {
		_, err := alice.CallTool(ctx, &sdk.CallToolParams{Name: "draft_refund", Arguments: map[string]any{"order_id": "o-big", "amount_cents": 250000}})
		if d := denied(t, err); d.Reason != "content_denied" {
			t.Errorf("over-ceiling refund denied with %+v; want content_denied (refund-ceiling)", d)
		}
	})

	t.Run("call/outside-scopes", func(t *testing.T) {
		_, err := bob.CallTool(ctx, &sdk.CallToolParams{Name: "draft_refund", Arguments: map[string]any{"order_id": "o-b", "amount_cents": 10}})
		if r := deniedReason(t, err); r != "missing_scope" {
			t.Errorf("bob's draft_refund denied with %q; want missing_scope", r)
		}
	})

	t.Run("call/held-granted", func(t *testing.T) {
		h.approve(func(r approval.Request) string {
			if r.Target == "payments.send" && fmt.Sprint(r.Fields["amount_cents"]) != "6666" {
				return approval.Grant
			}
			return approval.Deny
		})
		res, err := alice.CallTool(ctx, &sdk.CallToolParams{Name: "send_payment", Arguments: map[string]any{"amount_cents": 4200, "to": "acct-9"}})
		must(t, err)
		got, _ := json.Marshal(res.StructuredContent)
		if string(got) != `{"payment_id":"p-4200"}` {
			t.Errorf("send_payment after approval = %s; want the tool's result", got)
		}
	})

	t.Run("call/held-denied", func(t *testing.T) {
		_, err := alice.CallTool(ctx, &sdk.CallToolParams{Name: "send_payment", Arguments: map[string]any{"amount_cents": 6666, "to": "acct-x"}})
		if d := denied(t, err); d.Reason != "approval_denied" {
			t.Errorf("payment the approver denies = %+v; want approval_denied", d)
		}
	})

	t.Run("upstream/only-verified", func(t *testing.T) {
		want := []string{
			`draft_refund {"amount_cents":1200,"order_id":"o-7"}`,
			`send_payment {"amount_cents":4200,"to":"acct-9"}`,
		}
		if got := h.upstream.calls(); !slices.Equal(got, want) {
			t.Errorf("upstream calls = %q; want only the allowed and the granted call", got)
		}
		// No token passthrough: the upstream never sees a principal's.
		for _, a := range h.upstream.authorizations() {
			if strings.Contains(a, aliceTok) || strings.Contains(a, bobTok) {
				t.Error("the upstream server received a principal's bearer token")
			}
		}
		if len(h.upstream.authorizations()) == 0 {
			t.Error("the upstream server recorded no requests")
		}
	})

	post := func(tok, origin string, body string, hdr map[string]string) (int, []byte) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.resource, strings.NewReader(body))
		must(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("MCP-Protocol-Version", "2026-07-28")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	const meta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"curl","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}`
	searchCall := `{"jsonrpc":"2.0","id":9001,"method":"tools/call","params":{"name":"search","arguments":{"query":"refund"},` + meta + `}}`
	callHeaders := map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "search"}

	t.Run("replay/refused", func(t *testing.T) {
		code, body := post(aliceTok, "", searchCall, callHeaders)
		if code != http.StatusOK || !bytes.Contains(body, []byte("3 articles about refund")) {
			t.Fatalf("first raw call = %d %s; want the result", code, body)
		}
		code, body = post(aliceTok, "", searchCall, callHeaders)
		if code != http.StatusBadRequest || !bytes.Contains(body, []byte(`"reason":"replay"`)) {
			t.Errorf("replayed raw call = %d %s; want 400 with reason replay", code, body)
		}
	})

	t.Run("task/denied", func(t *testing.T) {
		body := `{"jsonrpc":"2.0","id":9100,"method":"tools/call","params":{"name":"draft_refund","task":{"ttl":60000},"arguments":{"order_id":"o-task","amount_cents":999999},` + meta + `}}`
		code, resp := post(aliceTok, "", body, map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "draft_refund"})
		var created struct {
			Result struct {
				Task Task `json:"task"`
			} `json:"result"`
		}
		if code != http.StatusOK || json.Unmarshal(resp, &created) != nil || created.Result.Task.TaskID == "" || created.Result.Task.Status != TaskWorking {
			t.Fatalf("task-augmented call = %d %s; want a working task", code, resp)
		}
		id := created.Result.Task.TaskID
		taskReq := func(rpcID int, method string) string {
			return `{"jsonrpc":"2.0","id":` + strconv.Itoa(rpcID) + `,"method":"` + method + `","params":{"taskId":"` + id + `",` + meta + `}}`
		}
		code, resp = post(aliceTok, "", taskReq(9101, "tasks/result"), map[string]string{"Mcp-Method": "tasks/result", "Mcp-Name": id})
		if code != http.StatusOK || !bytes.Contains(resp, []byte(`"code":-32010`)) || !bytes.Contains(resp, []byte(`"reason":"content_denied"`)) {
			t.Errorf("tasks/result of a denied call = %d %s; want the denial", code, resp)
		}
		code, resp = post(aliceTok, "", taskReq(9102, "tasks/get"), map[string]string{"Mcp-Method": "tasks/get", "Mcp-Name": id})
		if code != http.StatusOK || !bytes.Contains(resp, []byte(`"status":"failed"`)) {
			t.Errorf("tasks/get of a denied call = %d %s; want status failed", code, resp)
		}
		code, resp = post(bobTok, "", taskReq(9103, "tasks/get"), map[string]string{"Mcp-Method": "tasks/get", "Mcp-Name": id})
		if code != http.StatusOK || !bytes.Contains(resp, []byte(`"unknown task"`)) {
			t.Errorf("bob's tasks/get of alice's task = %d %s; want unknown task", code, resp)
		}
	})

	t.Run("replay/batch-refused", func(t *testing.T) {
		// A batch would carry a replayed tools/call past the id check.
		batch := `[{"jsonrpc":"2.0","id":9001,"method":"tools/call","params":{"name":"search","arguments":{"query":"refund"}}}]`
		code, body := post(aliceTok, "", batch, map[string]string{"MCP-Protocol-Version": "2025-03-26"})
		if code != http.StatusBadRequest || bytes.Contains(body, []byte("3 articles")) {
			t.Errorf("batch holding a replayed call = %d %s; want 400 and no result", code, body)
		}
	})

	t.Run("task/extension-held-granted", func(t *testing.T) {
		// A client of 2026-07-28 declaring the tasks extension: the call
		// held for approval comes back as a task (the approver started
		// in call/held-granted grants payments); polled, it completes.
		metaExt := strings.Replace(meta, `"io.modelcontextprotocol/clientCapabilities":{}`,
			`"io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}}`, 1)
		body := `{"jsonrpc":"2.0","id":9200,"method":"tools/call","params":{"name":"send_payment","arguments":{"amount_cents":5100,"to":"acct-ext"},` + metaExt + `}}`
		code, resp := post(aliceTok, "", body, map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "send_payment"})
		var created struct {
			Result map[string]any `json:"result"`
		}
		if code != http.StatusOK || json.Unmarshal(resp, &created) != nil || created.Result["resultType"] != "task" {
			t.Fatalf("held call with the tasks extension = %d %s; want a CreateTaskResult", code, resp)
		}
		id, _ := created.Result["taskId"].(string)
		get := func(rpcID int, m string) (int, []byte) {
			b := `{"jsonrpc":"2.0","id":` + strconv.Itoa(rpcID) + `,"method":"tasks/get","params":{"taskId":"` + id + `",` + m + `}}`
			return post(aliceTok, "", b, map[string]string{"Mcp-Method": "tasks/get", "Mcp-Name": id})
		}
		if code, resp := get(9201, meta); !bytes.Contains(resp, []byte(`"code":-32021`)) {
			t.Errorf("tasks/get without the extension = %d %s; want -32021", code, resp)
		}
		var final map[string]any
		for i := range 100 {
			_, resp := get(9210+i, metaExt)
			var got struct {
				Result map[string]any `json:"result"`
			}
			must(t, json.Unmarshal(resp, &got))
			if got.Result["status"] != TaskWorking {
				final = got.Result
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		res, _ := json.Marshal(final["result"])
		if final["status"] != TaskCompleted || !bytes.Contains(res, []byte(`"structuredContent":{"payment_id":"p-5100"}`)) {
			t.Errorf("task after the grant = %v; want completed with the payment result", final)
		}
	})

	t.Run("task/extension-denied-at-once", func(t *testing.T) {
		metaExt := strings.Replace(meta, `"io.modelcontextprotocol/clientCapabilities":{}`,
			`"io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}}`, 1)
		body := `{"jsonrpc":"2.0","id":9300,"method":"tools/call","params":{"name":"draft_refund","arguments":{"order_id":"o-ext","amount_cents":999999},` + metaExt + `}}`
		code, resp := post(aliceTok, "", body, map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "draft_refund"})
		if code != http.StatusOK || !bytes.Contains(resp, []byte(`"code":-32010`)) || bytes.Contains(resp, []byte(`"resultType":"task"`)) {
			t.Errorf("denied call with the tasks extension = %d %s; want the denial itself, not a task", code, resp)
		}
	})

	t.Run("headers/must-match-body", func(t *testing.T) {
		body := strings.Replace(searchCall, "9001", "9002", 1)
		code, _ := post(aliceTok, "", body, map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "draft_refund"})
		if code != http.StatusBadRequest {
			t.Errorf("Mcp-Name naming another tool: status %d; want 400", code)
		}
	})

	t.Run("origin/refused", func(t *testing.T) {
		body := strings.Replace(searchCall, "9001", "9003", 1)
		if code, _ := post(aliceTok, "https://evil.example", body, callHeaders); code != http.StatusForbidden {
			t.Errorf("foreign Origin: status %d; want 403", code)
		}
	})

	t.Run("token/other-audience", func(t *testing.T) {
		other := h.token("alice-other-api", "s3cret-other")
		body := strings.Replace(searchCall, "9001", "9004", 1)
		if code, _ := post(other, "", body, callHeaders); code != http.StatusUnauthorized {
			t.Errorf("token for another audience: status %d; want 401", code)
		}
		if code, _ := post("", "", body, callHeaders); code != http.StatusUnauthorized {
			t.Errorf("no token: status %d; want 401", code)
		}
	})

	t.Run("metadata", func(t *testing.T) {
		resp, err := http.Get(strings.Replace(h.resource, "/mcp", "/.well-known/oauth-protected-resource/mcp", 1))
		must(t, err)
		defer resp.Body.Close()
		var m struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
		}
		must(t, json.NewDecoder(resp.Body).Decode(&m))
		if m.Resource != h.resource || !slices.Equal(m.AuthorizationServers, []string{h.idp.Issuer}) {
			t.Errorf("protected resource metadata = %+v; want this resource and the IdP", m)
		}
	})

	secrets := []string{`"order_id":"o-big"`, "o-big", "acct-9"}
	h.endpoint.mu.Lock()
	for _, p := range h.endpoint.principals {
		seed, _ := p.key.Seed()
		secrets = append(secrets, string(seed))
	}
	for _, s := range h.endpoint.sessions {
		secrets = append(secrets, s.cred.Reveal())
	}
	h.endpoint.mu.Unlock()
	if len(h.endpoint.principals) != 2 || len(secrets) < 3+2*2 {
		t.Errorf("%d principals, %d secrets; want alice and bob, each with a credential", len(h.endpoint.principals), len(secrets)-3)
	}
	h.scanSecrets(secrets...)
}
