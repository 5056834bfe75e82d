package exchange

import (
	"slices"
	"strings"
	"unicode"

	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects/reason"
)

// maxActDepth bounds a nested act chain.
const maxActDepth = 8

// maxScopes is the most scopes identity.Issue puts in one credential.
// narrow and Config.Validate keep a credential's scopes within it, so
// such a request is refused with a typed reason before its request id is
// recorded, not left for Issue to refuse.
const maxScopes = identity.MaxScopes

// tenant decides the tenant a verified token speaks for, and checks that
// the IdP may speak for it and that it is the one requested (if any).
func (p *idp) tenant(t *token, requested string) (string, error) {
	tenant := p.cfg.Tenant
	if p.cfg.TenantClaim != "" {
		v, _ := lookup(t.Claims, p.cfg.TenantClaim)
		s, ok := v.(string)
		if !ok || s == "" {
			return "", reason.Deny(reason.ExchangeNoScope, "idp %s: claim %s holds no tenant", p.cfg.Name, p.cfg.TenantClaim)
		}
		if p.cfg.TenantMap != nil {
			if s, ok = p.cfg.TenantMap[s]; !ok {
				return "", reason.Deny(reason.ExchangeNoScope, "idp %s: claim %s value is not in tenant_map", p.cfg.Name, p.cfg.TenantClaim)
			}
		}
		tenant = s
	}
	if !identity.ValidTenant(tenant) || !slices.Contains(p.cfg.Tenants, tenant) {
		return "", reason.Deny(reason.ExchangeUntrustedIdP, "idp %s may not speak for tenant %.64q", p.cfg.Name, tenant)
	}
	if requested != "" && requested != tenant {
		return "", reason.Deny(reason.ExchangeUntrustedIdP, "idp %s token speaks for tenant %s, not %s", p.cfg.Name, tenant, requested)
	}
	return tenant, nil
}

// actors applies RFC 8693 §4.1 and §4.4 to a verified token for agent
// (the requester's public key) and returns the act chain, outermost
// actor first. See the package doc for the rules.
func (p *idp) actors(t *token, agent, audience string) ([]string, error) {
	if v, ok := t.Claims["may_act"]; ok {
		m, isObj := v.(map[string]any)
		if !isObj {
			return nil, reason.Deny(reason.ExchangeActorDenied, "idp %s: may_act is not an object", p.cfg.Name)
		}
		for k, mv := range m {
			s, _ := mv.(string)
			switch {
			case k == "sub" && s == agent:
			case k == "iss" && s == audience:
			default:
				return nil, reason.Deny(reason.ExchangeActorDenied, "idp %s: may_act does not name this agent key (member %.32q)", p.cfg.Name, k)
			}
		}
		if _, ok := m["sub"]; !ok {
			return nil, reason.Deny(reason.ExchangeActorDenied, "idp %s: may_act has no sub", p.cfg.Name)
		}
	}
	v, ok := t.Claims["act"]
	if !ok {
		return nil, nil
	}
	if !p.cfg.AllowAct {
		return nil, reason.Deny(reason.ExchangeActorDenied, "idp %s: token is already delegated (act) and allow_act is off", p.cfg.Name)
	}
	var chain []string
	for v != nil {
		m, isObj := v.(map[string]any)
		if !isObj {
			return nil, reason.Deny(reason.ExchangeActorDenied, "idp %s: act is not an object", p.cfg.Name)
		}
		sub, _ := m["sub"].(string)
		if sub == "" || len(sub) > 256 {
			return nil, reason.Deny(reason.ExchangeActorDenied, "idp %s: act without a sub", p.cfg.Name)
		}
		// The actor's principal is a credential claim: identity.Issue
		// refuses one holding a control character (C0, DEL or C1).
		if !identity.ValidPrincipal(Principal(t.Issuer, sub)) {
			return nil, reason.Deny(reason.ExchangeActorDenied, "idp %s: act sub holds control characters", p.cfg.Name)
		}
		if len(chain) == maxActDepth {
			return nil, reason.Deny(reason.ExchangeActorDenied, "idp %s: act chain deeper than %d", p.cfg.Name, maxActDepth)
		}
		chain = append(chain, sub)
		v = m["act"]
	}
	return chain, nil
}

