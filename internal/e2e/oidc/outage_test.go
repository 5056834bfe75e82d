package oidc_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/exchange/protocol"
	"github.com/agentgw/agentgw/internal/e2e/oidc/testidp"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestExchangeIdPKeysUnavailable: when the IdP's JWKS cannot be fetched
// before any key is cached (500, a body that is not a key set, no answer
// within http_timeout), the exchange refuses exchange_idp_unavailable,
// not exchange_token_invalid, and issues nothing; the caller sees a
// typed denial, the operator the JWKS host and the failure, and nobody
// the token. Once the JWKS answers again the same token is exchanged.
func TestExchangeIdPKeysUnavailable(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fault testidp.KeysFault
	}{
		{"jwks_500", testidp.KeysError},
		{"jwks_not_a_key_set", testidp.KeysGarbage},
		{"jwks_timeout", testidp.KeysHang},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.cfg.HTTPTimeout = time.Second // the least allowed: the hanging JWKS times out soon
			h.serve()
			tok := h.token(h.corp, "billing-bot", "s3cret-billing")
			h.corp.BreakKeys(tt.fault)

			got, err := h.exchange(tok, nil)
			var d *reason.Denial
			if got != nil || !errors.As(err, &d) || d.Code != reason.ExchangeIdPUnavailable {
				t.Fatalf("Exchange(JWKS %s) = %v, %v; want a *reason.Denial %s and no credential (audit detail: %s)",
					tt.name, got, err, reason.ExchangeIdPUnavailable, h.lastEvent().Detail)
			}
			if errors.Is(err, reason.ExchangeTokenInvalid) {
				t.Error("an IdP outage is reported as a bad token")
			}
			checkOutageEvent(t, h, tok)

			reply := h.sendMsg(tok)
			if code := reply.Header.Get("Nats-Service-Error"); code != string(reason.ExchangeIdPUnavailable) {
				t.Errorf("wire reason = %q; want %s", code, reason.ExchangeIdPUnavailable)
			}
			var body protocol.ErrorBody
			if err := json.Unmarshal(reply.Data, &body); err != nil || body.Reason != string(reason.ExchangeIdPUnavailable) ||
				body.Error != "temporarily_unavailable" || reply.Header.Get("Nats-Service-Error-Code") != "503" {
				t.Errorf("wire answer = %s %q (%v); want 503 temporarily_unavailable %s", reply.Header.Get("Nats-Service-Error-Code"), reply.Data, err, reason.ExchangeIdPUnavailable)
			}
			if strings.Contains(string(reply.Data), "access_token") {
				t.Error("the refusal holds a credential")
			}

			h.corp.BreakKeys(testidp.KeysServed)
			h.clock.Advance(6 * time.Second) // past keys_min_refresh (5s)
			if _, err := h.exchange(tok, nil); err != nil {
				t.Errorf("Exchange(same token, JWKS back) = %v; want a credential", err)
			}
		})
	}
}

// TestExchangeIdPKeysUnavailableAfterRotation: with keys cached, the
// IdP rotates and its JWKS fails. A token with the new kid cannot be
// checked (exchange_idp_unavailable); once the cached keys are past
// keys_max_age they are not used either, so a token with the old kid is
// refused the same way. With the JWKS back, the old kid is gone
// (exchange_token_invalid) and the new one verifies.
func TestExchangeIdPKeysUnavailableAfterRotation(t *testing.T) {
	h := newHarness(t)
	h.serve()
	old := h.token(h.corp, "billing-bot", "s3cret-billing")
	if _, err := h.exchange(old, nil); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	must(t, h.corp.Rotate(jose.ES256))
	h.corp.BreakKeys(testidp.KeysError)
	h.clock.Advance(6 * time.Second)
	fresh, err := h.corp.Sign(baseClaims(h))
	must(t, err)
	if _, err := h.exchange(fresh, nil); !errors.Is(err, reason.ExchangeIdPUnavailable) {
		t.Errorf("Exchange(new kid, JWKS failing) = %v; want %s", err, reason.ExchangeIdPUnavailable)
	}
	checkOutageEvent(t, h, fresh)
	// Within keys_min_refresh of the failed fetch no new one is made, and
	// the new kid is still not refused as invalid: the keys it would need
	// were never obtained.
	if _, err := h.exchange(fresh, nil); !errors.Is(err, reason.ExchangeIdPUnavailable) {
		t.Errorf("Exchange(new kid again, no refetch allowed) = %v; want %s", err, reason.ExchangeIdPUnavailable)
	}

	h.clock.Advance(61 * time.Second) // past keys_max_age (1m)
	if _, err := h.exchange(old, nil); !errors.Is(err, reason.ExchangeIdPUnavailable) {
		t.Errorf("Exchange(cached kid, keys past max age, JWKS failing) = %v; want %s", err, reason.ExchangeIdPUnavailable)
	}

	h.corp.BreakKeys(testidp.KeysServed)
	h.clock.Advance(6 * time.Second)
	if _, err := h.exchange(old, nil); !errors.Is(err, reason.ExchangeTokenInvalid) {
		t.Errorf("Exchange(withdrawn kid, JWKS back) = %v; want %s", err, reason.ExchangeTokenInvalid)
	}
	fresh, err = h.corp.Sign(baseClaims(h))
	must(t, err)
	if _, err := h.exchange(fresh, nil); err != nil {
		t.Errorf("Exchange(new kid, JWKS back) = %v; want a credential", err)
	}
}

