package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/envelope"
)

// TestApprovalsAnswerPinsTheAgent: message ids are unique per agent
// only. Once agent A's hold under an id ended, agent B may be held under
// it; 'approvals grant --id' bound its grant to whichever request it
// read last, perhaps not the one the approver listed. With requests of
// two agents under the id it now asks for --agent, and binds to that
// agent's request.
func TestApprovalsAnswerPinsTheAgent(t *testing.T) {
	srv, js := streams(t)
	url := srv.ClientURL()
	k := newCredsKit(t)
	k.approverCreds(t)
	agentA, _ := testAgent(t, "tenant_a")
	agentB, _ := testAgent(t, "tenant_a")
	gw := testGateway(t)
	now := time.Now().UTC()
	a := approval.Request{HeldMessageID: "held-reused-000000001", TraceID: strings.Repeat("d", 32), Tenant: "tenant_a", Agent: agentA,
		Capability: "tool_call", Target: "payments.send", Risk: "critical", PolicyVersion: "sha256:policy",
		BodyDigest: "sha256:" + strings.Repeat("a", 64), PayloadDigest: "sha256:" + strings.Repeat("a", 64),
		Fields: map[string]any{"amount_cents": 100}, RequestedAt: now.Add(-time.Minute), Deadline: now.Add(15 * time.Minute)}
	b := a
	b.Agent, b.TraceID, b.BodyDigest, b.Fields = agentB, strings.Repeat("e", 32), "sha256:"+strings.Repeat("b", 64), map[string]any{"amount_cents": 990000}
	b.RequestedAt = now
	heldRequestMsg(t, js, gw, a)
	heldRequestMsg(t, js, gw, b)
	grant := []string{"approvals", "grant", "--no-wait-decision", "--server", url, "--credential", "approver.creds",
		"--gateway-key", gw.PublicKey(), "--id", a.HeldMessageID, "--json"}
	if r := mustRun(t, k.dir, exitUsage, grant...); !strings.Contains(r.stderr, "--agent") {
		t.Fatalf("grant --id with two agents' requests under it: %s", r)
	}
	r := mustRun(t, k.dir, exitOK, append(grant, "--agent", agentA)...)
	var rc struct{ Seq uint64 }
	if err := json.Unmarshal([]byte(r.stdout), &rc); err != nil {
		t.Fatal(err)
	}
	env, err := envelope.Parse(lastIngress(t, js, rc.Seq).Data, envelope.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var ans approval.Answer
	if err := json.Unmarshal(env.Payload.Plain, &ans); err != nil {
		t.Fatal(err)
	}
	if ans.BodyDigest != a.BodyDigest {
		t.Errorf("grant --agent %s bound to body_digest %s; want agent A's %s", agentA, ans.BodyDigest, a.BodyDigest)
	}
}
