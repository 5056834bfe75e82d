package whatif

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/subjects/reason"
)

// answersCatalog: refunds.draft_refund takes responses; both targets
// serve tenant_a.
const answersCatalog = `
targets:
  - {name: kb.search, kind: read, scope: "kb:read", tenants: [tenant_a], plain: true}
  - name: refunds.draft_refund
    kind: tool_call
    scope: "refunds:write"
    risk: high
    tenants: [tenant_a]
    plain: true
    response_deadline: 1m
    response_schema: '{"type":"object"}'
    consumer_xkey: %s
`

// answerEvent is the record of an answer (respond or approve) by a
// tenant_a agent with scopes: its target is the request it answers.
func answerEvent(kind string, capability, route string, why reason.Code, scopes ...string) audit.Event {
	seq++
	return audit.Event{
		Time: time.Unix(1_700_000_000, 0), Kind: kind, Route: route, Reason: string(why),
		Tenant: "tenant_a", Agent: "UANSWER", Scopes: scopes, Capability: capability,
		Target: "UAGENT/5d1e0c3a9b7f4e21a6c8d2f0b4e6a801", IngressSeq: seq,
	}
}

// TestAnswersReEvaluated: a response or an approver's answer names the
// request it answers, not a catalog target, but policy judged it against
// the target of that request. It is re-run against every target it may
// have answered for: a candidate that decides them all alike settles it
// (a forbid on respond flips a recorded reply; one on approving high
// risk flips a grant of an approver who can answer for refunds only),
// and one that decides them differently leaves it undetermined, never
// unchanged.
func TestAnswersReEvaluated(t *testing.T) {
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	xkey, _ := kp.PublicKey()
	cat, err := catalog.Parse(fmt.Appendf(nil, answersCatalog, xkey), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reply := answerEvent(audit.KindDecision, "respond", "allow", "", "respond:refunds.*")
	grant := answerEvent(audit.KindApprovalGranted, "approve", "allow", "", "approve:refunds.*")
	anyGrant := answerEvent(audit.KindApprovalGranted, "approve", "allow", "", "approve:*")
	refused := answerEvent(audit.KindDecision, "approve", "deny", reason.PolicyDenied, "approve:refunds.*")
	for _, c := range []struct {
		name, candidate string
		events          []audit.Event
		flips, undet    int
		unchanged       int
	}{
		{"same policy", "", []audit.Event{reply, grant, anyGrant}, 0, 0, 3},
		{"respond forbidden", `@id("no-replies") forbid (principal, action == Action::"respond", resource);`, []audit.Event{reply}, 1, 0, 0},
		{"high risk approvals forbidden", `@id("no-high") forbid (principal, action == Action::"approve", resource) when { resource.risk == "high" };`,
			[]audit.Event{grant, anyGrant}, 1, 1, 0},
		{"refused approver now allowed", "", []audit.Event{refused}, 1, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			set, err := policy.Parse("candidate.cedar", []byte(permitAll+c.candidate))
			if err != nil {
				t.Fatal(err)
			}
			r := Evaluate(c.events, cat, set)
			if len(r.Flips) != c.flips || r.Undetermined != c.undet || r.Unchanged != c.unchanged {
				t.Errorf("flips %+v, undetermined %d, unchanged %d, skipped %v; want %d, %d, %d", r.Flips, r.Undetermined, r.Unchanged, r.Skipped, c.flips, c.undet, c.unchanged)
			}
		})
	}
}
