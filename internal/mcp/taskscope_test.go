package mcp

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestTaskScopeFollowsCatalogReload: a task is seen only with a token
// whose credential holds the scope its tool's target asks in the
// catalog in force. After a reload narrows kb.search's scope, a token
// of the same principal that lacks the new scope is refused the call
// (missing_scope) and neither reads nor lists the task a broader token
// made.
func TestTaskScopeFollowsCatalogReload(t *testing.T) {
	h := newEndpointHarnessWith(t, endpointOptions{policy: testPolicy, gate: true})
	data, err := os.ReadFile(h.catalog)
	must(t, err)
	narrowed := strings.Replace(string(data), "name: kb.search\n    kind: read\n    scope: kb:read", "name: kb.search\n    kind: read\n    scope: refund:draft", 1)
	if narrowed == string(data) {
		t.Fatal("catalog edit did not apply")
	}
	must(t, os.WriteFile(h.catalog, []byte(narrowed), 0o600))
	deadline := time.Now().Add(15 * time.Second)
	for {
		if tg, ok := h.endpoint.gate.catalog.Load().Lookup("kb.search"); ok && tg.Scope == "refund:draft" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the endpoint did not reload the catalog")
		}
		time.Sleep(50 * time.Millisecond)
	}
	must(t, h.gw.Reload()) // the gateway's catalog too, now rather than at its next poll

	broad, narrow := h.signed("zed", "billing"), h.signed("zed", "support") // narrow: kb:read only
	// The gateway now requires refund:draft for kb.search: the narrow token is denied the call.
	_, resp := h.postRPC(narrow, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"secret-q"}}}`)
	if !strings.Contains(resp, "missing_scope") {
		t.Fatalf("narrow token's own search call: %s; want missing_scope (catalog not reloaded?)", resp)
	}
	task, resp := h.createTask(broad, 2, "search", `{"query":"payroll"}`, `{"ttl":60000}`)
	if task.TaskID == "" {
		t.Fatalf("task-augmented call: %s", resp)
	}
	id := task.TaskID
	if _, resp = h.postRPC(broad, `{"jsonrpc":"2.0","id":3,"method":"tasks/result","params":{"taskId":"`+id+`"}}`); !strings.Contains(resp, "payroll") {
		t.Fatalf("the broad token's own task result: %s", resp)
	}
	_, resp = h.postRPC(narrow, `{"jsonrpc":"2.0","id":4,"method":"tasks/result","params":{"taskId":"`+id+`"}}`)
	if !strings.Contains(resp, "unknown task") {
		t.Errorf("a token without the scope the catalog now requires reads the broad token's task result: %s", resp)
	}
	_, resp = h.postRPC(narrow, `{"jsonrpc":"2.0","id":5,"method":"tasks/list"}`)
	if strings.Contains(resp, id) {
		t.Errorf("and lists it: %s", resp)
	}
}
