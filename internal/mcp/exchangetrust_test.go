package mcp

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/exchange"
	"github.com/agentgw/agentgw/gateway/exchange/protocol"
	"github.com/agentgw/agentgw/gateway/identity"
)

// TestEndpointRefusesUntrustedExchangeAnswer: whoever may answer on the
// token exchange subject can hand the endpoint a credential of their
// own making: one naming a victim's IdP issuer and subject, for a bearer
// token nobody verified. The endpoint files a token under the principal
// its credential names, so such a credential would open the victim's
// tasks (tasks/get, tasks/result, tasks/list) to its holder. The
// endpoint takes a credential only when one of trusted_issuers signed
// it: a rogue responder's answer, signed by another issuer, is refused
// and leaves no session, principal or key file behind. The same
// responder signing with the trusted issuer is taken, so the refusal is
// the issuer's, not the answer's shape.
func TestEndpointRefusesUntrustedExchangeAnswer(t *testing.T) {
	h := newEndpointHarness(t)
	rogue, err := identity.NewIssuer()
	must(t, err)

	// The responder takes whatever bearer token it is sent, unverified,
	// and issues a credential for the requesting agent key naming the
	// token's issuer and subject, with every scope of the billing group.
	const subject = "test.rogue.exchange"
	sub, err := h.nc.Subscribe(subject, func(m *nats.Msg) {
		req, err := protocol.Parse(m.Data)
		if err != nil {
			return
		}
		c, err := parseBearer(req.SubjectToken)
		if err != nil {
			return
		}
		signer := rogue
		if c.Subject == "control" {
			signer = h.issuer
		}
		tok, err := identity.Issue(signer, identity.IssueRequest{
			Subject: req.Agent, Audience: req.Audience, Tenant: tenant, XKey: req.XKey,
			Scopes: []string{"refund:draft", "pay:send", "kb:read"}, Principal: exchange.Principal(c.Issuer, c.Subject), TTL: 30 * time.Minute,
		}, time.Now())
		if err != nil {
			return
		}
		body, _ := json.Marshal(protocol.Response{
			AccessToken: tok.Reveal(), IssuedTokenType: protocol.TokenTypeAgentgw, TokenType: "N_A", ExpiresIn: 1800, Tenant: tenant,
		})
		_ = m.Respond(body)
	})
	must(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	must(t, h.nc.Flush())

	// A second endpoint, trusting the gateway's issuer, whose exchange
	// subject is the responder's.
	srv := httptest.NewUnstartedServer(nil)
	resource := "http://" + srv.Listener.Addr().String() + "/mcp"
	cfg := *h.cfg
	cfg.Endpoint.Resource, cfg.Endpoint.ExchangeSubject, cfg.Endpoint.KeyDir = resource, subject, t.TempDir()
	trusted, _ := h.issuer.PublicKey()
	if len(cfg.Endpoint.TrustedIssuers) != 1 || cfg.Endpoint.TrustedIssuers[0] != trusted {
		t.Fatalf("trusted_issuers = %v; want the gateway's issuer %s", cfg.Endpoint.TrustedIssuers, trusted)
	}
	ep, err := NewEndpoint(h.nc, &cfg)
	must(t, err)
	t.Cleanup(func() { must(t, ep.Close()) })
	srv.Config.Handler = ep
	srv.Start()
	t.Cleanup(srv.Close)

	// Bearer tokens with a made-up signature: only the responder sees
	// them, and it does not check.
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	unsigned := func(subject string) string {
		return enc(`{"alg":"RS256","typ":"JWT","kid":"x"}`) + "." +
			enc(fmt.Sprintf(`{"iss":%q,"sub":%q,"aud":[%q],"exp":%d}`, h.idp.Issuer, subject, resource, time.Now().Add(time.Hour).Unix())) +
			"." + enc("not a signature")
	}
	post := func(tok, body string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, resource, strings.NewReader(body))
		must(t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	state := func() (principals, sessions, keyFiles int) {
		ep.mu.Lock()
		principals, sessions = len(ep.principals), len(ep.sessions)
		ep.mu.Unlock()
		entries, err := os.ReadDir(cfg.Endpoint.KeyDir)
		must(t, err)
		return principals, sessions, len(entries)
	}
	list := `{"jsonrpc":"2.0","id":1,"method":"tasks/list"}`

	for i := range 3 {
		code, resp := post(unsigned("alice-victim"), list)
		if code == http.StatusOK || strings.Contains(resp, `"tasks"`) {
			t.Errorf("attempt %d: a credential signed by an untrusted issuer = %d %s; want refused", i, code, resp)
		}
	}
	if p, s, k := state(); p != 0 || s != 0 || k != 0 {
		t.Errorf("after untrusted exchange answers: %d principals, %d sessions, %d key files; want none", p, s, k)
	}

	if code, resp := post(unsigned("control"), list); code != http.StatusOK || !strings.Contains(resp, `"tasks":[]`) {
		t.Fatalf("the responder's answer signed by the trusted issuer = %d %s; want it taken (the test's answers are well formed)", code, resp)
	}
	if p, s, k := state(); p != 1 || s != 1 || k != 1 {
		t.Errorf("after the trusted answer: %d principals, %d sessions, %d key files; want one of each", p, s, k)
	}
}
