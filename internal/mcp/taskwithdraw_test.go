package mcp

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// TestWithdrawnTaskEndsCancelled: tasks/cancel of a task whose call
// was not sent withdraws it, and the task ends cancelled, even when its
// call reaches the send hook after withdraw marked the task and before
// it cancelled the call's context (a preemption, which the delayed
// cancel here stands for): the call then ends on the mark, with ctx not
// yet done, and must not be reported failed.
func TestWithdrawnTaskEndsCancelled(t *testing.T) {
	h := newEndpointHarness(t)
	tok := h.signed("gus", "billing")
	h.createTask(tok, 1, "search", `{"query":"warm"}`, `{"ttl":60000}`) // the session exists
	s := tokenSession(t, h, tok)
	tool, _ := h.endpoint.cfg.tool("search")
	for i := range 50 {
		tk, rpcErr := h.endpoint.startTask(s, tool, json.RawMessage(`{"query":"x"}`), time.Minute, false)
		if rpcErr != nil {
			t.Fatal(rpcErr)
		}
		orig := tk.cancel
		tk.cancel = func() { time.Sleep(200 * time.Millisecond); orig() }
		err := tk.withdraw()
		if errors.Is(err, errTaskSent) {
			<-tk.done
			continue // the call went out first: try again
		}
		if err != nil {
			t.Fatalf("withdraw: %v", err)
		}
		st := tk.snapshot()
		if st.Status != TaskCancelled {
			t.Fatalf("attempt %d: tasks/cancel succeeded, task status %q (%q); want %q", i, st.Status, st.StatusMessage, TaskCancelled)
		}
		return
	}
	t.Fatal("the call was sent before every withdrawal: nothing was withdrawn")
}
