package oidc_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/goleak"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/exchange"
	"github.com/agentgw/agentgw/gateway/exchange/protocol"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/schemas"
	"github.com/agentgw/agentgw/subjects/reason"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestExchangeClientCredentials: a client-credentials access token from a
// real OpenID provider is exchanged for a credential that the gateway's
// own verifier accepts for the tenant, with exactly the mapped scopes.
func TestExchangeClientCredentials(t *testing.T) {
	h := newHarness(t)
	h.serve()
	tok := h.token(h.corp, "billing-bot", "s3cret-billing")

	got, err := h.exchange(tok, nil)
	if err != nil {
		t.Fatalf("Exchange = %v; want a credential", err)
	}
	cred, err := h.verifier().Verify(got.Token.Reveal(), h.clock.Now())
	if err != nil {
		t.Fatalf("identity.Verifier.Verify(exchanged) = %v; want accepted", err)
	}
	issA, _ := h.issuerA.PublicKey()
	if cred.Tenant != "tenant_a" || cred.Subject != h.agent.pub || cred.XKey != h.agent.xkey || cred.Issuer != issA {
		t.Errorf("credential = tenant %s subject %s xkey %s issuer %s; want tenant_a, the agent's keys, issuer A", cred.Tenant, cred.Subject, cred.XKey, cred.Issuer)
	}
	if want := h.corp.Issuer + "#billing-bot"; cred.Principal != want {
		t.Errorf("principal = %q; want %q (IdP issuer # subject)", cred.Principal, want)
	}
	if want := []string{"kb:read", "refund:draft"}; !slices.Equal(cred.Scopes, want) {
		t.Errorf("scopes = %v; want %v", cred.Scopes, want)
	}
	if life := cred.Expires.Sub(cred.IssuedAt); life <= 0 || life > 5*time.Minute {
		t.Errorf("lifetime = %v; want capped by the IdP token's 5m", life)
	}
	if !cred.HasScope("refund:draft") || cred.HasScope("approve:refunds.x") {
		t.Error("HasScope disagrees with the mapping")
	}

	ev := h.lastEvent()
	if ev.Kind != audit.KindCredentialExchange || ev.Reason != "" || ev.IdPIssuer != h.corp.Issuer || ev.IdPSubject != "billing-bot" ||
		ev.Agent != h.agent.pub || ev.CredentialID != cred.ID || !slices.Equal(ev.Rules, []string{"corp.billing"}) || ev.Tenant != "tenant_a" {
		t.Errorf("audit event = %+v; want the grant with IdP issuer, subject, agent, jti and rule", ev)
	}
	checkEventSchema(t, ev)
	for _, s := range []string{tok, got.Token.Reveal()} {
		b, _ := json.Marshal(ev)
		if strings.Contains(string(b), s) {
			t.Error("the audit event holds a token")
		}
	}

	// Narrowing is allowed: the credential then holds exactly what was asked.
	got, err = h.exchange(tok, func(c *client.ExchangeConfig) { c.Scopes = []string{"kb:read"}; c.Tenant = "tenant_a" })
	if err != nil || !slices.Equal(got.Scopes, []string{"kb:read"}) {
		t.Errorf("Exchange(scopes kb:read) = %v, %v; want exactly kb:read", got, err)
	}
}

func checkEventSchema(t *testing.T, ev audit.Event) {
	t.Helper()
	s, err := schemas.Compile(schemas.AuditEvent)
	must(t, err)
	b, err := json.Marshal(ev)
	must(t, err)
	if err := schemas.Validate(s, b); err != nil {
		t.Errorf("audit event does not match its schema: %v", err)
	}
}

