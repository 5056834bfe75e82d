package mcp

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/approval"
)

// taskRPC is a JSON-RPC request of a tasks method (tasks/get,
// tasks/result, tasks/cancel) for task id.
func taskRPC(rpcID int, method, id string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":{"taskId":%q}}`, rpcID, method, id)
}

// createTask posts a task-augmented tools/call and returns the task the
// endpoint answered with.
func (h *endpointHarness) createTask(tok string, rpcID int, tool, args, task string) (Task, string) {
	h.t.Helper()
	_, resp := h.postRPC(tok, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"task":%s,"arguments":%s}}`, rpcID, tool, task, args))
	var created struct {
		Result struct {
			Task Task `json:"task"`
		} `json:"result"`
	}
	_ = json.Unmarshal([]byte(resp), &created)
	return created.Result.Task, resp
}

// getTask answers tasks/get of id with tok.
func (h *endpointHarness) getTask(tok string, rpcID int, id string) Task {
	h.t.Helper()
	_, resp := h.postRPC(tok, taskRPC(rpcID, "tasks/get", id))
	var got struct {
		Result Task `json:"result"`
	}
	must(h.t, json.Unmarshal([]byte(resp), &got))
	return got.Result
}

// waitHeld polls tasks/get until the task's call is held for approval.
func (h *endpointHarness) waitHeld(tok string, rpcID int, id string) {
	h.t.Helper()
	for i := range 400 {
		if h.getTask(tok, rpcID+i, id).StatusMessage == heldMessage {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("task %s was never held for approval", id)
}

// TestEndpointTasksCountAgainstCallLimit: a task's call waits on the
// principal's reply subject as a synchronous call does, so tasks in
// flight count against the same per-principal bound. Past it a task-augmented call, a server-directed one (tasks
// extension) and a synchronous one are each refused at once with
// -32014, nothing sent; another principal is served; once the tasks end
// the principal may call again.
func TestEndpointTasksCountAgainstCallLimit(t *testing.T) {
	h := newEndpointHarness(t)
	h.endpoint.bounds.calls = 2
	tok := h.signed("rita", "billing")
	var ids []string
	for i := range 2 { // held for approval: in flight until granted
		tk, resp := h.createTask(tok, 1+i, "send_payment", fmt.Sprintf(`{"amount_cents":%d,"to":"acct-task-cap"}`, 8300+i), `{"ttl":60000}`)
		if tk.TaskID == "" {
			t.Fatalf("task-augmented call %d = %s; want a task", i, resp)
		}
		ids = append(ids, tk.TaskID)
	}
	for i, id := range ids {
		h.waitHeld(tok, 100+100*i, id)
	}

	busy := func(what, resp string) {
		t.Helper()
		if !strings.Contains(resp, `"code":-32014`) || !strings.Contains(resp, `"reason":"too_many_calls"`) || !strings.Contains(resp, "tasks included") {
			t.Errorf("%s with two tasks in flight = %s; want refused with -32014 too_many_calls", what, resp)
		}
	}
	_, resp := h.createTask(tok, 10, "send_payment", `{"amount_cents":8399,"to":"acct-task-cap"}`, `{"ttl":60000}`)
	busy("a third task-augmented call", resp)
	ext := `"_meta":{"io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}}}`
	_, resp = h.postRPC(tok, `{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"search","arguments":{"query":"ext-cap"},`+ext+`}}`)
	busy("a server-directed call", resp)
	_, resp = h.postRPC(tok, `{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"search","arguments":{"query":"sync-cap"}}}`)
	busy("a synchronous call", resp)
	if _, resp := h.postRPC(h.signed("sven", "support"), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"other"}}}`); !strings.Contains(resp, "3 articles about other") {
		t.Errorf("another principal's call = %s; want served", resp)
	}

	h.approve(func(approval.Request) string { return approval.Grant })
	for i, id := range ids {
		_, resp := h.postRPC(tok, taskRPC(20+i, "tasks/result", id))
		if !strings.Contains(resp, fmt.Sprintf(`"payment_id":"p-%d"`, 8300+i)) {
			t.Errorf("tasks/result after the grant = %s; want the payment", resp)
		}
	}
	// A task ends its call before tasks/result answers: the bound is free.
	if _, resp := h.postRPC(tok, `{"jsonrpc":"2.0","id":30,"method":"tools/call","params":{"name":"search","arguments":{"query":"after"}}}`); !strings.Contains(resp, "3 articles about after") {
		t.Errorf("a call once the tasks ended = %s; want served", resp)
	}
	if calls := h.upstream.calls(); slices.ContainsFunc(calls, func(c string) bool {
		return strings.Contains(c, "8399") || strings.Contains(c, "ext-cap") || strings.Contains(c, "sync-cap")
	}) {
		t.Errorf("upstream calls = %q; want none of the refused calls", calls)
	}
}

// TestEndpointBoundsCallsInFlight: max_calls_in_flight bounds every
// principal's calls together (each holds a subscription on the
// endpoint's one connection, under the account's max_subscriptions):
// with two held for approval, a third principal's call is refused
// before anything is published, and served once they end.
func TestEndpointBoundsCallsInFlight(t *testing.T) {
	h := newEndpointHarness(t)
	h.endpoint.ep.MaxCallsInFlight = 2
	var held []string
	for i, who := range []string{"rita", "rosa"} {
		tok := h.signed(who, "billing")
		tk, resp := h.createTask(tok, 1, "send_payment", fmt.Sprintf(`{"amount_cents":%d,"to":"acct-inflight"}`, 8600+i), `{"ttl":60000}`)
		if tk.TaskID == "" {
			t.Fatalf("%s's task-augmented call = %s; want a task", who, resp)
		}
		h.waitHeld(tok, 100, tk.TaskID)
		held = append(held, tk.TaskID)
	}
	other := h.signed("sven", "support")
	_, resp := h.postRPC(other, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"full-endpoint"}}}`)
	if !strings.Contains(resp, `"code":-32014`) || !strings.Contains(resp, `"reason":"too_many_calls"`) || !strings.Contains(resp, "at this endpoint") {
		t.Errorf("a third principal's call with two in flight = %s; want refused with -32014 too_many_calls", resp)
	}
	h.approve(func(approval.Request) string { return approval.Grant })
	for i, who := range []string{"rita", "rosa"} {
		if _, resp := h.postRPC(h.signed(who, "billing"), taskRPC(2, "tasks/result", held[i])); !strings.Contains(resp, fmt.Sprintf(`"payment_id":"p-%d"`, 8600+i)) {
			t.Errorf("%s's tasks/result after the grant = %s; want the payment", who, resp)
		}
	}
	if _, resp := h.postRPC(other, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"search","arguments":{"query":"after"}}}`); !strings.Contains(resp, "3 articles about after") {
		t.Errorf("the call once the tasks ended = %s; want served", resp)
	}
	if calls := h.upstream.calls(); slices.ContainsFunc(calls, func(c string) bool { return strings.Contains(c, "full-endpoint") }) {
		t.Errorf("upstream calls = %q; want not the refused one", calls)
	}
}

// TestEndpointCloseFailsSentTasks: closing the endpoint does not report
// a task whose call the gateway holds for approval as cancelled (an
// approver may still grant it and the tool run): it ends failed, and
// tasks/result answers -32012 saying the call may still run.
func TestEndpointCloseFailsSentTasks(t *testing.T) {
	h := newEndpointHarness(t)
	tok := h.signed("sam", "billing")
	tk, resp := h.createTask(tok, 1, "send_payment", `{"amount_cents":8500,"to":"acct-close"}`, `{"ttl":60000}`)
	if tk.TaskID == "" {
		t.Fatalf("task-augmented call = %s; want a task", resp)
	}
	h.waitHeld(tok, 100, tk.TaskID)

	must(t, h.endpoint.Close())

	got := h.getTask(tok, 2, tk.TaskID)
	if got.Status != TaskFailed || !strings.Contains(got.StatusMessage, "may still run") {
		t.Errorf("held task after Close = %+v; want failed, saying the call may still run (not cancelled)", got)
	}
	_, resp = h.postRPC(tok, taskRPC(3, "tasks/result", tk.TaskID))
	if !strings.Contains(resp, `"code":-32012`) || !strings.Contains(resp, "may still run") {
		t.Errorf("tasks/result after Close = %s; want -32012 saying the call may still run", resp)
	}
}

// TestEndpointTaskTTLClamped: a task's ttl is the client's when below
// approval_wait and approval_wait otherwise; a ttl near the largest
// int64 is clamped, not overflowed into a negative lifetime.
func TestEndpointTaskTTLClamped(t *testing.T) {
	h := newEndpointHarness(t)
	tok := h.signed("tess", "support")
	want := h.endpoint.ep.ApprovalWait.Milliseconds()
	for i, tc := range []struct {
		task string
		ttl  int64
	}{
		{fmt.Sprintf(`{"ttl":%d}`, int64(math.MaxInt64)), want},
		{fmt.Sprintf(`{"ttl":%d}`, int64(math.MaxInt64)/1000), want},
		{`{"ttl":5000}`, 5000},
		{`{}`, want},
	} {
		tk, resp := h.createTask(tok, 1+i, "search", `{"query":"ttl"}`, tc.task)
		if tk.TaskID == "" || tk.TTL != tc.ttl {
			t.Errorf("task %s = %s; want a task with ttl %d", tc.task, resp, tc.ttl)
			continue
		}
		_, resp = h.postRPC(tok, taskRPC(100+i, "tasks/result", tk.TaskID))
		if !strings.Contains(resp, "3 articles about ttl") {
			t.Errorf("tasks/result of task %s = %s; want the result", tc.task, resp)
		}
		if got := h.getTask(tok, 200+i, tk.TaskID); got.Status != TaskCompleted || got.TTL != tc.ttl {
			t.Errorf("task %s once done = %+v; want completed with ttl %d", tc.task, got, tc.ttl)
		}
	}
}

// TestEndpointTaskGoneAfterTTL: a task is kept for its ttl once it ends:
// after that tasks/get, tasks/result and tasks/list no longer show it,
// whether or not another task has been started since (which sweeps the
// table).
func TestEndpointTaskGoneAfterTTL(t *testing.T) {
	h := newEndpointHarness(t)
	tok := h.signed("tess", "support")
	tk, resp := h.createTask(tok, 1, "search", `{"query":"brief"}`, `{"ttl":1}`)
	if tk.TaskID == "" {
		t.Fatalf("task-augmented call = %s; want a task", resp)
	}
	if _, resp := h.postRPC(tok, taskRPC(2, "tasks/result", tk.TaskID)); !strings.Contains(resp, "3 articles about brief") {
		t.Fatalf("tasks/result = %s; want the result", resp)
	}
	time.Sleep(50 * time.Millisecond) // past its 1 ms ttl
	for i, method := range []string{"tasks/get", "tasks/result"} {
		if _, resp := h.postRPC(tok, taskRPC(3+i, method, tk.TaskID)); !strings.Contains(resp, `"error"`) || strings.Contains(resp, "brief") {
			t.Errorf("%s past the ttl = %s; want an unknown task", method, resp)
		}
	}
	if _, resp := h.postRPC(tok, `{"jsonrpc":"2.0","id":5,"method":"tasks/list","params":{}}`); strings.Contains(resp, tk.TaskID) {
		t.Errorf("tasks/list past the ttl = %s; want the task gone", resp)
	}
}

// TestEndpointFullTableMakesRoom: a table filled by other principals'
// finished tasks (calls that failed at once, kept for their TTL) makes
// room for a principal with none, at the expense of the principal that
// holds the most; a table of running tasks does not.
func TestEndpointFullTableMakesRoom(t *testing.T) {
	h := newEndpointHarness(t)
	reg := h.endpoint.tasks
	later := time.Now().Add(time.Hour)
	fill := func(finished bool) {
		reg.mu.Lock()
		defer reg.mu.Unlock()
		clear(reg.tasks)
		for i := range maxTasks {
			tk := &task{owner: fmt.Sprintf("filler-%d", i%40), done: make(chan struct{})}
			if finished {
				tk.expires = later.Add(time.Duration(i) * time.Millisecond)
			}
			if i == 1 { // filler-1 holds one more than the others
				tk.owner = "filler-0"
			}
			reg.tasks[fmt.Sprintf("t%05d", i)] = tk
		}
	}

	fill(true)
	victim := h.signed("victim", "support")
	tk, resp := h.createTask(victim, 1, "search", `{"query":"x"}`, `{}`)
	if tk.TaskID == "" {
		t.Fatalf("a principal with no task, beside a table of others' finished ones: %s", resp)
	}
	reg.mu.Lock()
	_, first := reg.tasks["t00000"] // filler-0's earliest-ended task
	n := len(reg.tasks)
	reg.mu.Unlock()
	if first || n != maxTasks {
		t.Errorf("after the victim's task: filler-0's oldest kept = %v, %d tasks held; want it evicted, %d", first, n, maxTasks)
	}

	// The principal holding the most has only running tasks: a finished
	// one of another principal's gives way.
	fill(true)
	reg.mu.Lock()
	for _, tk := range reg.tasks {
		if tk.owner == "filler-0" {
			tk.expires = time.Time{}
		}
	}
	reg.mu.Unlock()
	third := h.signed("third", "support")
	if tk, resp := h.createTask(third, 1, "search", `{"query":"x"}`, `{}`); tk.TaskID == "" {
		t.Errorf("beside a principal of running tasks and others' finished ones: %s", resp)
	}

	fill(false)
	other := h.signed("other", "support")
	if tk, resp := h.createTask(other, 1, "search", `{"query":"x"}`, `{}`); tk.TaskID != "" || !strings.Contains(resp, "too many tasks") {
		t.Errorf("a table of running tasks = task %q, %s; want too many tasks", tk.TaskID, resp)
	}
	reg.mu.Lock()
	clear(reg.tasks) // running tasks that no goroutine will end
	reg.mu.Unlock()
}

// TestEndpointRefusedCallMaySendAgain: a tools/call refused before
// anything was sent (too many calls in flight, its headers not matching
// its body) is not remembered as made, so the client may send it again
// as it was and be served, as the refusal says; one that was sent stays
// a replay.
func TestEndpointRefusedCallMaySendAgain(t *testing.T) {
	h := newEndpointHarness(t)
	tok := h.signed("rita", "support")
	sync := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"busy"}}}`
	h.endpoint.bounds.calls = 0
	if _, resp := h.postRPC(tok, sync); !strings.Contains(resp, `"code":-32014`) {
		t.Fatalf("a call past the bound = %s; want -32014", resp)
	}
	h.endpoint.bounds.calls = defaultBounds.calls
	if _, resp := h.postRPC(tok, sync); !strings.Contains(resp, "3 articles about busy") {
		t.Errorf("the refused call sent again = %s; want served", resp)
	}
	if _, resp := h.postRPC(tok, sync); !strings.Contains(resp, `"reason":"replay"`) {
		t.Errorf("the served call sent again = %s; want a replay", resp)
	}

	task := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"search","task":{"ttl":60000},"arguments":{"query":"headers"}}}`
	post := func(name string) string {
		req, err := http.NewRequest(http.MethodPost, h.resource, strings.NewReader(task))
		must(t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Method", "tools/call")
		req.Header.Set("Mcp-Name", name)
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if resp := post("draft_refund"); !strings.Contains(resp, "does not match the body") {
		t.Fatalf("a task call whose Mcp-Name is another tool's = %s; want a header mismatch", resp)
	}
	if resp := post("search"); !strings.Contains(resp, `"taskId"`) {
		t.Errorf("the refused task call sent again with its own headers = %s; want a task", resp)
	}
	if calls := h.upstream.calls(); len(calls) < 1 || len(calls) > 2 {
		t.Errorf("upstream calls %q; want the two served calls only", calls)
	}
}
