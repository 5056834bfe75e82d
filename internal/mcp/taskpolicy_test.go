package mcp

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/policy"
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

// TestTaskVisibilityGatedSamePrincipal: with the gateway's catalog and
// policies, a policy that lets both tokens call search still does not
// let the support token see the billing token's task: a policy could
// decide the same call otherwise for another principal (on the payload
// too, which visibility cannot judge), so a task is seen only with the
// creator's Cedar principal, as without the gate.
func TestTaskVisibilityGatedSamePrincipal(t *testing.T) {
	h := newEndpointHarnessWith(t, endpointOptions{policy: testPolicy, gate: true})
	narrow := h.signed("carol", "support")
	if got := toolNames(t, h.connect(narrow)); !slices.Contains(got, "search") {
		t.Fatalf("the support token does not list search: %v; want it allowed by the policy", got)
	}
	checkTaskVisibility(t, h, narrow)
}

// TestTaskResultAsksAgainAfterItsWait: tasks/result waits for the task
// to end; who may see it is asked again then. A reload of the endpoint's
// policies that forbids the tool while a token's tasks/result waits for
// a payment held for approval: once the payment is granted, that token
// is answered unknown task, not the result.
func TestTaskResultAsksAgainAfterItsWait(t *testing.T) {
	h := newEndpointHarnessWith(t, endpointOptions{policy: testPolicy, gate: true})
	release := make(chan struct{})
	h.approve(func(approval.Request) string { <-release; return approval.Grant })
	creator, twin := h.signed("carol", "billing"), h.signed("carol", "billing")
	task, resp := h.createTask(creator, 1, "send_payment", `{"amount_cents":4242,"to":"acct-recheck"}`, `{"ttl":60000}`)
	if task.TaskID == "" {
		t.Fatalf("task-augmented call: %s", resp)
	}
	h.waitHeld(creator, 100, task.TaskID)
	got := make(chan string, 1)
	go func() {
		_, r := h.postRPC(twin, taskRPC(2, "tasks/result", task.TaskID))
		got <- r
	}()
	// Give the request time to pass its first check and wait; should it
	// come later, the first check refuses it, and the test passes all
	// the same.
	time.Sleep(500 * time.Millisecond)
	set, err := policy.Parse("x.cedar", []byte(testPolicy+`
@id("no-payments")
forbid (principal, action, resource == Target::"payments.send");
`))
	must(t, err)
	h.endpoint.gate.policy.Swap(set) // what the endpoint's reload does
	close(release)
	r := <-got
	if !strings.Contains(r, "unknown task") || strings.Contains(r, "p-4242") {
		t.Errorf("tasks/result begun before the reload: %s; want unknown task", r)
	}
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
		return taskRPC(rpcID, method, task.TaskID)
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
