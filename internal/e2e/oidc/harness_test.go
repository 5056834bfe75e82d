package oidc_test

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/exchange"
	"github.com/agentgw/agentgw/gateway/exchange/protocol"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/e2e/oidc/testidp"
	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/subjects/reason"
)

const (
	gwAudience  = "billing-gateway"
	idpAudience = "agentgw-exchange"
)

// clock is the only faked part: the service reads it for every decision.
// It runs with real time plus an offset the test moves forward.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

type agent struct {
	kp   nkeys.KeyPair
	pub  string
	ck   nkeys.KeyPair
	xkey string
}

func newAgent(t testing.TB) *agent {
	t.Helper()
	kp, err := identity.NewAgent()
	must(t, err)
	pub, _ := kp.PublicKey()
	ck, err := identity.NewCurve()
	must(t, err)
	xkey, _ := ck.PublicKey()
	return &agent{kp: kp, pub: pub, ck: ck, xkey: xkey}
}

type harness struct {
	t       testing.TB
	nc      *nats.Conn
	clock   *clock
	corp    *testidp.IdP // trusted for tenant_a and tenant_b, tenant from claim org
	partner *testidp.IdP // trusted for tenant_b only
	rogue   *testidp.IdP // not configured at all
	issuerA nkeys.KeyPair
	issuerB nkeys.KeyPair
	agent   *agent
	cfg     exchange.Config
	gwKey   string           // the signing key of the gateway startGateway runs
	gw      *gateway.Gateway // the gateway startGateway runs
	gwCurve nkeys.KeyPair    // the gateway's curve key: xkey proofs are sealed to it
	gwX     string           // its public key

	mu     sync.Mutex
	events []audit.Event
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newHarness starts NATS, three real OpenID providers and the exchange
// service. start=false leaves the service to the caller (to host it in a
// gateway test, say).
func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{t: t, clock: &clock{}, agent: newAgent(t)}
	srv := natstest.Start(t, natstest.Options{})
	h.nc = natstest.Connect(t, srv)
	// The audit stream: a grant is answered once its event is stored.
	js, err := jetstream.New(h.nc)
	must(t, err)
	must(t, gateway.EnsureStreams(context.Background(), js, gateway.DefaultConfig().Streams, 1))
	h.corp, h.partner, h.rogue = testidp.Start(t), testidp.Start(t), testidp.Start(t)
	h.issuerA, _ = identity.NewIssuer()
	h.issuerB, _ = identity.NewIssuer()
	h.gwCurve, _ = identity.NewCurve()
	h.gwX, _ = h.gwCurve.PublicKey()

	billing := map[string]any{"groups": []string{"billing-agents", "staff"}, "org": "tenant_a"}
	h.corp.AddClient(testidp.Client{ID: "billing-bot", Secret: "s3cret-billing", Audience: []string{idpAudience}, Claims: billing})
	h.corp.AddClient(testidp.Client{ID: "other-api-bot", Secret: "s3cret-other", Audience: []string{"some-other-api"}, Claims: billing})
	h.corp.AddClient(testidp.Client{ID: "marketing-bot", Secret: "s3cret-marketing", Audience: []string{idpAudience},
		Claims: map[string]any{"groups": []string{"marketing"}, "org": "tenant_a"}})
	// The partner IdP asserts org tenant_a, but it may speak for tenant_b only.
	h.partner.AddClient(testidp.Client{ID: "partner-bot", Secret: "s3cret-partner", Audience: []string{idpAudience}, Claims: billing})
	h.rogue.AddClient(testidp.Client{ID: "billing-bot", Secret: "s3cret-billing", Audience: []string{idpAudience}, Claims: billing})

	h.cfg = exchange.Config{
		Audience: gwAudience,
		IdPs: []exchange.IdPConfig{
			{
				Name: "corp", Issuer: h.corp.Issuer, Audience: idpAudience,
				Tenants: []string{"tenant_a", "tenant_b"}, TenantClaim: "org",
				RequiredClaims: []string{"org"},
				KeysMaxAge:     time.Minute,
				Rules: []exchange.Rule{
					{ID: "billing", Claim: "groups", Contains: "billing-agents", Scopes: []string{"refund:draft", "kb:read"}},
					{ID: "approvers", Claim: "groups", Contains: "refund-approvers", Scopes: []string{"approve:refunds.*"}},
				},
			},
			{
				Name: "partner", Issuer: h.partner.Issuer, Audience: idpAudience,
				Tenants: []string{"tenant_b"}, TenantClaim: "org",
				Rules: []exchange.Rule{{ID: "billing", Claim: "groups", Contains: "billing-agents", Scopes: []string{"kb:read"}}},
			},
		},
	}
	return h
}

