package notice

import (
	"errors"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	deadline := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	good := []Notice{
		{MessageID: "m1", Route: RouteAllow, Target: "billing.refund"},
		{MessageID: "m2", Route: RouteApproval, ApprovalID: "m2", Deadline: &deadline},
		{MessageID: "m3", Route: RouteDeny, Reason: "policy_denied"},
		{MessageID: "m4", Route: RouteDeny, Reason: "approval_denied", Answers: "m9", Answer: AnswerDeny},
	}
	for _, n := range good {
		b, err := n.Marshal()
		if err != nil {
			t.Fatalf("Marshal(%+v) = %v", n, err)
		}
		got, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(%s) = %v", b, err)
		}
		if got.MessageID != n.MessageID || got.Route != n.Route || got.Reason != n.Reason || got.Target != n.Target {
			t.Errorf("Parse(%s) = %+v; want %+v", b, got, n)
		}
	}
	bad := map[string]string{
		"unknown member":   `{"message_id":"m","route":"deny","reason":"x","policy_ids":["p"]}`,
		"duplicate member": `{"message_id":"m","route":"deny","reason":"x","reason":"y"}`,
		"deny/no reason":   `{"message_id":"m","route":"deny"}`,
		"allow/no target":  `{"message_id":"m","route":"allow"}`,
		"approval/no id":   `{"message_id":"m","route":"approval"}`,
		"route/unknown":    `{"message_id":"m","route":"maybe"}`,
		"no message id":    `{"route":"deny","reason":"x"}`,
		"answer alone":     `{"message_id":"m","route":"deny","reason":"x","answer":"grant"}`,
		"trailing":         `{"message_id":"m","route":"deny","reason":"x"} {}`,
		"not an object":    `[]`,
		// deadline is RFC 3339 UTC as envelope times are written, on every
		// route, as the TypeScript reader has it.
		"deadline/offset":   `{"message_id":"m","route":"approval","approval_id":"m","deadline":"2026-01-02T04:04:05+01:00"}`,
		"deadline/lower z":  `{"message_id":"m","route":"approval","approval_id":"m","deadline":"2026-01-02T03:04:05z"}`,
		"deadline/on allow": `{"message_id":"m","route":"allow","target":"t","deadline":"junk"}`,
		"deadline/empty":    `{"message_id":"m","route":"deny","reason":"x","deadline":""}`,
	}
	for name, in := range bad {
		if _, err := Parse([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Parse(%s) = %v; want ErrInvalid", name, in, err)
		}
	}
	if _, err := Parse(make([]byte, MaxSize+1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("Parse(oversized) = %v; want ErrInvalid", err)
	}
}
