package main

import (
	"context"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/audit"
)

// TestReplayOutcomeHeldOrAnswered: a re-submission held for approval is
// audited approval_requested, a re-submitted answer approval_granted or
// approval_denied: each is the message's decision, which 'denied
// replay' reports instead of waiting out its timeout. An expiry that
// names the sequence is not.
func TestReplayOutcomeHeldOrAnswered(t *testing.T) {
	_, js := streams(t)
	agent, _ := testAgent(t, "tenant_a")
	at := time.Now().UTC()
	auditEvent(t, js, audit.Event{Time: at, Kind: audit.KindApprovalExpired, Route: "deny", Reason: "approval_expired",
		Tenant: "tenant_a", Agent: agent, Target: "payments.send", IngressSeq: 6})
	for seq, kind := range map[uint64]string{7: audit.KindApprovalRequest, 8: audit.KindApprovalGranted, 9: audit.KindApprovalDenied} {
		auditEvent(t, js, audit.Event{Time: at, Kind: kind, Route: "approval",
			Tenant: "tenant_a", Agent: agent, Target: "payments.send", IngressSeq: seq, Operator: agent})
	}
	for seq, want := range map[uint64]string{7: audit.KindApprovalRequest, 8: audit.KindApprovalGranted, 9: audit.KindApprovalDenied} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		ev, err := replayOutcome(ctx, js, "tenant_a", seq)
		cancel()
		if err != nil || ev.Kind != want {
			t.Errorf("replayOutcome(%d) = %+v, %v; want the %s event", seq, ev, err, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if ev, err := replayOutcome(ctx, js, "tenant_a", 6); err == nil {
		t.Errorf("replayOutcome(6) = %+v; an expiry is not the message's decision", ev)
	}
}
