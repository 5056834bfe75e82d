package oidc_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/exchange/protocol"
)

// TestExchangeCompactTokensOnly: the subject token is a compact JWS.
// go-jose also reads the JWS JSON serialization, and compact tokens with
// white space; taken, one token had many spellings, and a JSON one could
// be routed by a decoy "payload" that is not the one verified.
func TestExchangeCompactTokensOnly(t *testing.T) {
	h := newHarness(t)
	h.serve()
	tok := h.token(h.corp, "billing-bot", "s3cret-billing")
	p := strings.Split(tok, ".")
	for name, form := range map[string]string{
		"json":       `{"protected":"` + p[0] + `","payload":"` + p[1] + `","signature":"` + p[2] + `","x":"a.` + p[1] + `.b"}`,
		"whitespace": p[0] + "." + p[1] + "." + p[2][:10] + "\n " + p[2][10:],
		"padding":    tok + "=",
	} {
		if got := h.raw(form, nil, h.signBy(h.agent.kp)); got == "" {
			t.Errorf("%s form of a token: exchanged; want refused", name)
		}
	}
	if got := h.raw(tok, nil, h.signBy(h.agent.kp)); got != "" {
		t.Fatalf("the compact token itself: refused %s", got)
	}
}

// TestExchangeIssuerExact: go-oidc takes "accounts.google.com" for the
// configured "https://accounts.google.com". Routed to that IdP (in a
// JSON form with a decoy payload), it gave the same person a second
// principal. The issuer must be the configured one, byte for byte, and
// the principal is built from it.
func TestExchangeIssuerExact(t *testing.T) {
	h := newHarness(t)
	var doc struct {
		JWKS string `json:"jwks_uri"`
	}
	resp, err := http.Get(h.corp.Issuer + "/.well-known/openid-configuration")
	must(t, err)
	must(t, json.NewDecoder(resp.Body).Decode(&doc))
	must(t, resp.Body.Close())
	const google = "https://accounts.google.com"
	h.cfg.IdPs[0].Issuer = google
	h.cfg.IdPs[0].JWKSURL = doc.JWKS
	h.serve()

	claims := func(iss string) map[string]any {
		c := baseClaims(h)
		c["iss"], c["sub"] = iss, "1234567890"
		return c
	}
	std, err := h.corp.Sign(claims(google))
	must(t, err)
	variant, err := h.corp.Sign(claims("accounts.google.com"))
	must(t, err)
	p := strings.Split(variant, ".")
	decoy := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"` + google + `"}`))
	jsonForm := `{"protected":"` + p[0] + `","payload":"` + p[1] + `","signature":"` + p[2] + `","x":"a.` + decoy + `.b"}`

	for _, tc := range []struct {
		name, tok, principal string
	}{{"standard", std, google + "#1234567890"}, {"variant", variant, ""}, {"variant in json with a decoy", jsonForm, ""}} {
		body := h.requestBody(tc.tok, nil)
		m := nats.NewMsg(protocol.DefaultSubject)
		m.Data = body
		m.Header.Set(protocol.SignatureHeader, h.signBy(h.agent.kp)(body))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		reply, err := h.nc.RequestMsgWithContext(ctx, m)
		cancel()
		must(t, err)
		code := reply.Header.Get("Nats-Service-Error")
		if tc.principal == "" {
			if code == "" {
				t.Errorf("%s: exchanged; want refused", tc.name)
			}
			continue
		}
		if code != "" {
			t.Fatalf("%s: refused %s", tc.name, code)
		}
		r, err := protocol.ParseResponse(reply.Data)
		must(t, err)
		pl, err := base64.RawURLEncoding.DecodeString(strings.Split(r.AccessToken, ".")[1])
		must(t, err)
		var c struct {
			Nats struct {
				Principal string `json:"principal"`
			} `json:"nats"`
		}
		must(t, json.Unmarshal(pl, &c))
		if c.Nats.Principal != tc.principal {
			t.Errorf("%s: principal %q; want %q", tc.name, c.Nats.Principal, tc.principal)
		}
	}
}
