package policy

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
)

// testPolicies is loaded in this order; ids are deliberately not sorted.
const testPolicies = `
@id("z.read.kind")
permit (principal, action == Action::"read", resource) when { resource.kind == "read" };

@id("a.read.docs")
permit (principal, action == Action::"read", resource == Target::"docs.search");

@id("tool.same_kind")
permit (principal, action == Action::"tool_call", resource)
when { resource.kind == "tool_call" && principal.tenant == resource.tenant };

@id("tool.high_risk")
@approval("required")
permit (principal, action == Action::"tool_call", resource)
when { resource.kind == "tool_call" && resource.risk == "high" };

@id("danger.permit")
permit (principal, action, resource == Target::"danger.wipe");

@id("danger.forbid")
forbid (principal, action, resource == Target::"danger.wipe");

@id("refunds.max_amount")
forbid (principal, action == Action::"tool_call", resource == Target::"refunds.draft_refund")
when { context has payload && context.payload.amount_cents > 100000 };

@id("refunds.overflow_probe")
forbid (principal, action == Action::"tool_call", resource == Target::"refunds.overflow")
when { context has payload && context.payload.amount_cents * 9223372036854775807 > 0 };

@id("workflow.needs_budget")
permit (principal, action == Action::"workflow_command", resource)
when { context.budget.agent_remaining > 0 };
`

func principal() Principal {
	return Principal{Agent: "UAGENT", Tenant: "tenant_a", Service: "support-agent-runtime", Issuer: "AISSUER", Scopes: []string{"refund:draft"}}
}

func target(name, kind, risk string) Resource {
	return Resource{Target: name, Tenant: "tenant_a", Kind: kind, Risk: risk}
}

var t0 = time.Date(2026, 11, 26, 1, 8, 41, 0, time.UTC)

