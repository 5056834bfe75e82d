package whatif

import (
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/subjects/reason"
)

// testCatalog: kb.search has no policy-visible field (its content stage
// sees an empty payload); refunds.draft_refund shows amount_cents to
// policy.
const testCatalog = `
targets:
  - {name: kb.search, kind: read, scope: "kb:read", tenants: [tenant_a], plain: true}
  - name: refunds.draft_refund
    kind: tool_call
    scope: "refunds:write"
    tenants: [tenant_a]
    plain: true
    payload_schema: '{"type":"object","additionalProperties":false,"properties":{"amount_cents":{"type":"integer"}}}'
    policy_visible: [amount_cents]
`

const permitAll = `
@id("allow") permit (principal, action, resource);
`

func testSetup(t *testing.T, candidate string) (*catalog.Catalog, *policy.Set) {
	t.Helper()
	cat, err := catalog.Parse([]byte(testCatalog), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Parse("candidate.cedar", []byte(permitAll+candidate))
	if err != nil {
		t.Fatal(err)
	}
	return cat, set
}

var seq uint64

// recorded is a decision event of tenant_a's agent on target.
func recorded(target, capability, route string, why reason.Code) audit.Event {
	seq++
	return audit.Event{
		Time: time.Unix(1_700_000_000, 0), Kind: audit.KindDecision, Route: route, Reason: string(why),
		Tenant: "tenant_a", Agent: "UAGENT", Scopes: []string{"kb:read", "refunds:write"},
		Capability: capability, Target: target, IngressSeq: seq,
	}
}

func search(route string, why reason.Code) audit.Event {
	return recorded("kb.search", "read", route, why)
}

func refund(route string, why reason.Code) audit.Event {
	return recorded("refunds.draft_refund", "tool_call", route, why)
}

// TestBudgetReaderNotReEvaluable: audit does not keep the budget state
// the gateway passes to policy. A candidate forbid reading context.budget
// could deny a recorded allow in its scope; that decision is not
// re-evaluable, never unchanged. A decision outside its scope is judged.
func TestBudgetReaderNotReEvaluable(t *testing.T) {
	cat, set := testSetup(t, `
@id("budget-floor")
forbid (principal, action, resource == Target::"kb.search")
when { context.budget has agent_remaining && context.budget.agent_remaining < 1 };
`)
	r := Evaluate([]audit.Event{search("allow", ""), refund("allow", "")}, cat, set)
	if r.Evaluated != 1 || r.Unchanged != 1 || len(r.Flips) != 0 {
		t.Errorf("evaluated %d unchanged %d flips %v; want the refund alone judged, unchanged", r.Evaluated, r.Unchanged, r.Flips)
	}
	if r.Skipped[SkipBudget] != 1 || r.Undetermined != 1 {
		t.Errorf("skipped %v undetermined %d; want the search not re-evaluable for the budget state", r.Skipped, r.Undetermined)
	}

	// Context used whole can see the budget too.
	cat, set = testSetup(t, `
@id("whole-context")
forbid (principal, action, resource) when { context == {} };
`)
	if r := Evaluate([]audit.Event{search("allow", "")}, cat, set); r.Skipped[SkipBudget] != 1 || r.Unchanged != 0 {
		t.Errorf("context used whole: skipped %v unchanged %d; want not re-evaluable", r.Skipped, r.Unchanged)
	}
}

// TestContentStageCandidate: a recorded allow went through the content
// stage. A candidate content-stage forbid over a target with
// policy-visible fields cannot be judged without the payload; over a
// target without them its content stage sees an empty payload, as the
// gateway's does, and is judged.
func TestContentStageCandidate(t *testing.T) {
	cat, set := testSetup(t, `
@id("refund-ceiling")
forbid (principal, action, resource == Target::"refunds.draft_refund")
when { context has payload && context.payload.amount_cents > 100 };

@id("no-search-content")
forbid (principal, action, resource == Target::"kb.search")
when { context.stage == "content" };
`)
	r := Evaluate([]audit.Event{refund("allow", ""), search("allow", "")}, cat, set)
	if r.Skipped[SkipContent] != 1 || r.Undetermined != 1 {
		t.Errorf("skipped %v undetermined %d; want the refund allow not re-evaluable", r.Skipped, r.Undetermined)
	}
	if r.Evaluated != 1 || r.Unchanged != 0 || len(r.Flips) != 1 || r.Flips[0].Target != "kb.search" ||
		r.Flips[0].To != "deny" || len(r.Flips[0].PolicyIDs) != 1 || r.Flips[0].PolicyIDs[0] != "no-search-content" {
		t.Errorf("evaluated %d unchanged %d flips %+v; want the search flipped to deny by no-search-content", r.Evaluated, r.Unchanged, r.Flips)
	}
}

// TestRecordedDenials: a content_denied decision is judged when the
// candidate denies it at authorize, and not re-evaluable when the
// candidate lets it reach the content stage; a denial of a built-in
// payload check cannot flip.
func TestRecordedDenials(t *testing.T) {
	cat, set := testSetup(t, `
@id("no-refunds-for-agent")
forbid (principal == Agent::"UDENIED", action, resource == Target::"refunds.draft_refund");
`)
	denied := refund("deny", reason.ContentDenied)
	denied.Agent = "UDENIED"
	events := []audit.Event{denied, refund("deny", reason.ContentDenied), refund("deny", reason.PayloadInvalid), search("deny", reason.UnknownTarget)}
	r := Evaluate(events, cat, set)
	if r.Evaluated != 1 || r.Unchanged != 1 || len(r.Flips) != 0 {
		t.Errorf("evaluated %d unchanged %d flips %v; want the authorize-stage denial judged unchanged", r.Evaluated, r.Unchanged, r.Flips)
	}
	want := map[string]int{SkipContent: 1, SkipPayloadGate: 1, SkipBeforePolicy: 1}
	if len(r.Skipped) != len(want) || r.Undetermined != 1 {
		t.Errorf("skipped %v undetermined %d; want %v and 1", r.Skipped, r.Undetermined, want)
	}
	for k, n := range want {
		if r.Skipped[k] != n {
			t.Errorf("skipped[%s] = %d; want %d", k, r.Skipped[k], n)
		}
	}
}

// TestStageBlindCandidateJudged: a candidate that reads neither budget
// nor payload is judged on every policy-decided record.
func TestStageBlindCandidateJudged(t *testing.T) {
	cat, set := testSetup(t, `
@id("no-search")
forbid (principal, action, resource == Target::"kb.search") when { context.hour >= 0 };
`)
	r := Evaluate([]audit.Event{search("allow", ""), refund("allow", ""), refund("deny", reason.PolicyDenied)}, cat, set)
	if r.Evaluated != 3 || r.Undetermined != 0 || r.Changes["allow→deny"] != 1 || r.Changes["deny→allow"] != 1 || r.Unchanged != 1 {
		t.Errorf("report %+v; want 3 judged: search allow→deny, refund deny→allow, refund allow unchanged", r)
	}
}