// actorPrincipals are the principals of t's act chain (actors, from
// the actors method), as the token's IdP names them: an actor is an
// identity of the token's issuer (an act's own iss is not trusted to
// name another IdP's identity).
func actorPrincipals(t *token, actors []string) []string {
	var out []string
	for _, sub := range actors {
		out = append(out, Principal(t.Issuer, sub))
	}
	return out
}

// grant returns the union of the scopes of every rule t matches for
// tenant, sorted and without duplicates, and the ids ("idp.rule") of
// those rules.
func (p *idp) grant(t *token, tenant string) (scopes, rules []string) {
	for _, r := range p.cfg.Rules {
		if len(r.Tenants) > 0 && !slices.Contains(r.Tenants, tenant) {
			continue
		}
		v, ok := lookup(t.Claims, r.Claim)
		if !ok || !r.matches(v) {
			continue
		}
		scopes = append(scopes, r.Scopes...)
		rules = append(rules, p.cfg.Name+"."+r.ID)
	}
	slices.Sort(scopes)
	return slices.Compact(scopes), rules
}

func (r *Rule) matches(v any) bool {
	if r.Equals != "" {
		s, ok := v.(string)
		return ok && s == r.Equals
	}
	switch x := v.(type) {
	case string:
		// Words are separated by U+0020 alone, the scope claim's one
		// delimiter: strings.Fields would also split at a tab or a
		// no-break space, inside what the IdP holds as one value.
		return slices.Contains(strings.Split(x, " "), r.Contains)
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok && s == r.Contains {
				return true
			}
		}
	}
	return false
}

// narrow returns the scopes of the credential: all of granted when
// nothing is requested, else exactly the requested scopes, each of which
// must be covered by a granted one, at most maxScopes of them. It never
// widens.
func narrow(granted, requested []string) ([]string, error) {
	if len(requested) == 0 {
		return granted, nil
	}
	if len(requested) > maxScopes {
		return nil, reason.Deny(reason.ExchangeRequestInvalid, "%d scopes requested; a credential holds at most %d", len(requested), maxScopes)
	}
	out := make([]string, 0, len(requested))
	for _, s := range requested {
		if !validScope(s) {
			return nil, reason.Deny(reason.ExchangeRequestInvalid, "requested scope %.64q is not a scope", s)
		}
		if !slices.ContainsFunc(granted, func(g string) bool { return covers(g, s) }) {
			return nil, reason.Deny(reason.ExchangeScopeDenied, "requested scope %s is not granted by the mapping", s)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// covers reports whether granted scope g includes s, using the pattern
// rule of identity.Credential.HasScope extended to requested patterns:
// "approve:*" covers "approve:refunds.*" and "approve:refunds.x", never
// the other way round.
func covers(g, s string) bool {
	if g == s {
		return true
	}
	n := len(g)
	if n < 2 || g[n-1] != '*' || (g[n-2] != '.' && g[n-2] != ':') {
		return false
	}
	prefix := g[:n-1]
	return len(s) > len(prefix) && strings.HasPrefix(s, prefix)
}

// credentialName is the credential's human name, "exchange <idp> <sub>"
// and " via <actor>" per act chain element, without control characters,
// at most 256 bytes.
func credentialName(idpName, sub string, actors []string) string {
	name := "exchange " + idpName + " " + sub
	for _, a := range actors {
		name += " via " + a
	}
	s := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return -1
		}
		return r
	}, name)
	for len(s) > 256 {
		_, size := lastRune(s)
		s = s[:len(s)-size]
	}
	return s
}

func lastRune(s string) (rune, int) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i]&0xC0 != 0x80 {
			return rune(s[i]), len(s) - i
		}
	}
	return 0, 1
}