// TestExchangeRefusals: each refusal is a named case with its reason.
func TestExchangeRefusals(t *testing.T) {
	h := newHarness(t)
	h.serve()
	billing := h.token(h.corp, "billing-bot", "s3cret-billing")
	signed := h.signBy(h.agent.kp)
	other := newAgent(t)

	tests := []struct {
		name  string
		token func() string
		req   func(r *protocol.Request)
		sign  func([]byte) string
		want  reason.Code
	}{
		{name: "deny/untrusted_idp_for_tenant", want: reason.ExchangeUntrustedIdP,
			// The partner IdP asserts org=tenant_a but is bound to tenant_b only.
			token: func() string { return h.token(h.partner, "partner-bot", "s3cret-partner") }},
		{name: "deny/idp_not_configured", want: reason.ExchangeUntrustedIdP,
			token: func() string { return h.token(h.rogue, "billing-bot", "s3cret-billing") }},
		{name: "deny/tenant_not_the_tokens", want: reason.ExchangeUntrustedIdP,
			token: func() string { return billing }, req: func(r *protocol.Request) { r.Tenant = "tenant_b" }},
		{name: "deny/wrong_audience", want: reason.ExchangeTokenAudience,
			token: func() string { return h.token(h.corp, "other-api-bot", "s3cret-other") }},
		{name: "deny/alg_none", want: reason.ExchangeTokenInvalid,
			token: func() string { return noneToken(h) }},
		{name: "deny/hs256_with_public_jwk", want: reason.ExchangeTokenInvalid,
			token: func() string { return hs256Token(h, h.corp.PublicJWK()) }},
		{name: "deny/hs256_with_public_pem", want: reason.ExchangeTokenInvalid,
			token: func() string { return hs256Token(h, publicPEM(t, h)) }},
		{name: "deny/tampered_claims", want: reason.ExchangeTokenInvalid,
			token: func() string { return tamper(billing, `"org":"tenant_b"`) }},
		{name: "deny/proof_missing", want: reason.ExchangeProofInvalid,
			token: func() string { return billing }, sign: func([]byte) string { return "" }},
		{name: "deny/proof_by_another_key", want: reason.ExchangeProofInvalid,
			token: func() string { return billing }, sign: h.signBy(other.kp)},
		{name: "deny/proof_for_another_key", want: reason.ExchangeProofInvalid,
			// Signed by the harness agent, but asks for a credential for other.
			token: func() string { return billing }, req: func(r *protocol.Request) { r.Agent = other.pub }},
		{name: "deny/proof_stale", want: reason.ExchangeProofStale,
			token: func() string { return billing }, req: func(r *protocol.Request) {
				r.IssuedAt = h.clock.Now().Add(-10 * time.Minute).UTC().Format(time.RFC3339)
			}},
		{name: "deny/claims_map_to_no_scope", want: reason.ExchangeNoScope,
			token: func() string { return h.token(h.corp, "marketing-bot", "s3cret-marketing") }},
		{name: "deny/scopes_beyond_mapping", want: reason.ExchangeScopeDenied,
			token: func() string { return billing }, req: func(r *protocol.Request) { r.Scope = "kb:read pay:send" }},
		{name: "deny/pattern_beyond_mapping", want: reason.ExchangeScopeDenied,
			token: func() string { return billing }, req: func(r *protocol.Request) { r.Scope = "refund:*" }},
		{name: "deny/may_act_names_another_agent", want: reason.ExchangeActorDenied,
			token: func() string { return signedBy(t, h, map[string]any{"may_act": map[string]any{"sub": other.pub}}) }},
		{name: "deny/act_chain_not_allowed", want: reason.ExchangeActorDenied,
			token: func() string { return signedBy(t, h, map[string]any{"act": map[string]any{"sub": "some-service"}}) }},
		{name: "deny/expired_crafted", want: reason.ExchangeTokenExpired,
			token: func() string {
				return signedBy(t, h, map[string]any{"iat": h.clock.Now().Add(-20 * time.Minute).Unix(), "exp": h.clock.Now().Add(-10 * time.Minute).Unix()})
			}},
		{name: "deny/other_gateway_audience", want: reason.ExchangeRequestInvalid,
			token: func() string { return billing }, req: func(r *protocol.Request) { r.Audience = "another-gateway" }},
		{name: "allow/may_act_names_this_agent", want: "",
			token: func() string { return signedBy(t, h, map[string]any{"may_act": map[string]any{"sub": h.agent.pub}}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sign := tt.sign
			if sign == nil {
				sign = signed
			}
			if got := h.raw(tt.token(), tt.req, sign); got != tt.want {
				t.Errorf("exchange = %q; want %q (audit detail: %s)", got, tt.want, h.lastEvent().Detail)
			}
			ev := h.lastEvent()
			t.Logf("reason %q detail: %s", ev.Reason, ev.Detail)
			if string(tt.want) != ev.Reason {
				t.Errorf("audit reason = %q; want %q", ev.Reason, tt.want)
			}
			checkEventSchema(t, ev)
		})
	}

	t.Run("deny/proof_replayed", func(t *testing.T) {
		body, err := protocol.Marshal(h.request(h.agent, billing))
		must(t, err)
		sig := signed(body)
		if got := h.send(body, sig); got != "" {
			t.Fatalf("first exchange = %q; want granted", got)
		}
		if got := h.send(body, sig); got != reason.ExchangeProofStale {
			t.Errorf("replayed exchange = %q; want %q", got, reason.ExchangeProofStale)
		}
	})

	t.Run("sdk/denial_is_typed", func(t *testing.T) {
		_, err := h.exchange(billing, func(c *client.ExchangeConfig) { c.Scopes = []string{"pay:send"} })
		if !errors.Is(err, reason.ExchangeScopeDenied) {
			t.Errorf("client.Exchange(pay:send) = %v; want errors.Is %s", err, reason.ExchangeScopeDenied)
		}
	})
}

// TestExchangeExpiredToken: a real token, presented after it expired.
func TestExchangeExpiredToken(t *testing.T) {
	h := newHarness(t)
	h.serve()
	tok := h.token(h.corp, "billing-bot", "s3cret-billing")
	if _, err := h.exchange(tok, nil); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	h.clock.Advance(10 * time.Minute) // the OP's access tokens live 5 minutes
	if _, err := h.exchange(tok, nil); !errors.Is(err, reason.ExchangeTokenExpired) {
		t.Errorf("Exchange(expired token) = %v; want %s", err, reason.ExchangeTokenExpired)
	}
}

// TestExchangeKeyRotation: after the IdP rotates its key, a token with the
// new kid is accepted without restart and the old kid is refused, both
// once an unknown kid has caused a refetch and, with no new kid ever
// presented, once keys_max_age has passed.
func TestExchangeKeyRotation(t *testing.T) {
	h := newHarness(t)
	h.serve()
	old := h.token(h.corp, "billing-bot", "s3cret-billing")
	oldKid := h.corp.KeyID()
	if _, err := h.exchange(old, nil); err != nil {
		t.Fatalf("RS256 token before rotation: %v", err)
	}

	must(t, h.corp.Rotate(jose.ES256))
	h.clock.Advance(6 * time.Second) // past keys_min_refresh (5s)
	fresh := h.token(h.corp, "billing-bot", "s3cret-billing")
	if kid := h.corp.KeyID(); kid == oldKid || kidOf(t, fresh) != kid {
		t.Fatalf("rotation did not change the kid (%s)", kid)
	}
	if _, err := h.exchange(fresh, nil); err != nil {
		t.Fatalf("Exchange(new ES256 kid) = %v; want accepted without restart", err)
	}
	// The old token was issued within the skew of that fetch, and no new
	// fetch is allowed yet: by the clocks alone its kid could be newer
	// than the keys, so it is not judged yet.
	if _, err := h.exchange(old, nil); !errors.Is(err, reason.ExchangeIdPUnavailable) {
		t.Errorf("Exchange(old kid after rotation, within keys_min_refresh) = %v; want %s", err, reason.ExchangeIdPUnavailable)
	}
	h.clock.Advance(6 * time.Second) // a refetch is allowed again: the old kid is still gone
	if _, err := h.exchange(old, nil); !errors.Is(err, reason.ExchangeTokenInvalid) {
		t.Errorf("Exchange(old kid, after refetch) = %v; want %s", err, reason.ExchangeTokenInvalid)
	}

	// Rotate again (EdDSA), present no new kid: the cached ES256 key is
	// dropped once keys_max_age (1m) has passed.
	must(t, h.corp.Rotate(jose.EdDSA))
	h.clock.Advance(61 * time.Second)
	if _, err := h.exchange(fresh, nil); !errors.Is(err, reason.ExchangeTokenInvalid) {
		t.Errorf("Exchange(ES256 kid withdrawn, keys past max age) = %v; want %s", err, reason.ExchangeTokenInvalid)
	}
	eddsa := h.token(h.corp, "billing-bot", "s3cret-billing")
	if _, err := h.exchange(eddsa, nil); err != nil {
		t.Errorf("Exchange(EdDSA kid) = %v; want accepted", err)
	}
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA})
	must(t, err)
	return jws.Signatures[0].Header.KeyID
}

