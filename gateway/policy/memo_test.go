package policy

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// TestDecisionMemoMatchesEvaluation: every decision Decide returns,
// memoized or not, equals a fresh evaluation, over requests that differ
// in each thing a decision can depend on.
func TestDecisionMemoMatchesEvaluation(t *testing.T) {
	set := mustParse(t, testPolicies+`
@id("hours") permit (principal, action == Action::"read", resource == Target::"office.hours")
when { context.hour >= 9 && context.hour < 17 };

@id("scoped") permit (principal, action == Action::"read", resource == Target::"scoped.docs")
when { principal.scopes.contains("a") && principal.service == "svc" && principal.issuer == "AISSUER" };

@id("one.agent") permit (principal == Agent::"U1", action == Action::"read", resource == Target::"agent.only");
`)
	if !set.memoOK {
		t.Fatal("a set that never reads context.time is not memoized")
	}
	scopes := [][]string{nil, {"a"}, {"a", "b"}, {"a,b"}, {"b", "a"}}
	principals := []Principal{}
	for _, sc := range scopes {
		for _, svc := range []string{"svc", "other"} {
			for _, agent := range []string{"U1", "U2"} {
				principals = append(principals, Principal{Agent: agent, Tenant: "tenant_a", Service: svc, Issuer: "AISSUER", Scopes: sc})
			}
		}
	}
	principals = append(principals, Principal{Agent: "U1", Tenant: "tenant_b", Service: "svc", Issuer: "AISSUER", Scopes: []string{"a"}})
	resources := []Resource{
		target("docs.search", "read", "low"), target("office.hours", "read", "low"), target("scoped.docs", "read", "low"),
		target("refunds.draft_refund", "tool_call", "medium"), target("pay.big", "tool_call", "high"),
		target("danger.wipe", "tool_call", "low"), target("flow.x", "workflow_command", "low"), target("agent.only", "read", "low"),
		{Target: "scoped.docs", Tenant: "tenant_b", Kind: "read", Risk: "low"},
	}
	times := []time.Time{t0, t0.Add(8 * time.Hour), t0.Add(8*time.Hour + 30*time.Minute), t0.Add(16 * time.Hour)}
	payloads := []map[string]any{nil, {}, {"amount_cents": 5.0}, {"amount_cents": 200000.0}}
	budgets := []map[string]int64{nil, {"agent_remaining": 0}, {"agent_remaining": 1}}
	n, memoized := 0, 0
	for round := 0; round < 2; round++ { // the second round hits the memo
		for _, p := range principals {
			for _, r := range resources {
				for _, action := range []string{"read", "tool_call", "workflow_command"} {
					for _, at := range times {
						for _, payload := range payloads {
							for _, budget := range budgets {
								req := Request{Principal: p, Action: action, Resource: r, Time: at, Payload: payload, Budget: budget}
								n++
								got, want := set.Decide(req), set.evaluate(req)
								if req.Principal.Tenant != req.Resource.Tenant {
									want = Decision{Version: set.version, PolicyIDs: []string{BuiltinTenantIsolation}}
								}
								if !reflect.DeepEqual(got, want) {
									t.Fatalf("round %d, %+v:\n Decide   = %+v\n evaluate = %+v", round, req, got, want)
								}
								if _, ok := set.memoKey(req); ok {
									memoized++
								}
							}
						}
					}
				}
			}
		}
	}
	if memoized == 0 || memoized == n {
		t.Fatalf("%d of %d requests memoizable; want some of each kind", memoized, n)
	}
}

// TestDecisionMemoNeverHidesTime: a set that reads context.time (or uses
// context whole) is never memoized, and its decisions follow the clock
// within one hour.
func TestDecisionMemoNeverHidesTime(t *testing.T) {
	deadline := t0.Add(10 * time.Second)
	set := mustParse(t, fmt.Sprintf(`permit (principal, action, resource) when { context.time < %d };`, deadline.Unix()))
	if set.memoOK {
		t.Fatal("a set reading context.time is memoized")
	}
	req := Request{Principal: principal(), Action: "read", Resource: target("x", "read", "low"), Time: t0}
	if !set.Decide(req).Allow {
		t.Fatal("denied before the deadline")
	}
	req.Time = deadline.Add(time.Second)
	if set.Decide(req).Allow {
		t.Fatal("allowed after the deadline: a decision was reused across time")
	}
	for _, src := range []string{
		`permit (principal, action, resource) when { context == {"hour": 1} };`,
		`permit (principal, action, resource) when { context has time };`,
	} {
		if mustParse(t, src).memoOK {
			t.Errorf("memoized: %s", src)
		}
	}
}

func TestDecisionMemoIsBounded(t *testing.T) {
	set := mustParse(t, `permit (principal, action, resource);`)
	for i := range maxMemo + 10 {
		p := principal()
		p.Agent = fmt.Sprintf("U%d", i)
		if !set.Decide(Request{Principal: p, Action: "read", Resource: target("x", "read", "low"), Time: t0}).Allow {
			t.Fatal("denied")
		}
	}
	if n := len(set.memo.m); n == 0 || n > maxMemo {
		t.Fatalf("memo holds %d decisions; want 1..%d", n, maxMemo)
	}
}