// TestExchangeIdPDown: the provider stops listening. Before discovery
// has run, and after it with a kid the cache does not hold, the
// exchange refuses exchange_idp_unavailable.
func TestExchangeIdPDown(t *testing.T) {
	t.Run("before_discovery", func(t *testing.T) {
		h := newHarness(t)
		h.serve()
		tok := h.token(h.corp, "billing-bot", "s3cret-billing")
		h.corp.Stop()
		for i := range 2 { // the second within keys_min_refresh: no new attempt
			if _, err := h.exchange(tok, nil); !errors.Is(err, reason.ExchangeIdPUnavailable) {
				t.Errorf("Exchange(%d, IdP down before discovery) = %v; want %s", i, err, reason.ExchangeIdPUnavailable)
			}
			checkOutageEvent(t, h, tok)
		}
	})
	t.Run("unknown_kid", func(t *testing.T) {
		h := newHarness(t)
		h.serve()
		tok := h.token(h.corp, "billing-bot", "s3cret-billing")
		if _, err := h.exchange(tok, nil); err != nil {
			t.Fatalf("IdP up: %v", err)
		}
		must(t, h.corp.Rotate(jose.EdDSA))
		fresh, err := h.corp.Sign(baseClaims(h))
		must(t, err)
		h.corp.Stop()
		h.clock.Advance(6 * time.Second)
		if _, err := h.exchange(fresh, nil); !errors.Is(err, reason.ExchangeIdPUnavailable) {
			t.Errorf("Exchange(new kid, IdP down) = %v; want %s", err, reason.ExchangeIdPUnavailable)
		}
		checkOutageEvent(t, h, fresh)
	})
}