// baseClaims are the claims of a valid billing token from corp.
func baseClaims(h *harness) map[string]any {
	now := h.clock.Now()
	return map[string]any{
		"iss": h.corp.Issuer, "sub": "billing-bot", "aud": []string{idpAudience},
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"groups": []string{"billing-agents"}, "org": "tenant_a",
	}
}

// signedBy signs base claims plus extra with corp's real current key.
func signedBy(t *testing.T, h *harness, extra map[string]any) string {
	t.Helper()
	c := baseClaims(h)
	for k, v := range extra {
		c[k] = v
	}
	tok, err := h.corp.Sign(c)
	must(t, err)
	return tok
}

func seg(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// noneToken is an unsigned token (alg "none") with valid claims.
func noneToken(h *harness) string {
	return seg(map[string]any{"alg": "none", "typ": "JWT"}) + "." + seg(baseClaims(h)) + "."
}

// hs256Token is the algorithm-confusion attack: HMAC-SHA256 keyed with
// bytes of the IdP's public key, naming the IdP's real kid.
func hs256Token(h *harness, secret []byte) string {
	in := seg(map[string]any{"alg": "HS256", "typ": "JWT", "kid": h.corp.KeyID()}) + "." + seg(baseClaims(h))
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func publicPEM(t *testing.T, h *harness) []byte {
	der, err := x509.MarshalPKIXPublicKey(h.corp.PublicKey())
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// tamper rewrites the org claim of a real signed token, keeping its signature.
func tamper(tok, replacement string) string {
	parts := strings.Split(tok, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	s := strings.Replace(string(raw), `"org":"tenant_a"`, replacement, 1)
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(s))
	return strings.Join(parts, ".")
}

// TestCredentialSourceRenews: the SDK reuses a credential until a third
// of its lifetime is left, then exchanges a fresh IdP token for a new
// one; while renewal fails it keeps the still-valid credential, and
// reports the failure once that has expired.
func TestCredentialSourceRenews(t *testing.T) {
	h := newHarness(t)
	h.serve()
	fail := false
	cfg := h.exchangeCfg(h.agent, "")
	cfg.Token = func(ctx context.Context) (string, error) {
		if fail {
			return "", errors.New("idp down")
		}
		// Signed by the IdP's real key with times from the test clock,
		// which the OP's own tokens (on the wall clock) cannot follow.
		return h.corp.Sign(baseClaims(h))
	}
	src, err := client.NewCredentialSource(h.nc, cfg, client.WithClock(h.clock.Now))
	must(t, err)
	ctx := context.Background()
	first, err := src.Credential(ctx)
	must(t, err)
	again, err := src.Credential(ctx)
	must(t, err)
	if again.ID != first.ID {
		t.Errorf("second Credential exchanged again (%s, %s); want the cached one", first.ID, again.ID)
	}
	life := first.Expires.Sub(first.IssuedAt)
	h.clock.Advance(life*2/3 + time.Second)
	renewed, err := src.Credential(ctx)
	must(t, err)
	if renewed.ID == first.ID || !renewed.Expires.After(first.Expires) {
		t.Errorf("Credential near expiry = %s until %s; want a new one beyond %s", renewed.ID, renewed.Expires, first.Expires)
	}

	fail = true
	h.clock.Advance(renewed.Expires.Sub(h.clock.Now()) - 5*time.Second)
	if c, err := src.Credential(ctx); err != nil || c.ID != renewed.ID {
		t.Errorf("Credential with the IdP down, credential still valid = %v, %v; want the current one", c, err)
	}
	h.clock.Advance(10 * time.Second)
	if _, err := src.Credential(ctx); !errors.Is(err, client.ErrExchange) {
		t.Errorf("Credential with the IdP down after expiry = %v; want ErrExchange", err)
	}
}

// TestExchangeUnverifiedRequestsHoldNothing: any key signs its own
// requests, so a signed request with a token that does not verify must
// neither take a place in the replay set (a full set refuses every
// exchange) nor be filed under the tenant it names.
func TestExchangeUnverifiedRequestsHoldNothing(t *testing.T) {
	h := newHarness(t)
	h.cfg.ReplayCapacity = 4
	h.serve()
	mallory := newAgent(t)
	for i := range 10 {
		got := h.raw("x.y.z", func(r *protocol.Request) {
			r.Agent, r.XKey, r.Tenant = mallory.pub, mallory.xkey, "tenant_b"
			r.XKeyProof = h.xkeyProof(mallory.ck, r.Agent, r.RequestID)
		}, h.signBy(mallory.kp))
		if got != reason.ExchangeTokenInvalid {
			t.Fatalf("junk token %d: %q; want %q", i, got, reason.ExchangeTokenInvalid)
		}
		if ev := h.lastEvent(); ev.Tenant != "" {
			t.Fatalf("junk token %d: audit event filed under tenant %q; want none (unroutable)", i, ev.Tenant)
		}
	}
	billing := h.token(h.corp, "billing-bot", "s3cret-billing")
	if got := h.raw(billing, nil, h.signBy(h.agent.kp)); got != "" {
		t.Errorf("a genuine exchange after ten junk requests = %q; want granted (audit detail: %s)", got, h.lastEvent().Detail)
	}
}

// TestExchangeReplayShare: the replay set records a request id only
// once everything else has granted the request, under its principal.
// An identity whose token maps to no scope (marketing-bot) is refused
// exchange_no_scope however often it asks, taking no room; one that is
// granted (billing-bot) is refused past its share (a 64th of
// replay_capacity, at least 16); another identity is still exchanged.
func TestExchangeReplayShare(t *testing.T) {
	h := newHarness(t)
	h.cfg.ReplayCapacity = 32 // a share of 16
	h.serve()
	marketing := h.token(h.corp, "marketing-bot", "s3cret-marketing")
	signed := h.signBy(h.agent.kp)
	count := func(tok string, n int) (granted, noScope, refused int) {
		for range n {
			switch h.raw(tok, nil, signed) {
			case "":
				granted++
			case reason.ExchangeNoScope:
				noScope++
			case reason.Internal:
				refused++
			}
		}
		return
	}
	if _, noScope, refused := count(marketing, 40); noScope != 40 || refused != 0 {
		t.Errorf("40 requests of an identity granted nothing: %d exchange_no_scope, %d refused; want 40 and 0", noScope, refused)
	}
	billing := h.token(h.corp, "billing-bot", "s3cret-billing")
	if granted, _, refused := count(billing, 20); granted != 16 || refused != 4 {
		t.Errorf("20 requests of a granted identity: %d granted, %d refused; want 16 and 4 (its share)", granted, refused)
	}
	other := signedBy(t, h, map[string]any{"sub": "billing-bot-2"})
	if code := h.raw(other, nil, signed); code != "" {
		t.Errorf("another identity's exchange after that = %q; want a credential", code)
	}
}

// TestExchangeRefusalsFillNoReplaySet: 64 identities whose tokens map to
// no scope, each sending a share's worth of requests, would fill the
// replay set were refused requests recorded, and every exchange would
// be refused internal_error for the replay window. They take no room,
// and a granted identity is still exchanged.
func TestExchangeRefusalsFillNoReplaySet(t *testing.T) {
	h := newHarness(t)
	h.cfg.ReplayCapacity = 1024
	h.serve()
	signed := h.signBy(h.agent.kp)
	for i := range 64 {
		tok := signedBy(t, h, map[string]any{"sub": fmt.Sprintf("nobody-%d", i), "groups": []string{"marketing"}})
		for range 16 {
			if code := h.raw(tok, nil, signed); code != reason.ExchangeNoScope {
				t.Fatalf("identity %d: %q; want exchange_no_scope", i, code)
			}
		}
	}
	billing := h.token(h.corp, "billing-bot", "s3cret-billing")
	if code := h.raw(billing, nil, signed); code != "" {
		t.Errorf("exchange after 64 no-scope identities sent 16 requests each = %q (detail %q); want a credential", code, h.lastEvent().Detail)
	}
}

// TestExchangeRefusedKeyIsRevoked: an exchange for a revoked agent key
// is refused revoked, not granted a credential the gateway would refuse
// anyway (and audited as granted).
func TestExchangeRefusedKeyIsRevoked(t *testing.T) {
	h := newHarness(t)
	rev := identity.NewRevocations()
	rev.RevokeKey(h.agent.pub)
	h.serve(exchange.WithRevocations(rev))
	tok := h.token(h.corp, "billing-bot", "s3cret-billing")
	if code := h.raw(tok, nil, h.signBy(h.agent.kp)); code != reason.Revoked {
		t.Errorf("exchange for revoked agent key %s = %q; want revoked", h.agent.pub, code)
	}
}

// TestExchangeAnswersInboxesOnly: a request whose reply subject is not an
// inbox (here another tenant's audit subject, which the gateway's connection
// may publish) is dropped unanswered: the service never publishes
// where a requester points it. Requests are handled in order, so once
// the next, well-formed request is answered the first has been handled.
func TestExchangeAnswersInboxesOnly(t *testing.T) {
	h := newHarness(t)
	h.serve()
	spy := make(chan *nats.Msg, 8)
	for _, subj := range []string{"agentgw.audit.tenant_b", "agentgw.in.tenant_a.x"} {
		sub, err := h.nc.ChanSubscribe(subj, spy)
		must(t, err)
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	tok := h.token(h.corp, "billing-bot", "s3cret-billing")
	for _, reply := range []string{"agentgw.audit.tenant_b", "agentgw.in.tenant_a.x"} {
		m := nats.NewMsg(protocol.DefaultSubject)
		m.Reply, m.Data = reply, []byte("junk")
		must(t, h.nc.PublishMsg(m))
	}
	if code := h.raw(tok, nil, h.signBy(h.agent.kp)); code != "" {
		t.Fatalf("well-formed request after them = %q; want a credential", code)
	}
	must(t, h.nc.Flush())
	select {
	case m := <-spy:
		t.Errorf("the exchange published %q on %s, a subject a requester named", m.Data, m.Subject)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestExchangeReplayToAnotherInstanceIsAudited: each instance has its own
// replay set, so one request sent to two instances is granted twice.
// Both credentials must be in the audit stream: the second event must
// not be de-duplicated away as a copy of the first.
func TestExchangeReplayToAnotherInstanceIsAudited(t *testing.T) {
	h := newHarness(t)
	js, err := jetstream.New(h.nc)
	must(t, err)
	ctx := context.Background()
	st, err := js.Stream(ctx, gateway.StreamAudit) // the harness made it
	must(t, err)
	h.serve()
	second := h.cfg
	second.Subject, second.QueueGroup = "agentgw.exchange2", "exchange2"
	// A second later: the credential it issues differs in iat, so in jti.
	later := func() time.Time { return h.clock.Now().Add(time.Second) }
	stop, err := exchange.Start(ctx, h.nc, second, h.issuers(), h.box(), exchange.WithClock(later))
	must(t, err)
	defer func() { _ = stop() }()

	tok := h.token(h.corp, "billing-bot", "s3cret-billing")
	body := h.requestBody(tok, nil)
	sig := h.signBy(h.agent.kp)(body)
	jtis := map[string]bool{}
	for _, subj := range []string{protocol.DefaultSubject, second.Subject} {
		m := nats.NewMsg(subj)
		m.Data = body
		m.Header.Set(protocol.SignatureHeader, sig)
		reply, err := h.nc.RequestMsg(m, 10*time.Second)
		must(t, err)
		var resp protocol.Response
		if code := reply.Header.Get("Nats-Service-Error"); code != "" || json.Unmarshal(reply.Data, &resp) != nil {
			t.Fatalf("exchange on %s = %q; want a credential", subj, code)
		}
		jtis[resp.CredentialID] = true
	}
	if len(jtis) != 2 {
		t.Fatalf("credentials = %v; want two", jtis)
	}
	deadline := time.Now().Add(5 * time.Second)
	var n uint64
	for time.Now().Before(deadline) {
		info, err := st.Info(ctx)
		must(t, err)
		if n = info.State.Msgs; n >= 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n != 2 {
		t.Errorf("audit stream holds %d events; want both grants", n)
	}
}

// TestExchangeRefusalAuditBounded: an identity with a valid token that
// maps to no scope sends requests as fast as they are answered. None is
// recorded in the replay set, so each refusal's audit event counts
// against the bound of a second (exchange.UnverifiedEventsPerSecond),
// as refusals before the token verified do: the audit stream holds at
// most that many a second, not one per request.
func TestExchangeRefusalAuditBounded(t *testing.T) {
	h := newHarness(t)
	js, err := jetstream.New(h.nc)
	must(t, err)
	ctx := context.Background()
	st, err := js.Stream(ctx, gateway.StreamAudit) // the harness made it
	must(t, err)
	h.serve()
	marketing := h.token(h.corp, "marketing-bot", "s3cret-marketing")
	signed := h.signBy(h.agent.kp)
	const n = 400
	start := time.Now()
	for range n {
		if code := h.raw(marketing, nil, signed); code != reason.ExchangeNoScope {
			t.Fatalf("refusal = %q; want exchange_no_scope", code)
		}
	}
	bound := exchange.UnverifiedEventsPerSecond * (int(time.Since(start)/time.Second) + 2)
	time.Sleep(500 * time.Millisecond) // the last events reach the stream
	info, err := st.Info(ctx)
	must(t, err)
	if stored := int(info.State.Msgs); stored > bound || stored == 0 {
		t.Errorf("%d refusals stored %d audit records; want between 1 and %d (the bound of a second)", n, stored, bound)
	}
}

// TestExchangeRevokedAuditedBesideJunk: junk requests past the bound of
// a second use up the count of refusals made before a token verified,
// not that of verified identities: a revoked identity's attempt in the
// same second is still audited.
func TestExchangeRevokedAuditedBesideJunk(t *testing.T) {
	h := newHarness(t)
	rev := identity.NewRevocations()
	rev.RevokeKey(h.agent.pub)
	h.serve(exchange.WithRevocations(rev))
	signed := h.signBy(h.agent.kp)
	tok := h.token(h.corp, "billing-bot", "s3cret-billing")
	// Junk until more than the bound has been sent within the current
	// second (the count is by wall-clock second), then the revoked
	// attempt at once, in that second. Started as a second begins, so the
	// burst and the attempt fit in it.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	sec, inSec := time.Now().Unix(), 0
	for inSec <= exchange.UnverifiedEventsPerSecond {
		if code := h.raw("junk.junk.junk", nil, signed); code == "" || code == reason.Revoked {
			t.Fatalf("junk request = %q; want refused before its token verified", code)
		}
		if s := time.Now().Unix(); s != sec {
			sec, inSec = s, 0
		}
		inSec++
	}
	if code := h.raw(tok, nil, signed); code != reason.Revoked {
		t.Fatalf("revoked key's exchange = %q; want revoked", code)
	}
	if ev := h.lastEvent(); ev.Reason != string(reason.Revoked) {
		t.Errorf("last audit event: reason %q; want the revoked attempt's (revoked)", ev.Reason)
	}
}

// TestExchangeGrantWithheldWithoutAuditRecord: a credential is handed
// out only once its grant's audit event is stored. With the audit
// stream gone (deleted by an admin, or its server unreachable), a
// request that would be granted is refused internal_error and carries
// no credential; the log says why. Once the stream is back, a new
// request is granted and its event is in the stream.
func TestExchangeGrantWithheldWithoutAuditRecord(t *testing.T) {
	h := newHarness(t)
	var logs syncBuffer
	h.serve(exchange.WithLogger(zerolog.New(&logs)))
	js, err := jetstream.New(h.nc)
	must(t, err)
	ctx := context.Background()
	must(t, js.DeleteStream(ctx, gateway.StreamAudit))
	tok := h.token(h.corp, "billing-bot", "s3cret-billing")

	signed := h.signBy(h.agent.kp)
	if code := h.raw(tok, nil, signed); code != reason.Internal {
		t.Fatalf("a grant with no audit stream to record it: answered %q; want internal_error", code)
	}
	if !strings.Contains(logs.String(), "its credential is withheld") {
		t.Errorf("the log does not say why the grant was withheld:\n%s", logs.String())
	}
	if got, err := h.exchange(tok, nil); err == nil {
		t.Fatalf("Exchange with no audit stream = %+v; want a refusal", got)
	}

	must(t, gateway.EnsureStreams(ctx, js, gateway.DefaultConfig().Streams, 1))
	got, err := h.exchange(tok, nil)
	if err != nil {
		t.Fatalf("Exchange with the audit stream back = %v; want a credential", err)
	}
	st, err := js.Stream(ctx, gateway.StreamAudit)
	must(t, err)
	m, err := st.GetLastMsgForSubject(ctx, "agentgw.audit.>")
	must(t, err)
	if !strings.Contains(string(m.Data), got.ID) {
		t.Errorf("the audit stream's last event %s does not name the credential %s", m.Data, got.ID)
	}
}

// stallAudit deletes the audit stream and leaves a plain subscriber on
// its subjects, so that a grant's event is delivered and never stored
// or acknowledged, as with a clustered stream that has no leader.
func stallAudit(t *testing.T, h *harness) {
	t.Helper()
	js, err := jetstream.New(h.nc)
	must(t, err)
	must(t, js.DeleteStream(context.Background(), gateway.StreamAudit))
	sub, err := h.nc.Subscribe("agentgw.audit.>", func(*nats.Msg) {})
	must(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
}

// TestExchangeStalledAuditRefusedInTime: an audit stream that does not
// answer makes a grant wait for its event at most auditAckWait, well
// within the SDK's default timeout: the requester learns internal_error,
// not a timeout, and gets no credential.
func TestExchangeStalledAuditRefusedInTime(t *testing.T) {
	h := newHarness(t)
	stallAudit(t, h)
	h.serve()
	tok := h.token(h.corp, "billing-bot", "s3cret-billing")
	got, err := h.exchange(tok, nil)
	if !errors.Is(err, reason.Internal) {
		t.Fatalf("Exchange with a stalled audit stream = %+v, %v; want internal_error", got, err)
	}
}

// TestExchangeAuditWaitHoldsNoIdPSlot: a grant waiting for its audit
// event holds no slot of its IdP's: with one slot, a second request
// sent meanwhile is judged (and, the audit stream stalled, refused
// internal_error), not refused exchange_idp_unavailable as if the IdP
// were down.
func TestExchangeAuditWaitHoldsNoIdPSlot(t *testing.T) {
	h := newHarness(t)
	h.cfg.MaxConcurrent = 1
	stallAudit(t, h)
	h.serve()
	tok := h.token(h.corp, "billing-bot", "s3cret-billing")
	first := make(chan error, 1)
	go func() {
		_, err := h.exchange(tok, nil)
		first <- err
	}()
	time.Sleep(time.Second) // the first waits for its audit event
	_, err := h.exchange(tok, nil)
	if !errors.Is(err, reason.Internal) {
		t.Errorf("a second exchange while the first waits for its audit event: %v; want internal_error", err)
	}
	if err := <-first; !errors.Is(err, reason.Internal) {
		t.Errorf("the first exchange: %v; want internal_error", err)
	}
}
