package mcp

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/approval"
)

// TestEndpointCancelOfHeldCallRefused: a task-augmented call held for
// approval cannot be withdrawn from the gateway by the agent, so its
// tasks/cancel is refused (-32013) rather than answered "cancelled"
// while an approver can still grant it and the tool run. Granted, the
// upstream runs once and the task reports its result.
func TestEndpointCancelOfHeldCallRefused(t *testing.T) {
	h := newEndpointHarness(t)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	h.approve(func(approval.Request) string {
		<-release
		return approval.Grant
	})
	t.Cleanup(free) // before the approver's cleanup, which waits for it
	tok := h.signed("olga", "billing")
	_, resp := h.postRPC(tok, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_payment","task":{"ttl":60000},"arguments":{"amount_cents":7300,"to":"acct-c"}}}`)
	var created struct {
		Result struct {
			Task Task `json:"task"`
		} `json:"result"`
	}
	if json.Unmarshal([]byte(resp), &created) != nil || created.Result.Task.TaskID == "" {
		t.Fatalf("task-augmented call: %s", resp)
	}
	id := created.Result.Task.TaskID
	taskReq := func(rpcID int, method string) string {
		return taskRPC(rpcID, method, id)
	}
	held := false
	for i := range 200 {
		_, resp := h.postRPC(tok, taskReq(100+i, "tasks/get"))
		var got struct {
			Result Task `json:"result"`
		}
		must(t, json.Unmarshal([]byte(resp), &got))
		if got.Result.StatusMessage == heldMessage {
			held = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !held {
		t.Fatal("the payment was never held for approval")
	}

	_, resp = h.postRPC(tok, taskReq(2, "tasks/cancel"))
	if !strings.Contains(resp, `"code":-32013`) || strings.Contains(resp, `"status":"cancelled"`) {
		t.Errorf("tasks/cancel of a held call = %s; want refused with -32013 (the gateway may still deliver it)", resp)
	}

	free() // the approver grants
	want := `send_payment {"amount_cents":7300,"to":"acct-c"}`
	_, resp = h.postRPC(tok, taskReq(3, "tasks/result"))
	if !strings.Contains(resp, `"payment_id":"p-7300"`) {
		t.Errorf("tasks/result after the grant = %s; want the payment's result", resp)
	}
	for deadline := time.Now().Add(20 * time.Second); !slices.Contains(h.upstream.calls(), want) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if got := h.upstream.calls(); !slices.Equal(got, []string{want}) {
		t.Errorf("upstream calls = %q; want the granted payment once", got)
	}
}

// TestEndpointCapsSyncCallsPerPrincipal: a principal's synchronous calls
// in flight are bounded, so that one principal cannot take every place
// of the endpoint's; one past the bound is refused at once with -32014 and nothing is sent,
// while another principal is still served and the calls in flight end
// normally.
func TestEndpointCapsSyncCallsPerPrincipal(t *testing.T) {
	h := newEndpointHarness(t)
	h.endpoint.bounds.calls = 2
	tok := h.signed("paula", "billing")
	// The token is exchanged once, before the calls share it.
	if code, resp := h.postRPC(tok, `{"jsonrpc":"2.0","id":100,"method":"tools/list"}`); code != 200 {
		t.Fatalf("tools/list = %d %s", code, resp)
	}
	pay := func(id, amount int) string {
		_, resp := h.postRPC(tok, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"send_payment","arguments":{"amount_cents":%d,"to":"acct-cap"}}}`, id, amount))
		return resp
	}
	held := make(chan string, 2)
	for i := range 2 {
		go func() { held <- pay(1+i, 8100+i) }() // held for approval: in flight until granted
	}
	inFlight := func() int64 {
		h.endpoint.mu.Lock()
		defer h.endpoint.mu.Unlock()
		for _, p := range h.endpoint.principals {
			if p.subject == "paula" {
				return p.calls.Load()
			}
		}
		return 0
	}
	for deadline := time.Now().Add(20 * time.Second); inFlight() < 2 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if n := inFlight(); n != 2 {
		t.Fatalf("%d calls in flight; want the two held payments", n)
	}
	if resp := pay(3, 8199); !strings.Contains(resp, `"code":-32014`) || !strings.Contains(resp, "too many calls in flight") {
		t.Errorf("a third call in flight = %s; want refused with -32014", resp)
	}
	if _, resp := h.postRPC(h.signed("quinn", "support"), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"cap"}}}`); !strings.Contains(resp, "3 articles about cap") {
		t.Errorf("another principal's call = %s; want served", resp)
	}
	h.approve(func(approval.Request) string { return approval.Grant })
	for range 2 {
		if resp := <-held; !strings.Contains(resp, `"payment_id":"p-81`) {
			t.Errorf("a held call after the grant = %s; want its payment", resp)
		}
	}
	if calls := h.upstream.calls(); slices.ContainsFunc(calls, func(c string) bool { return strings.Contains(c, "8199") }) {
		t.Errorf("upstream calls = %q; want none for the refused call", calls)
	}
}
