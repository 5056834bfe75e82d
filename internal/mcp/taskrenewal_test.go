package mcp

import (
	"crypto/sha256"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/exchange"
	"github.com/agentgw/agentgw/gateway/identity"
)

// TestTaskSeenByItsTokenAfterRenewal: the token that made a task keeps
// seeing it once its credential is renewed by an exchange that signs
// with another trusted issuer key (an issuer-seed rollout), though the
// renewed credential is another Cedar principal: it made the call.
func TestTaskSeenByItsTokenAfterRenewal(t *testing.T) {
	h := newEndpointHarness(t)
	tok, task, req := searchTaskOfErin(t, h)
	pub2 := renewByAnotherIssuer(t, h, []string{"refund:draft", "pay:send", "kb:read"})
	if _, r := h.postRPC(tok, req(3, "tasks/get")); strings.Contains(r, "unknown task") {
		t.Errorf("the token that made the task, its credential renewed by another issuer: tasks/get = %s", r)
	}
	if _, r := h.postRPC(tok, `{"jsonrpc":"2.0","id":4,"method":"tasks/list"}`); !strings.Contains(r, task.TaskID) {
		t.Errorf("after the renewal: tasks/list = %s; want the task", r)
	}
	if _, r := h.postRPC(tok, req(5, "tasks/result")); !strings.Contains(r, "articles about mine") {
		t.Errorf("after the renewal: tasks/result = %s; want the result", r)
	}
	if _, _, who := tokenSession(t, h, tok).credential(); who.Issuer != pub2 {
		t.Errorf("the credential was not renewed by the second issuer (issuer %s): the test shows nothing", who.Issuer)
	}
}

// TestTaskHiddenFromItsTokenNarrowedByRenewal: the token that made a
// task is held to the creator's Cedar principal but for the issuer: a
// renewal that narrows its scopes (the tool's scope still covered) hides
// the task from it, as from any token with those scopes.
func TestTaskHiddenFromItsTokenNarrowedByRenewal(t *testing.T) {
	h := newEndpointHarness(t)
	tok, _, req := searchTaskOfErin(t, h)
	renewByAnotherIssuer(t, h, []string{"kb:read"})
	if _, r := h.postRPC(tok, req(3, "tasks/result")); !strings.Contains(r, "unknown task") {
		t.Errorf("the token that made the task, its scopes narrowed by a renewal: tasks/result = %.200s; want unknown task", r)
	}
	if _, sc, _ := tokenSession(t, h, tok).credential(); len(sc) != 1 {
		t.Errorf("the credential was not narrowed (scopes %v): the test shows nothing", sc)
	}
}

// searchTaskOfErin has a billing token of erin make a search task and
// read its result; it returns the token, the task and a request of a
// tasks method for it.
func searchTaskOfErin(t *testing.T, h *endpointHarness) (string, Task, func(id int, method string) string) {
	t.Helper()
	tok := h.signed("erin", "billing")
	task, resp := h.createTask(tok, 1, "search", `{"query":"mine"}`, `{"ttl":60000}`)
	if task.TaskID == "" {
		t.Fatalf("task-augmented call: %s", resp)
	}
	req := func(id int, m string) string {
		return taskRPC(id, m, task.TaskID)
	}
	if _, r := h.postRPC(tok, req(2, "tasks/result")); !strings.Contains(r, "articles about mine") {
		t.Fatalf("before the renewal: tasks/result = %s", r)
	}
	return tok, task, req
}

// renewByAnotherIssuer starts a second exchange, of the same IdP, whose
// billing rule grants billingScopes, signing with a new issuer key the
// endpoint trusts too, and makes every credential due for renewal
// through it: the next request of a token renews its credential there.
// It returns the new issuer's public key.
func renewByAnotherIssuer(t *testing.T, h *endpointHarness, billingScopes []string) string {
	t.Helper()
	iss2, err := identity.NewIssuer()
	must(t, err)
	pub2, err := iss2.PublicKey()
	must(t, err)
	gwCurve, err := identity.ReadSeedFile(filepath.Join(h.dir, "curve.nk"))
	must(t, err)
	xbox, err := identity.NewBox(gwCurve)
	must(t, err)
	xcfg := exchange.Config{Subject: "test.exchange2", QueueGroup: "q2", Audience: gwAudience,
		IdPs: []exchange.IdPConfig{{
			Name: "corp", Issuer: h.idp.Issuer, Audience: h.resource,
			Tenants: []string{tenant}, TenantClaim: "org", RequiredClaims: []string{"org"}, KeysMaxAge: time.Minute,
			Rules: []exchange.Rule{
				{ID: "billing", Claim: "groups", Contains: "billing", Scopes: billingScopes},
				{ID: "support", Claim: "groups", Contains: "support", Scopes: []string{"kb:read"}},
			},
		}}}
	stop, err := exchange.Start(h.ctx, h.nc, xcfg, map[string]nkeys.KeyPair{tenant: iss2}, xbox)
	must(t, err)
	t.Cleanup(func() { _ = stop() })
	e := h.endpoint
	e.ep.TrustedIssuers = append(e.ep.TrustedIssuers, pub2)
	e.ep.ExchangeSubject = "test.exchange2"
	e.renewBefore = 24 * time.Hour // every credential is due: the next request renews it
	return pub2
}

// tokenSession is the endpoint's session of bearer token tok.
func tokenSession(t *testing.T, h *endpointHarness, tok string) *session {
	t.Helper()
	h.endpoint.mu.Lock()
	s := h.endpoint.sessions[sha256.Sum256([]byte(tok))]
	h.endpoint.mu.Unlock()
	if s == nil {
		t.Fatal("no session of the token")
	}
	return s
}

// TestTaskRefusedAfterClose: once the endpoint is closed, a
// task-augmented tools/call is refused as a synchronous one is, nothing
// sent, rather than answered with a task that then ends cancelled.
func TestTaskRefusedAfterClose(t *testing.T) {
	h := newEndpointHarness(t)
	tok := h.signed("gus", "billing")
	must(t, h.endpoint.Close())
	_, resp := h.createTask(tok, 2, "search", `{"query":"y"}`, `{"ttl":60000}`)
	if !strings.Contains(resp, "the endpoint is closing") || strings.Contains(resp, `"taskId"`) {
		t.Errorf("task-augmented call after Close: %s; want refused, the endpoint closing", resp)
	}
}
