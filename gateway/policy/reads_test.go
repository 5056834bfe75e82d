package policy

import "testing"

// TestDependsOn: a request depends on the budget state, on the content
// stage, or on the payload, exactly when a policy whose scope takes it
// in reads context.budget, context.stage or context.payload, or
// context.payload alone (or, for each, uses context whole); conditions
// other than those reads do not matter.
func TestDependsOn(t *testing.T) {
	s, err := Parse("p.cedar", []byte(`
@id("allow") permit (principal, action, resource);

@id("budget-search")
forbid (principal, action in [Action::"read", Action::"delegate"], resource == Target::"kb.search")
when { context.budget has agent_remaining && context.budget.agent_remaining < 1 };

@id("content-refunds")
forbid (principal, action == Action::"tool_call", resource is Target)
when { principal.tenant == "tenant_a" && context has payload && context.payload.amount_cents > 5 };

@id("whole-context-agent")
forbid (principal == Agent::"UWHOLE", action, resource) when { context == {} };

@id("stage-only-agent")
forbid (principal == Agent::"USTAGE", action, resource) when { principal.tenant == "x" && context.stage == "authorize" };

@id("time-only")
forbid (principal, action, resource) when { context.time < 0 && context.hour > 30 };
`))
	if err != nil {
		t.Fatal(err)
	}
	req := func(agent, action, target string) Request {
		return Request{
			Principal: Principal{Agent: agent, Tenant: "tenant_a"},
			Action:    action,
			Resource:  Resource{Target: target, Tenant: "tenant_a"},
		}
	}
	tests := []struct {
		name string
		req  Request
		want Dependence
	}{
		{"budget reader in scope", req("UA", "read", "kb.search"), Dependence{Budget: true}},
		{"budget reader, action outside its set", req("UA", "approve", "kb.search"), Dependence{}},
		{"budget reader, other target", req("UA", "read", "kb.other"), Dependence{}},
		{"content reader in scope", req("UA", "tool_call", "refunds.draft_refund"), Dependence{Content: true, Payload: true}},
		{"whole context sees everything", req("UWHOLE", "read", "kb.other"), Dependence{Budget: true, Content: true, Payload: true}},
		{"stage reader sees no payload", req("USTAGE", "read", "kb.other"), Dependence{Content: true}},
		{"time and hour only", req("UB", "workflow_command", "x"), Dependence{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.DependsOn(tt.req); got != tt.want {
				t.Errorf("DependsOn = %+v; want %+v", got, tt.want)
			}
		})
	}
	// The tenant guard denies whatever the context holds.
	cross := req("UWHOLE", "read", "kb.search")
	cross.Resource.Tenant = "tenant_b"
	if got := s.DependsOn(cross); got != (Dependence{}) {
		t.Errorf("DependsOn across tenants = %+v; want none", got)
	}
}
