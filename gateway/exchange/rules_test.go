package exchange

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/agentgw/agentgw/subjects/reason"
)

func TestCovers(t *testing.T) {
	tests := []struct {
		g, s string
		want bool
	}{
		{"refund:draft", "refund:draft", true},
		{"approve:*", "approve:refunds.x", true},
		{"approve:*", "approve:refunds.*", true},
		{"approve:refunds.*", "approve:refunds.*", true},
		{"approve:refunds.*", "approve:*", false},
		{"approve:refunds.*", "approve:refunds", false},
		{"approve:refunds.*", "approve:refunds_eu.x", false},
		{"refund:draft", "refund:*", false},
		{"*", "anything", false},
	}
	for _, tt := range tests {
		if got := covers(tt.g, tt.s); got != tt.want {
			t.Errorf("covers(%q, %q) = %v; want %v", tt.g, tt.s, got, tt.want)
		}
	}
}

func TestNarrow(t *testing.T) {
	granted := []string{"approve:refunds.*", "kb:read", "refund:draft"}
	tests := []struct {
		name      string
		requested []string
		want      []string
		wantErr   error
	}{
		{"allow/nothing_requested_gets_all", nil, granted, nil},
		{"allow/subset", []string{"kb:read"}, []string{"kb:read"}, nil},
		{"allow/under_pattern", []string{"approve:refunds.eu"}, []string{"approve:refunds.eu"}, nil},
		{"allow/duplicates_folded", []string{"kb:read", "kb:read"}, []string{"kb:read"}, nil},
		{"deny/beyond", []string{"kb:read", "pay:send"}, nil, reason.ExchangeScopeDenied},
		{"deny/wider_pattern", []string{"approve:*"}, nil, reason.ExchangeScopeDenied},
		{"deny/not_a_scope", []string{"kb read*"}, nil, reason.ExchangeRequestInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := narrow(granted, tt.requested)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && !slices.Equal(got, tt.want)) {
				t.Errorf("narrow(%v) = %v, %v; want %v, %v", tt.requested, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestNarrowAtMostMaxScopes: a request for more scopes than
// identity.Issue puts in a credential, every one granted, is refused as
// exchange_request_invalid (before its request id is recorded), not
// left for Issue to refuse.
func TestNarrowAtMostMaxScopes(t *testing.T) {
	granted := []string{"approve:refunds.*", "kb:read"}
	want := scopesUnder("approve:refunds.", maxScopes)
	if got, err := narrow(granted, want); err != nil || !slices.Equal(got, want) {
		t.Errorf("narrow(%d scopes) = %d scopes, %v; want all %d", len(want), len(got), err, len(want))
	}
	over := scopesUnder("approve:refunds.", maxScopes+1)
	if got, err := narrow(granted, over); !errors.Is(err, reason.ExchangeRequestInvalid) {
		t.Errorf("narrow(%d scopes) = %d scopes, %v; want %s", len(over), len(got), err, reason.ExchangeRequestInvalid)
	}
}

// scopesUnder is n distinct scopes, prefix0000, prefix0001, …, sorted.
func scopesUnder(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return out
}

func TestGrantAndTenant(t *testing.T) {
	p := &idp{cfg: IdPConfig{
		Name: "corp", Tenants: []string{"tenant_a", "tenant_b"}, TenantClaim: "org",
		TenantMap: map[string]string{"acme": "tenant_a", "acme-eu": "tenant_b"},
		Rules: []Rule{
			{ID: "billing", Claim: "groups", Contains: "billing-agents", Scopes: []string{"refund:draft", "kb:read"}},
			{ID: "approvers", Claim: "realm_access.roles", Contains: "approver", Tenants: []string{"tenant_a"}, Scopes: []string{"approve:refunds.*"}},
			{ID: "readers", Claim: "scope", Contains: "kb.read", Scopes: []string{"kb:read"}},
			{ID: "bot", Claim: "azp", Equals: "billing-bot", Scopes: []string{"refund:draft"}},
		},
	}}
	tok := &token{Claims: map[string]any{
		"org": "acme-eu", "groups": []any{"staff", "billing-agents"}, "azp": "billing-bot",
		"realm_access": map[string]any{"roles": []any{"approver"}}, "scope": "openid kb.read",
	}}
	tenant, err := p.tenant(tok, "")
	if err != nil || tenant != "tenant_b" {
		t.Fatalf("tenant = %q, %v; want tenant_b", tenant, err)
	}
	scopes, rules := p.grant(tok, tenant)
	// approvers is restricted to tenant_a.
	if want := []string{"kb:read", "refund:draft"}; !slices.Equal(scopes, want) {
		t.Errorf("scopes = %v; want %v", scopes, want)
	}
	if want := []string{"corp.billing", "corp.readers", "corp.bot"}; !slices.Equal(rules, want) {
		t.Errorf("rules = %v; want %v", rules, want)
	}
	if _, err := p.tenant(tok, "tenant_a"); !errors.Is(err, reason.ExchangeUntrustedIdP) {
		t.Errorf("tenant(request tenant_a) = %v; want %s", err, reason.ExchangeUntrustedIdP)
	}
	tok.Claims["org"] = "globex"
	if _, err := p.tenant(tok, ""); !errors.Is(err, reason.ExchangeNoScope) {
		t.Errorf("tenant(unmapped org) = %v; want %s", err, reason.ExchangeNoScope)
	}
}

func TestActors(t *testing.T) {
	const agent = "UAGENT"
	tests := []struct {
		name     string
		allowAct bool
		claims   map[string]any
		want     []string
		wantErr  error
	}{
		{"allow/none", false, map[string]any{}, nil, nil},
		{"allow/may_act_agent", false, map[string]any{"may_act": map[string]any{"sub": agent}}, nil, nil},
		{"allow/may_act_agent_and_gateway", false, map[string]any{"may_act": map[string]any{"sub": agent, "iss": "gw"}}, nil, nil},
		{"deny/may_act_other", false, map[string]any{"may_act": map[string]any{"sub": "UOTHER"}}, nil, reason.ExchangeActorDenied},
		{"deny/may_act_other_iss", false, map[string]any{"may_act": map[string]any{"sub": agent, "iss": "idp"}}, nil, reason.ExchangeActorDenied},
		{"deny/may_act_not_object", false, map[string]any{"may_act": agent}, nil, reason.ExchangeActorDenied},
		{"deny/act_off", false, map[string]any{"act": map[string]any{"sub": "svc"}}, nil, reason.ExchangeActorDenied},
		{"allow/act_chain", true, map[string]any{"act": map[string]any{"sub": "svc", "act": map[string]any{"sub": "user-agent"}}}, []string{"svc", "user-agent"}, nil},
		{"deny/act_without_sub", true, map[string]any{"act": map[string]any{"client_id": "svc"}}, nil, reason.ExchangeActorDenied},
		// An actor's principal that identity.Issue would refuse: C0, DEL
		// and C1 control characters, at any depth of the chain.
		{"deny/act_sub_c0", true, map[string]any{"act": map[string]any{"sub": "svc\x00"}}, nil, reason.ExchangeActorDenied},
		{"deny/act_sub_del", true, map[string]any{"act": map[string]any{"sub": "svc\x7f"}}, nil, reason.ExchangeActorDenied},
		{"deny/act_sub_c1", true, map[string]any{"act": map[string]any{"sub": "actor\u0090"}}, nil, reason.ExchangeActorDenied},
		{"deny/nested_act_sub_nel", true, map[string]any{"act": map[string]any{"sub": "svc", "act": map[string]any{"sub": "user\u0085agent"}}}, nil, reason.ExchangeActorDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &idp{cfg: IdPConfig{Name: "corp", AllowAct: tt.allowAct}}
			got, err := p.actors(&token{Issuer: "https://login.example.com", Claims: tt.claims}, agent, "gw")
			if !errors.Is(err, tt.wantErr) || !slices.Equal(got, tt.want) {
				t.Errorf("actors(%v) = %v, %v; want %v, %v", tt.claims, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestSeenSet(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	s := newSeenSet(func() time.Time { return now }, 50*time.Second, time.Minute, 2)
	if r := s.add("a", "p", t0); r != seenAdded {
		t.Fatalf("first add = %v", r)
	}
	now = t0.Add(49 * time.Second)
	if r := s.add("a", "p", t0); r != seenReplay {
		t.Errorf("replay within window = %v; want seenReplay", r)
	}
	s.add("b", "q", now)
	if r := s.add("c", "q", now); r != seenFull {
		t.Errorf("add to a full set = %v; want seenFull", r)
	}
	now = t0.Add(time.Minute)
	if r := s.add("a", "p", now); r != seenAdded {
		t.Errorf("add after the window = %v; want the expired id forgotten", r)
	}
	if r := s.add("z", "p", t0); r != seenStale {
		t.Errorf("add of a request issued a minute ago = %v; want seenStale", r)
	}
}

// TestSeenSetClockNeverGoesBack: a request whose clock reading is older
// than one already used (a slow verification) is judged at the latest
// time: it is stale there, and so cannot be recorded after its original
// was forgotten.
func TestSeenSetClockNeverGoesBack(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	s := newSeenSet(func() time.Time { return now }, 50*time.Second, time.Minute, 10)
	s.add("orig", "p", t0)
	now = t0.Add(65 * time.Second) // another request forgets orig
	s.add("other", "q", now)
	now = t0.Add(30 * time.Second) // a reading from before
	if r := s.add("orig", "p", t0); r != seenStale {
		t.Errorf("replay judged at an earlier reading = %v; want seenStale", r)
	}
}

// TestSeenSetShare: one principal can take at most its share; others
// still get in.
func TestSeenSetShare(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	s := newSeenSet(func() time.Time { return t0 }, 50*time.Second, time.Minute, 6400)
	share := shareOf(6400)
	for i := range share {
		if r := s.add(fmt.Sprint("m", i), "mallory", t0); r != seenAdded {
			t.Fatalf("add %d = %v", i, r)
		}
	}
	if r := s.add("m-more", "mallory", t0); r != seenOverShare {
		t.Errorf("add past the share = %v; want seenOverShare", r)
	}
	if r := s.add("v", "victim", t0); r != seenAdded {
		t.Errorf("another principal's add = %v; want seenAdded", r)
	}
}

func TestCredentialName(t *testing.T) {
	long := string(make([]byte, 300))
	if n := credentialName("corp", "sub\x00\n"+long, nil); len(n) > 256 {
		t.Errorf("len(credentialName) = %d; want ≤ 256", len(n))
	}
	if n := credentialName("corp", "alice", []string{"svc"}); n != "exchange corp alice via svc" {
		t.Errorf("credentialName = %q", n)
	}
}

// TestContainsSplitsAtSpacesOnly: a contains rule matches a word of a
// string claim separated by U+0020, the scope claim's delimiter, and not
// a part of a value split at other white space (a tab, a no-break or
// ideographic space), which the IdP holds as one word.
func TestContainsSplitsAtSpacesOnly(t *testing.T) {
	r := &Rule{ID: "admins", Claim: "scope", Contains: "admin", Scopes: []string{"approve:*"}}
	for _, v := range []string{"read admin", "admin", "read  admin ", "admin read"} {
		if !r.matches(v) {
			t.Errorf("matches(%q) = false; want true", v)
		}
	}
	for _, v := range []string{"read\u00a0admin", "read\u3000admin", "read\tadmin", "read\nadmin", "administrators", ""} {
		if r.matches(v) {
			t.Errorf("matches(%q) = true; want false", v)
		}
	}
}