func TestDecide(t *testing.T) {
	set := mustParse(t, testPolicies)
	refund := target("refunds.draft_refund", "tool_call", "medium")
	tests := []struct {
		name         string
		req          Request
		wantAllow    bool
		wantApproval bool
		wantIDs      []string
		wantErrs     []string // substrings, one per expected error
	}{
		{name: "allow/permit", wantAllow: true, wantIDs: []string{"tool.same_kind"},
			req: Request{Principal: principal(), Action: "tool_call", Resource: target("crm.lookup", "tool_call", "low")}},
		{name: "allow/ids sorted", wantAllow: true, wantIDs: []string{"a.read.docs", "z.read.kind"},
			req: Request{Principal: principal(), Action: "read", Resource: target("docs.search", "read", "low")}},
		{name: "deny/forbid overrides permit", wantIDs: []string{"danger.forbid"},
			req: Request{Principal: principal(), Action: "tool_call", Resource: target("danger.wipe", "tool_call", "low")}},
		{name: "deny/default", wantIDs: nil,
			req: Request{Principal: principal(), Action: "delegate", Resource: target("crm.lookup", "tool_call", "low")}},
		{name: "allow/approval from determining permit", wantAllow: true, wantApproval: true, wantIDs: []string{"tool.high_risk", "tool.same_kind"},
			req: Request{Principal: principal(), Action: "tool_call", Resource: target("payments.send", "tool_call", "high")}},
		{name: "deny/approval permit matched but forbidden", wantIDs: []string{"refunds.max_amount"},
			req: Request{Principal: principal(), Action: "tool_call", Resource: target("refunds.draft_refund", "tool_call", "high"),
				Payload: map[string]any{"amount_cents": float64(150000)}}},
		{name: "deny/tenant guard", wantIDs: []string{BuiltinTenantIsolation},
			req: Request{Principal: principal(), Action: "read", Resource: Resource{Target: "docs.search", Tenant: "tenant_b", Kind: "read"}}},
		{name: "deny/tenant guard empty tenant", wantIDs: []string{BuiltinTenantIsolation},
			req: Request{Principal: Principal{Agent: "UAGENT"}, Action: "read", Resource: Resource{Target: "docs.search", Kind: "read"}}},
		{name: "allow/authorize stage ignores payload rule", wantAllow: true, wantIDs: []string{"tool.same_kind"},
			req: Request{Principal: principal(), Action: "tool_call", Resource: refund}},
		{name: "allow/content stage under limit", wantAllow: true, wantIDs: []string{"tool.same_kind"},
			req: Request{Principal: principal(), Action: "tool_call", Resource: refund, Payload: map[string]any{"amount_cents": float64(2500)}}},
		{name: "deny/content stage over limit", wantIDs: []string{"refunds.max_amount"},
			req: Request{Principal: principal(), Action: "tool_call", Resource: refund, Payload: map[string]any{"amount_cents": float64(150000)}}},
		{name: "deny/content stage json.Number over limit", wantIDs: []string{"refunds.max_amount"},
			req: Request{Principal: principal(), Action: "tool_call", Resource: refund, Payload: map[string]any{"amount_cents": json.Number("100001")}}},
		{name: "deny/content stage field missing fails closed", wantIDs: []string{"refunds.max_amount"},
			wantErrs: []string{"policy refunds.max_amount: record does not have the attribute `amount_cents`"},
			req:      Request{Principal: principal(), Action: "tool_call", Resource: refund, Payload: map[string]any{}}},
		{name: "deny/content stage unrepresentable amount fails closed", wantIDs: []string{BuiltinPayloadUnrepresentable},
			wantErrs: []string{"payload.amount_cents: more than 4 fractional digits"},
			req:      Request{Principal: principal(), Action: "tool_call", Resource: refund, Payload: map[string]any{"amount_cents": 150000.00001}}},
		{name: "deny/content stage wrong type fails closed", wantIDs: []string{"refunds.max_amount"},
			wantErrs: []string{"policy refunds.max_amount: type error"},
			req:      Request{Principal: principal(), Action: "tool_call", Resource: refund, Payload: map[string]any{"amount_cents": "150000"}}},
		{name: "deny/content stage decimal amount is a type error", wantIDs: []string{"refunds.max_amount"},
			wantErrs: []string{"policy refunds.max_amount: type error"},
			req:      Request{Principal: principal(), Action: "tool_call", Resource: refund, Payload: map[string]any{"amount_cents": 150000.5}}},
		{name: "deny/permit error grants nothing", wantIDs: nil,
			wantErrs: []string{"policy workflow.needs_budget: record does not have the attribute `agent_remaining`"},
			req:      Request{Principal: principal(), Action: "workflow_command", Resource: target("wf.run", "workflow_command", "low")}},
		{name: "allow/budget in context", wantAllow: true, wantIDs: []string{"workflow.needs_budget"},
			req: Request{Principal: principal(), Action: "workflow_command", Resource: target("wf.run", "workflow_command", "low"),
				Budget: map[string]int64{"agent_remaining": 3}}},
		{name: "deny/budget exhausted", wantIDs: nil,
			req: Request{Principal: principal(), Action: "workflow_command", Resource: target("wf.run", "workflow_command", "low"),
				Budget: map[string]int64{"agent_remaining": 0}}},
		{name: "deny/error message hides payload values", wantIDs: []string{"refunds.overflow_probe"},
			wantErrs: []string{"policy refunds.overflow_probe: integer overflow"},
			req: Request{Principal: principal(), Action: "tool_call", Resource: target("refunds.overflow", "tool_call", "low"),
				Payload: map[string]any{"amount_cents": float64(424242)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Time = t0
			got := set.Decide(tt.req)
			if got.Allow != tt.wantAllow || got.Approval != tt.wantApproval {
				t.Errorf("Decide() allow=%v approval=%v; want allow=%v approval=%v (%+v)", got.Allow, got.Approval, tt.wantAllow, tt.wantApproval, got)
			}
			if !slices.Equal(got.PolicyIDs, tt.wantIDs) {
				t.Errorf("Decide().PolicyIDs = %q; want %q", got.PolicyIDs, tt.wantIDs)
			}
			if got.Version != set.Version() {
				t.Errorf("Decide().Version = %q; want %q", got.Version, set.Version())
			}
			if len(got.Errors) != len(tt.wantErrs) {
				t.Fatalf("Decide().Errors = %q; want %d", got.Errors, len(tt.wantErrs))
			}
			for i, w := range tt.wantErrs {
				if !strings.Contains(got.Errors[i], w) {
					t.Errorf("Decide().Errors[%d] = %q; want it to contain %q", i, got.Errors[i], w)
				}
			}
			for _, e := range got.Errors {
				if strings.Contains(e, "424242") || strings.Contains(e, "150000") {
					t.Errorf("Decide().Errors leaks a payload value: %q", e)
				}
			}
		})
	}
}

func TestTenantGuardBeatsPermitAll(t *testing.T) {
	set := mustParse(t, `@id("all") permit (principal, action, resource);`)
	req := Request{Principal: principal(), Action: "read", Resource: Resource{Target: "x", Tenant: "tenant_b"}}
	if got := set.Decide(req); got.Allow || !slices.Equal(got.PolicyIDs, []string{BuiltinTenantIsolation}) {
		t.Errorf("Decide(cross-tenant) = %+v; want deny by %s", got, BuiltinTenantIsolation)
	}
	req.Resource.Tenant = "tenant_a"
	if got := set.Decide(req); !got.Allow || !slices.Equal(got.PolicyIDs, []string{"all"}) {
		t.Errorf("Decide(same tenant) = %+v; want allow by all", got)
	}
}

// TestPayloadIdiom proves the documented idiom on both effects: a rule
// that reads the payload never permits, and never errors into an allow, at
// stage authorize; and it still forbids at stage content.
func TestPayloadIdiom(t *testing.T) {
	set := mustParse(t, `
@id("small_refunds")
permit (principal, action == Action::"tool_call", resource)
when { context has payload && context.payload.amount_cents <= 100 };

@id("no_big_refunds")
forbid (principal, action, resource)
when { context has payload && context.payload.amount_cents > 100000 };
`)
	base := Request{Principal: principal(), Action: "tool_call", Resource: target("refunds.draft_refund", "tool_call", "low"), Time: t0}
	tests := []struct {
		name      string
		payload   map[string]any
		wantAllow bool
		wantIDs   []string
		wantErrs  int
	}{
		{"authorize/no permit, no error", nil, false, nil, 0},
		{"content/small permitted", map[string]any{"amount_cents": float64(50)}, true, []string{"small_refunds"}, 0},
		{"content/medium not permitted", map[string]any{"amount_cents": float64(5000)}, false, nil, 0},
		{"content/big forbidden", map[string]any{"amount_cents": float64(500000)}, false, []string{"no_big_refunds"}, 0},
		{"content/missing field forbidden", map[string]any{"other": "x"}, false, []string{"no_big_refunds"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := base
			req.Payload = tt.payload
			got := set.Decide(req)
			if got.Allow != tt.wantAllow || !slices.Equal(got.PolicyIDs, tt.wantIDs) || len(got.Errors) != tt.wantErrs {
				t.Errorf("Decide() = %+v; want allow=%v ids=%q and %d errors", got, tt.wantAllow, tt.wantIDs, tt.wantErrs)
			}
		})
	}
}

// TestContextMapping pins every attribute of the documented mapping.
func TestContextMapping(t *testing.T) {
	set := mustParse(t, `
@id("mapping")
permit (principal == Agent::"UAGENT", action == Action::"tool_call", resource == Target::"refunds.draft_refund")
when {
  principal.tenant == "tenant_a" && principal.service == "support-agent-runtime" &&
  principal.issuer == "AISSUER" && principal.scopes.contains("refund:draft") &&
  resource.tenant == "tenant_a" && resource.kind == "tool_call" && resource.risk == "medium" &&
  context.time == 1795655321 && context.hour == 1 &&
  context.budget.agent_remaining == 3 && context.budget.tenant_remaining == 90 &&
  context.stage == "content" && context has payload &&
  context.payload.order_id == "ord_123" && context.payload.amount_cents == 2500 &&
  context.payload.rate.greaterThan(decimal("0.1")) && context.payload.urgent &&
  context.payload.tags.contains("vip") && context.payload.meta.channel == "email" &&
  !(context.payload has skipped)
};
@id("authorize_stage")
permit (principal, action == Action::"read", resource)
when { context.stage == "authorize" && !(context has payload) && context.budget == {} };
`)
	req := Request{
		Principal: principal(),
		Action:    "tool_call",
		Resource:  target("refunds.draft_refund", "tool_call", "medium"),
		Time:      time.Unix(1795655321, 0).In(time.FixedZone("x", 5*3600)),
		Budget:    map[string]int64{"agent_remaining": 3, "tenant_remaining": 90},
		Payload: map[string]any{
			"order_id": "ord_123", "amount_cents": json.Number("2500"), "rate": 0.25, "urgent": true,
			"tags": []any{"vip", "vip", "new"}, "meta": map[string]any{"channel": "email"}, "skipped": nil,
		},
	}
	got := set.Decide(req)
	if !got.Allow || !slices.Equal(got.PolicyIDs, []string{"mapping"}) {
		t.Errorf("Decide(content) = %+v; want allow by mapping", got)
	}
	if len(got.Errors) != 1 || got.Errors[0] != "payload.skipped: null has no Cedar value; field omitted" {
		t.Errorf("Decide(content).Errors = %q; want the null note only", got.Errors)
	}
	got = set.Decide(Request{Principal: principal(), Action: "read", Resource: target("docs", "read", "low"), Time: t0})
	if !got.Allow || len(got.Errors) != 0 {
		t.Errorf("Decide(authorize) = %+v; want allow without errors", got)
	}
}

func TestPayloadNumbers(t *testing.T) {
	dec := func(s string) cedar.Value {
		d, err := types.ParseDecimal(s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	tests := []struct {
		name string
		in   any
		want cedar.Value // nil: omitted
	}{
		{"float/integral", float64(2500), cedar.Long(2500)},
		{"float/negative integral", float64(-7), cedar.Long(-7)},
		{"float/decimal", 12.5, dec("12.5")},
		{"float/tenth", 0.1, dec("0.1")},
		{"float/four digits", -1.2345, dec("-1.2345")},
		{"float/five digits", 1.23456, nil},
		{"float/beyond int64", 1e19, nil},
		{"float/largest exact", float64(1 << 62), cedar.Long(1 << 62)},
		{"number/int", json.Number("2500"), cedar.Long(2500)},
		{"number/trailing zeros", json.Number("2500.000"), cedar.Long(2500)},
		{"number/decimal", json.Number("12.3400"), dec("12.34")},
		{"number/negative fraction", json.Number("-0.5"), dec("-0.5")},
		{"number/exponent", json.Number("1e3"), cedar.Long(1000)},
		{"number/exponent fraction", json.Number("125e-2"), dec("1.25")},
		{"number/huge int", json.Number("99999999999999999999"), nil},
		{"number/out of decimal range", json.Number("1000000000000000.5"), nil},
		{"number/too precise", json.Number("0.00001"), nil},
		{"number/garbage", json.Number("12abc"), nil},
		{"int", 42, cedar.Long(42)},
		{"bool", true, cedar.True},
		{"null", nil, nil},
		{"unsupported", struct{}{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var notes []string
			got, why := toValue(tt.in, 1, "f", &notes)
			if tt.want == nil {
				if why == "" {
					t.Errorf("toValue(%v) = %v; want omitted", tt.in, got)
				}
				return
			}
			if why != "" || !tt.want.Equal(got) {
				t.Errorf("toValue(%v) = %v, %q; want %v", tt.in, got, why, tt.want)
			}
		})
	}
}

func TestPayloadDepthBound(t *testing.T) {
	var v any = "leaf"
	for range maxPayloadDepth + 2 {
		v = map[string]any{"n": v}
	}
	var notes []string
	_, _ = payloadRecord(map[string]any{"deep": v}, &notes)
	if len(notes) != 1 || notes[0] != "payload.deep: inside: nested deeper than 8; field omitted" {
		t.Errorf("notes = %q; want one depth note for payload.deep", notes)
	}
}

// TestShortMessage: a Cedar evaluation error is reduced to its kind, from
// a fixed list, and an attribute name only where it comes from the
// policy text; cedar-go quotes some request values and writes others
// bare (an IP address it could not parse, a datetime's character).
func TestShortMessage(t *testing.T) {
	tests := []struct{ in, want string }{
		{"record does not have the attribute `amount_cents`", "record does not have the attribute `amount_cents`"},
		{"integer overflow while attempting to multiply `424242` by `9223372036854775807`", "integer overflow"},
		{`error parsing decimal value: strconv.ParseInt: parsing "secret": invalid syntax`, "error parsing decimal value"},
		{"entity `Agent::\"U1\"` does not exist", "entity does not exist"},
		{"error parsing ip value: error parsing IP address SECRET-value 4111111111111111", "error parsing ip value"},
		{"error parsing datetime value: unexpected character S", "error parsing datetime value"},
		{"type error: expected long, got string", "type error: expected long, got string"},
		{"`{\"secret\": 1}` does not have the attribute `x`", "does not have the attribute `x`"},
		{"record does not have the attribute `SECRET value`", "record does not have an attribute"},
		{"SECRET-value is not something cedar says", "evaluation error"},
		{"unterminated `secret", "evaluation error"},
		{strings.Repeat("x", 300), "evaluation error"},
	}
	for _, tt := range tests {
		if got := shortMessage(tt.in); got != tt.want {
			t.Errorf("shortMessage(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

// TestDemoPolicies runs the demo scenarios against internal/devenv/material/policies.
func TestDemoPolicies(t *testing.T) {
	files, _ := filepath.Glob("../../internal/devenv/material/policies/*.cedar")
	set, err := Load(files...)
	if err != nil {
		t.Fatal(err)
	}
	refund := target("refunds.draft_refund", "tool_call", "medium")
	tests := []struct {
		name         string
		req          Request
		wantAllow    bool
		wantApproval bool
		wantIDs      []string
	}{
		{"refund/authorize", Request{Principal: principal(), Action: "tool_call", Resource: refund}, true, false, []string{"base.same_tenant_kind"}},
		{"refund/content small", Request{Principal: principal(), Action: "tool_call", Resource: refund, Payload: map[string]any{"amount_cents": float64(2500)}},
			true, false, []string{"base.same_tenant_kind"}},
		{"refund/content too big", Request{Principal: principal(), Action: "tool_call", Resource: refund, Payload: map[string]any{"amount_cents": float64(250000)}},
			false, false, []string{"refunds.max_amount"}},
		{"refund/not support", Request{Principal: Principal{Agent: "U2", Tenant: "tenant_a", Service: "marketing"}, Action: "tool_call", Resource: refund},
			false, false, []string{"refunds.support_only"}},
		{"high risk/approval", Request{Principal: principal(), Action: "tool_call", Resource: target("payments.send", "tool_call", "high")},
			true, true, []string{"base.high_risk_approval"}},
		{"kind mismatch/default deny", Request{Principal: principal(), Action: "read", Resource: refund}, false, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Time = t0
			got := set.Decide(tt.req)
			if got.Allow != tt.wantAllow || got.Approval != tt.wantApproval || !slices.Equal(got.PolicyIDs, tt.wantIDs) {
				t.Errorf("Decide() = %+v; want allow=%v approval=%v ids=%q", got, tt.wantAllow, tt.wantApproval, tt.wantIDs)
			}
		})
	}
}

// TestAttrCacheNeverStale changes one attribute at a time for the same
// agent and target: each change must reach the decision.
func TestAttrCacheNeverStale(t *testing.T) {
	set := mustParse(t, `
@id("p") permit (principal, action, resource)
when { principal.scopes.contains("x:y") && principal.service == "svc" && principal.issuer == "I" && resource.risk == "low" && resource.kind == "read" };
`)
	p := Principal{Agent: "U", Tenant: "t", Service: "svc", Issuer: "I", Scopes: []string{"x:y"}}
	r := Resource{Target: "tg", Tenant: "t", Kind: "read", Risk: "low"}
	decide := func(p Principal, r Resource) bool {
		return set.Decide(Request{Principal: p, Action: "read", Resource: r}).Allow
	}
	if !decide(p, r) {
		t.Fatal("baseline denied")
	}
	scopes := []string{"x:y"}
	p.Scopes = scopes
	decide(p, r)
	scopes[0] = "changed" // mutate the slice the cache saw
	if decide(p, r) {
		t.Error("mutated scopes slice: still allowed")
	}
	p.Scopes = []string{"x:y"}
	changes := []struct {
		name string
		p    Principal
		r    Resource
	}{
		{"service", Principal{Agent: "U", Tenant: "t", Service: "other", Issuer: "I", Scopes: p.Scopes}, r},
		{"issuer", Principal{Agent: "U", Tenant: "t", Service: "svc", Issuer: "J", Scopes: p.Scopes}, r},
		{"scopes", Principal{Agent: "U", Tenant: "t", Service: "svc", Issuer: "I", Scopes: []string{"x:z"}}, r},
		{"risk", p, Resource{Target: "tg", Tenant: "t", Kind: "read", Risk: "high"}},
		{"kind", p, Resource{Target: "tg", Tenant: "t", Kind: "tool_call", Risk: "low"}},
	}
	for _, c := range changes {
		if decide(c.p, c.r) {
			t.Errorf("changed %s: still allowed", c.name)
		}
		if !decide(p, r) {
			t.Errorf("after %s: baseline denied", c.name)
		}
	}
	for i := range maxCachedEntities + 10 {
		decide(Principal{Agent: "U" + strconv.Itoa(i), Tenant: "t", Service: "svc", Issuer: "I", Scopes: p.Scopes}, r)
	}
	if n := len(set.attrs.principals); n > maxCachedEntities {
		t.Errorf("principal cache holds %d entries; want at most %d", n, maxCachedEntities)
	}
	// One target name in two tenants: two entries, each used.
	rb := Resource{Target: "tg", Tenant: "u", Kind: "read", Risk: "low"}
	set.attrs.resource(r)
	set.attrs.resource(rb)
	if len(set.attrs.resources) < 2 {
		t.Errorf("resource cache holds %d entries after one target in two tenants; want both", len(set.attrs.resources))
	}
}

// TestAuthorizeContextCacheFollowsTheClock: the cached authorize-stage
// context is only reused within its second.
func TestAuthorizeContextCacheFollowsTheClock(t *testing.T) {
	at := func(ts time.Time) bool {
		set := mustParse(t, fmt.Sprintf(`permit (principal, action, resource) when { context.time == %d };`, ts.Unix()))
		return set.Decide(Request{Principal: principal(), Action: "read", Resource: target("x", "read", "low"), Time: ts}).Allow
	}
	for _, ts := range []time.Time{t0, t0.Add(400 * time.Millisecond), t0.Add(time.Second), t0, t0.Add(-time.Hour)} {
		if !at(ts) {
			t.Errorf("at %v the context's time was not %d", ts, ts.Unix())
		}
	}
}

// TestErroringApprovalPermitAsksForApproval: a permit that asks for
// approval above an amount errors, and Cedar skips it, when the amount is
// of a type it cannot compare (a string): another permit allows the
// request, and it goes to approval, not straight through. An amount
// Cedar cannot hold (past int64, more than four decimals) is left out of
// the policy's view, and a payload with a field left out is denied
// whole (BuiltinPayloadUnrepresentable) when a policy that takes the
// request in reads the payload. An amount under the threshold needs no
// approval.
func TestErroringApprovalPermitAsksForApproval(t *testing.T) {
	set, err := Parse("approval.cedar", []byte(`@id("base")
permit (principal, action == Action::"tool_call", resource) when { principal.tenant == resource.tenant };
@id("big_needs_approval") @approval("required")
permit (principal, action == Action::"tool_call", resource == Target::"refunds.draft_refund")
when { context has payload && context.payload.amount_cents > 50000 };
`))
	if err != nil {
		t.Fatal(err)
	}
	refund := target("refunds.draft_refund", "tool_call", "medium")
	for _, tt := range []struct {
		amount                  any
		wantAllow, wantApproval bool
	}{
		{json.Number("60000"), true, true},
		{json.Number("2500"), true, false},
		{"60000", true, true},
		{json.Number("1e19"), false, false},
		{json.Number("10000000000000000000"), false, false},
		{json.Number("60000.00001"), false, false},
	} {
		got := set.Decide(Request{Principal: principal(), Action: "tool_call", Resource: refund, Time: t0,
			Payload: map[string]any{"amount_cents": tt.amount}})
		if got.Allow != tt.wantAllow || got.Approval != tt.wantApproval {
			t.Errorf("amount %v: allow=%v approval=%v (%v); want allow=%v, approval=%v", tt.amount, got.Allow, got.Approval, got.PolicyIDs, tt.wantAllow, tt.wantApproval)
		}
		if !tt.wantAllow && !slices.Equal(got.PolicyIDs, []string{BuiltinPayloadUnrepresentable}) {
			t.Errorf("amount %v: denied by %v; want %s", tt.amount, got.PolicyIDs, BuiltinPayloadUnrepresentable)
		}
	}
}