// TestExchangeUnpublishedKeyIsTokenInvalid: with the JWKS working, a
// token signed by a key the IdP does not publish is a bad token
// (exchange_token_invalid), whether its kid is unknown (the refetch it
// causes succeeds and still lacks it) or the IdP's own kid.
func TestExchangeUnpublishedKeyIsTokenInvalid(t *testing.T) {
	h := newHarness(t)
	h.serve()
	good := h.token(h.corp, "billing-bot", "s3cret-billing")
	if _, err := h.exchange(good, nil); err != nil {
		t.Fatalf("genuine token: %v", err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	// Issued well before the keys are fetched again (beyond the 30 s
	// skew): its key, had the IdP published it, would be among them.
	unknown, err := signedWithKid(h, ec, "not-published", jose.ES256)
	must(t, err)
	h.clock.Advance(40 * time.Second) // an unknown kid may cause a refetch
	before := h.corp.KeysFetches()
	if _, err := h.exchange(unknown, nil); !errors.Is(err, reason.ExchangeTokenInvalid) {
		t.Errorf("Exchange(unpublished key, unknown kid) = %v; want %s", err, reason.ExchangeTokenInvalid)
	}
	if h.corp.KeysFetches() == before {
		t.Error("an unknown kid caused no JWKS fetch; want one (the case is a successful refetch that lacks the kid)")
	}
	if ev := h.lastEvent(); ev.Reason != string(reason.ExchangeTokenInvalid) || ev.CredentialID != "" {
		t.Errorf("audit event = %+v; want %s and no credential", ev, reason.ExchangeTokenInvalid)
	}
	// Again at once: no refetch is allowed yet, the answer is the same.
	if _, err := h.exchange(unknown, nil); !errors.Is(err, reason.ExchangeTokenInvalid) {
		t.Errorf("Exchange(unpublished key, unknown kid, again) = %v; want %s", err, reason.ExchangeTokenInvalid)
	}
	sameKid, err := signedWithKid(h, rsaKey(t), h.corp.KeyID(), jose.RS256)
	must(t, err)
	if _, err := h.exchange(sameKid, nil); !errors.Is(err, reason.ExchangeTokenInvalid) {
		t.Errorf("Exchange(unpublished key, the IdP's kid) = %v; want %s", err, reason.ExchangeTokenInvalid)
	}
}

// checkOutageEvent checks the last audit event is the outage refusal:
// no credential, the JWKS or issuer host named, no token bytes and no
// key material.
func checkOutageEvent(t *testing.T, h *harness, tok string) {
	t.Helper()
	ev := h.lastEvent()
	t.Logf("reason %q detail: %s", ev.Reason, ev.Detail)
	if ev.Reason != string(reason.ExchangeIdPUnavailable) || ev.Stage != "exchange" || ev.CredentialID != "" || ev.Issuer != "" || len(ev.Scopes) != 0 || ev.Tenant != "" {
		t.Errorf("audit event = %+v; want %s, stage exchange, nothing issued", ev, reason.ExchangeIdPUnavailable)
	}
	u, err := url.Parse(h.corp.Issuer)
	must(t, err)
	if !strings.Contains(ev.Detail, u.Host) {
		t.Errorf("audit detail %q does not name the IdP host %s", ev.Detail, u.Host)
	}
	b, _ := json.Marshal(ev)
	for _, part := range strings.Split(tok, ".") {
		if strings.Contains(string(b), part) {
			t.Errorf("the audit event holds part of the token: %s", b)
		}
	}
	var jwk struct {
		N, X string
	}
	_ = json.Unmarshal(h.corp.PublicJWK(), &jwk)
	for _, k := range []string{jwk.N, jwk.X, "BEGIN"} {
		if k != "" && strings.Contains(string(b), k) {
			t.Errorf("the audit event holds key material: %s", b)
		}
	}
	checkEventSchema(t, ev)
}

// sendMsg sends a signed exchange request for tok and returns the reply.
func (h *harness) sendMsg(tok string) *nats.Msg {
	h.t.Helper()
	body, err := protocol.Marshal(h.request(h.agent, tok))
	must(h.t, err)
	m := nats.NewMsg(protocol.DefaultSubject)
	m.Data = body
	m.Header.Set(protocol.SignatureHeader, h.signBy(h.agent.kp)(body))
	reply, err := h.nc.RequestMsg(m, 10*time.Second)
	must(h.t, err)
	return reply
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	must(t, err)
	return k
}

// signedWithKid signs corp's base claims with key, naming kid: a token
// the IdP did not issue.
func signedWithKid(h *harness, key any, kid string, alg jose.SignatureAlgorithm) (string, error) {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(baseClaims(h))
	if err != nil {
		return "", err
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// TestExchangeSlotsPerIdP: each IdP has its own max_concurrent slots. While
// one IdP's JWKS hangs, its requests hold its slots; a further request
// for it is refused at once exchange_idp_unavailable (503, retry), and a
// request for another IdP is exchanged as usual.
func TestExchangeSlotsPerIdP(t *testing.T) {
	h := newHarness(t)
	h.cfg.MaxConcurrent = 2
	h.cfg.HTTPTimeout = 3 * time.Second // how long the hanging JWKS holds the slots
	h.serve()
	h.partner.AddClient(testidp.Client{ID: "partner-b-bot", Secret: "s3cret-partner-b", Audience: []string{idpAudience},
		Claims: map[string]any{"groups": []string{"billing-agents"}, "org": "tenant_b"}})
	corp := h.token(h.corp, "billing-bot", "s3cret-billing")
	partner := h.token(h.partner, "partner-b-bot", "s3cret-partner-b")
	h.corp.BreakKeys(testidp.KeysHang)

	// One connection, published in this order: the service takes them in
	// order, so the third corp request finds both corp slots in use.
	names := []string{"corp1", "corp2", "corp3", "partner"}
	replies := map[string]chan *nats.Msg{}
	for i, tok := range []string{corp, corp, corp, partner} {
		body := h.requestBody(tok, nil)
		inbox := h.nc.NewRespInbox()
		ch := make(chan *nats.Msg, 1)
		sub, err := h.nc.ChanSubscribe(inbox, ch)
		must(t, err)
		t.Cleanup(func() { _ = sub.Unsubscribe() })
		m := nats.NewMsg(protocol.DefaultSubject)
		m.Reply, m.Data = inbox, body
		m.Header.Set(protocol.SignatureHeader, h.signBy(h.agent.kp)(body))
		must(t, h.nc.PublishMsg(m))
		replies[names[i]] = ch
	}
	must(t, h.nc.Flush())
	wait := func(name string) *nats.Msg {
		select {
		case m := <-replies[name]:
			return m
		case <-time.After(20 * time.Second):
			t.Fatalf("no reply to %s", name)
			return nil
		}
	}

	if m := wait("corp3"); m.Header.Get("Nats-Service-Error") != string(reason.ExchangeIdPUnavailable) ||
		m.Header.Get("Nats-Service-Error-Code") != "503" {
		t.Errorf("third corp request, corp's slots in use: %s %s; want 503 %s",
			m.Header.Get("Nats-Service-Error-Code"), m.Header.Get("Nats-Service-Error"), reason.ExchangeIdPUnavailable)
	}
	m := wait("partner")
	var resp protocol.Response
	if code := m.Header.Get("Nats-Service-Error"); code != "" || json.Unmarshal(m.Data, &resp) != nil || resp.Tenant != "tenant_b" {
		t.Errorf("partner request while corp hangs: error %q, tenant %q; want a credential for tenant_b", code, resp.Tenant)
	}
	for _, name := range []string{"corp1", "corp2"} {
		if code := wait(name).Header.Get("Nats-Service-Error"); code != string(reason.ExchangeIdPUnavailable) {
			t.Errorf("%s (JWKS hung) = %q; want %s", name, code, reason.ExchangeIdPUnavailable)
		}
	}
	if d := h.lastEvent().Detail; strings.Contains(d, corp) || strings.Contains(d, partner) {
		t.Error("an audit detail holds a token")
	}
}
