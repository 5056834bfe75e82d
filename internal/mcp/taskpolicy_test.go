package mcp

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestTaskVisibilityAsksPolicy: with the gateway's catalog and policies,
// a task is seen only with a token whose credential the authorize-stage
// policy allows the task's tool. Of two tokens of one subject, Cedar
// forbids search to the support one (kb-billing-only) although its
// kb:read covers the tool's scope: it neither gets, reads, lists nor
// cancels the search task the billing one made, while another billing
// token of the subject reads and lists it.
func TestTaskVisibilityAsksPolicy(t *testing.T) {
	h := newEndpointHarnessWith(t, endpointOptions{policy: supportNoKB, gate: true})
	narrow := h.signed("carol", "support")
	if got := toolNames(t, h.connect(narrow)); slices.Contains(got, "search") {
		t.Fatalf("the support token lists search: %v; want it hidden by kb-billing-only", got)
	}
	checkTaskVisibility(t, h, narrow)
}

// TestTaskVisibilityWithoutGate: without the gateway's files the
// endpoint cannot ask the policy, so a task is seen only with a token
// whose credential has the creator's Cedar principal attributes (scope
// set, service, issuer). The support token of the subject, whose kb:read
// covers search's scope but whose scope set differs, does not see the
// billing token's search task; another billing token does.
func TestTaskVisibilityWithoutGate(t *testing.T) {
	h := newEndpointHarness(t)
	checkTaskVisibility(t, h, h.signed("carol", "support"))
}

// checkTaskVisibility has a billing token of carol make a search task,
// another billing token of carol read and list it, and narrow see
// nothing of it.
func checkTaskVisibility(t *testing.T, h *endpointHarness, narrow string) {
	t.Helper()
	creator, twin := h.signed("carol", "billing"), h.signed("carol", "billing")
	task, resp := h.createTask(creator, 1, "search", `{"query":"query-of-the-billing-token"}`, `{"ttl":60000}`)
	if task.TaskID == "" {
		t.Fatalf("task-augmented call: %s", resp)
	}
	req := func(rpcID int, method string) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":{"taskId":%q}}`, rpcID, method, task.TaskID)
	}
	if _, resp := h.postRPC(twin, req(2, "tasks/result")); !strings.Contains(resp, "query-of-the-billing-token") {
		t.Fatalf("another billing token of carol: tasks/result = %s; want the search result", resp)
	}
	if _, resp := h.postRPC(twin, `{"jsonrpc":"2.0","id":3,"method":"tasks/list"}`); !strings.Contains(resp, task.TaskID) {
		t.Errorf("another billing token of carol: tasks/list = %s; want the task", resp)
	}
	for i, method := range []string{"tasks/get", "tasks/result", "tasks/cancel"} {
		if _, resp := h.postRPC(narrow, req(10+i, method)); !strings.Contains(resp, "unknown task") || strings.Contains(resp, "query-of-the-billing-token") {
			t.Errorf("the support token of carol: %s = %s; want unknown task", method, resp)
		}
	}
	if _, resp := h.postRPC(narrow, `{"jsonrpc":"2.0","id":20,"method":"tasks/list"}`); strings.Contains(resp, task.TaskID) {
		t.Errorf("the support token of carol: tasks/list = %s; want no task of the billing token", resp)
	}
}
