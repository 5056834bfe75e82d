package exchange

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/exchange/protocol"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/schemas"
	"github.com/agentgw/agentgw/subjects/reason"
)

const svcIss = "https://idp.example.com/realms/corp"

// svcEnv is a Service made by New over a JWKS server with one ES256
// key, on a fake clock, whose audit events it keeps.
type svcEnv struct {
	svc    *Service
	clk    *fakeClock
	key    testKey
	gwX    nkeys.KeyPair
	rev    *identity.Revocations
	events []audit.Event
}

// newSvcEnv makes the service, its configuration changed by mut.
func newSvcEnv(t *testing.T, mut func(*Config)) *svcEnv {
	t.Helper()
	j := newJWKSServer(t)
	k := newTestKey(t, "k1")
	j.publish(k)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	cfg := Config{
		Audience: "agentgw",
		IdPs: []IdPConfig{{
			Name: "corp", Issuer: svcIss, JWKSURL: j.srv.URL, Audience: "agentgw-idp",
			Tenants: []string{"tenant_a"}, Tenant: "tenant_a",
			Rules: []Rule{{ID: "r", Claim: "groups", Contains: "agents", Scopes: []string{"refund:draft", "approve:*"}}},
		}},
	}
	if mut != nil {
		mut(&cfg)
	}
	iss, _ := nkeys.CreateAccount()
	gwX, _ := nkeys.CreateCurveKeys()
	box, err := identity.NewBox(gwX)
	if err != nil {
		t.Fatal(err)
	}
	e := &svcEnv{clk: clk, key: k, gwX: gwX, rev: identity.NewRevocations()}
	e.svc, err = New(cfg, map[string]nkeys.KeyPair{"tenant_a": iss}, box,
		WithClock(clk.now), WithHTTPClient(&http.Client{Transport: tr}), WithRevocations(e.rev),
		WithAudit(func(ev audit.Event) { e.events = append(e.events, ev) }))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// idpToken is a token of the IdP, its claims changed by claims (nil
// deletes one).
func (e *svcEnv) idpToken(t *testing.T, claims map[string]any) string {
	t.Helper()
	c := map[string]any{"iss": svcIss, "sub": "alice", "aud": "agentgw-idp",
		"iat": e.clk.t.Unix(), "exp": e.clk.t.Add(time.Hour).Unix(), "groups": []string{"agents"}}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	b, _ := json.Marshal(c)
	return e.key.signPayload(t, b)
}

// svcAgent is an agent's user and curve key pairs.
type svcAgent struct{ u, x nkeys.KeyPair }

// newSvcAgent draws an agent's keys.
func newSvcAgent() svcAgent {
	u, _ := nkeys.CreateUser()
	x, _ := nkeys.CreateCurveKeys()
	return svcAgent{u, x}
}

// request builds a signed exchange request body and its signature,
// changed by mut before it is signed.
func (e *svcEnv) request(t *testing.T, a svcAgent, tok string, mut func(*protocol.Request)) ([]byte, string) {
	t.Helper()
	pub, _ := a.u.PublicKey()
	xpub, _ := a.x.PublicKey()
	gw, _ := e.gwX.PublicKey()
	id := protocol.NewRequestID()
	proof, err := protocol.SealXKeyProof(a.x, gw, pub, id)
	if err != nil {
		t.Fatal(err)
	}
	r := &protocol.Request{V: protocol.Version, GrantType: protocol.GrantType, SubjectToken: tok,
		SubjectTokenType: protocol.TokenTypeJWT, Audience: "agentgw", Agent: pub, XKey: xpub, XKeyProof: proof,
		RequestID: id, IssuedAt: e.clk.t.UTC().Format(time.RFC3339)}
	if mut != nil {
		mut(r)
	}
	body, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := protocol.Sign(a.u, body)
	if err != nil {
		t.Fatal(err)
	}
	return body, sig
}

// TestServiceIssuedAtToTheSecond: issued_at is RFC 3339 UTC to the
// second, as the wire says and the clients write it. A fraction is
// refused as the request's form, so no refusal quotes a time longer
// than 20 characters: a fraction of 30,000 digits, within the body
// limit, once made a detail of 30 KB in the audit stream and the log.
func TestServiceIssuedAtToTheSecond(t *testing.T) {
	e := newSvcEnv(t, nil)
	a := newSvcAgent()
	for name, at := range map[string]string{
		"fraction":      e.clk.t.UTC().Format("2006-01-02T15:04:05") + ".123456789Z",
		"long_fraction": "2100-01-01T00:00:00." + strings.Repeat("0", 30000) + "Z",
	} {
		body, sig := e.request(t, a, e.idpToken(t, nil), func(r *protocol.Request) { r.IssuedAt = at })
		if _, err := e.svc.Exchange(context.Background(), body, sig); !errors.Is(err, reason.ExchangeRequestInvalid) {
			t.Errorf("%s: %.200v; want %s", name, err, reason.ExchangeRequestInvalid)
		}
	}
	s, err := schemas.Compile(schemas.AuditEvent)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range e.events {
		if err := schemas.Validate(s, ev.AppendJSON(nil)); err != nil {
			t.Errorf("audit event violates its schema (detail %d bytes): %.200v", len(ev.Detail), err)
		}
	}
}

// TestServiceUnverifiedIssuerDetailBounded: an unsigned token's iss is
// quoted in its refusal; 128 runes that each quote to ten characters
// still make an audit event its schema admits (detail at most 1,024).
func TestServiceUnverifiedIssuerDetailBounded(t *testing.T) {
	e := newSvcEnv(t, nil)
	a := newSvcAgent()
	enc := base64.RawURLEncoding.EncodeToString
	tok := enc([]byte(`{"alg":"ES256"}`)) + "." + enc([]byte(`{"iss":"`+strings.Repeat("\U000E0001", 128)+`"}`)) + ".c2ln"
	body, sig := e.request(t, a, tok, nil)
	if _, err := e.svc.Exchange(context.Background(), body, sig); !errors.Is(err, reason.ExchangeUntrustedIdP) {
		t.Fatalf("%v; want %s", err, reason.ExchangeUntrustedIdP)
	}
	s, err := schemas.Compile(schemas.AuditEvent)
	if err != nil {
		t.Fatal(err)
	}
	ev := e.events[len(e.events)-1]
	if err := schemas.Validate(s, ev.AppendJSON(nil)); err != nil {
		t.Errorf("audit event violates its schema (detail %d bytes): %.200v", len(ev.Detail), err)
	}
}

// TestServiceReplayRefusedBeforeToken: a granted request sent again is
// refused as a used request id before its IdP token is looked at, as
// the wire gives the order: here after the token expired, which would
// otherwise decide the refusal.
func TestServiceReplayRefusedBeforeToken(t *testing.T) {
	e := newSvcEnv(t, nil)
	a := newSvcAgent()
	tok := e.idpToken(t, map[string]any{"exp": e.clk.t.Add(20 * time.Second).Unix()})
	body, sig := e.request(t, a, tok, nil)
	if _, err := e.svc.Exchange(context.Background(), body, sig); err != nil {
		t.Fatal(err)
	}
	e.clk.t = e.clk.t.Add(time.Minute) // within proof_max_age and the skew
	_, err := e.svc.Exchange(context.Background(), body, sig)
	if !errors.Is(err, reason.ExchangeProofStale) || !strings.Contains(err.Error(), "already used") {
		t.Errorf("a granted request sent again: %v; want %s (request id already used)", err, reason.ExchangeProofStale)
	}
}
