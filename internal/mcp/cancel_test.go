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
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":{"taskId":%q}}`, rpcID, method, id)
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