// serve starts the exchange service on the harness connection.
func (h *harness) serve(opts ...exchange.Option) {
	h.t.Helper()
	tr := &http.Transport{}
	h.t.Cleanup(tr.CloseIdleConnections)
	opts = append([]exchange.Option{
		exchange.WithClock(h.clock.Now),
		exchange.WithHTTPClient(&http.Client{Transport: tr}),
		exchange.WithAudit(func(ev audit.Event) {
			h.mu.Lock()
			h.events = append(h.events, ev)
			h.mu.Unlock()
		}),
	}, opts...)
	stop, err := exchange.Start(context.Background(), h.nc, h.cfg, h.issuers(), h.box(), opts...)
	must(h.t, err)
	h.t.Cleanup(func() {
		if err := stop(); err != nil {
			h.t.Errorf("exchange stop: %v", err)
		}
	})
}

// box is a Box of the gateway's curve key, for an exchange service.
func (h *harness) box() *identity.Box {
	h.t.Helper()
	b, err := identity.NewBox(h.gwCurve)
	must(h.t, err)
	return b
}

func (h *harness) issuers() map[string]nkeys.KeyPair {
	return map[string]nkeys.KeyPair{"tenant_a": h.issuerA, "tenant_b": h.issuerB}
}

func (h *harness) trust() map[string][]string {
	a, _ := h.issuerA.PublicKey()
	b, _ := h.issuerB.PublicKey()
	return map[string][]string{"tenant_a": {a}, "tenant_b": {b}}
}

func (h *harness) lastEvent() audit.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.events) == 0 {
		h.t.Fatal("no audit event")
	}
	return h.events[len(h.events)-1]
}

// token runs the client-credentials grant at idp.
func (h *harness) token(idp *testidp.IdP, id, secret string) string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := idp.Token(ctx, id, secret)
	must(h.t, err)
	return tok
}

// exchangeCfg is the SDK config for agent a presenting tok.
func (h *harness) exchangeCfg(a *agent, tok string) client.ExchangeConfig {
	return client.ExchangeConfig{
		Audience: gwAudience, Key: a.kp, Curve: a.ck, GatewayXKey: h.gwX,
		Token: func(context.Context) (string, error) { return tok, nil },
	}
}

// exchange runs the SDK's Exchange for the harness agent.
func (h *harness) exchange(tok string, mod func(*client.ExchangeConfig)) (*client.ExchangedCredential, error) {
	cfg := h.exchangeCfg(h.agent, tok)
	if mod != nil {
		mod(&cfg)
	}
	return client.Exchange(context.Background(), h.nc, cfg, client.WithClock(h.clock.Now))
}

// raw sends a hand-built request: build edits the request, sign returns
// the signature header ("" for none). It returns the error code the
// service answered with, or "" on success.
func (h *harness) raw(tok string, build func(*protocol.Request), sign func(body []byte) string) reason.Code {
	h.t.Helper()
	body := h.requestBody(tok, build)
	return h.send(body, sign(body))
}

// requestBody is the harness agent's exchange request for tok, a fresh
// request id, issued now, with its xkey proof; build, when set, edits it
// first.
func (h *harness) requestBody(tok string, build func(*protocol.Request)) []byte {
	h.t.Helper()
	req := h.request(h.agent, tok)
	if build != nil {
		build(req)
	}
	body, err := protocol.Marshal(req)
	must(h.t, err)
	return body
}

// request is a's exchange request for tok: a fresh request id, issued
// now, with the xkey proof a makes with its own curve key.
func (h *harness) request(a *agent, tok string) *protocol.Request {
	h.t.Helper()
	req := &protocol.Request{
		V: protocol.Version, GrantType: protocol.GrantType, SubjectToken: tok, SubjectTokenType: protocol.TokenTypeAccess,
		Audience: gwAudience, Agent: a.pub, XKey: a.xkey, RequestID: protocol.NewRequestID(),
		IssuedAt: h.clock.Now().UTC().Format(time.RFC3339),
	}
	req.XKeyProof = h.xkeyProof(a.ck, req.Agent, req.RequestID)
	return req
}

// xkeyProof is the xkey proof curve makes for agent and requestID.
func (h *harness) xkeyProof(curve nkeys.KeyPair, agent, requestID string) string {
	h.t.Helper()
	p, err := protocol.SealXKeyProof(curve, h.gwX, agent, requestID)
	must(h.t, err)
	return p
}

func (h *harness) send(body []byte, sig string) reason.Code {
	h.t.Helper()
	m := nats.NewMsg(protocol.DefaultSubject)
	m.Data = body
	if sig != "" {
		m.Header.Set(protocol.SignatureHeader, sig)
	}
	reply, err := h.nc.RequestMsg(m, 10*time.Second)
	must(h.t, err)
	return reason.Code(reply.Header.Get("Nats-Service-Error"))
}

func (h *harness) signBy(kp nkeys.KeyPair) func([]byte) string {
	return func(body []byte) string {
		sig, err := protocol.Sign(kp, body)
		must(h.t, err)
		return sig
	}
}

// verifier is the gateway's own credential check for the test tenants.
func (h *harness) verifier() *identity.Verifier {
	v, err := identity.NewVerifier(identity.VerifierConfig{
		Audience: gwAudience, Skew: 30 * time.Second, MaxLifetime: time.Hour, Trust: h.trust(),
	}, identity.NewRevocations())
	must(h.t, err)
	return v
}

// syncBuffer collects log lines written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
