package mcp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/approval"
	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/exchange"
	"github.com/agentgw/agentgw/internal/e2e/oidc/testidp"
)

// endpointHarness adds a real OpenID provider, the token exchange, the
// bridge and the MCP endpoint to the gateway harness.
type endpointHarness struct {
	*harness
	idp      *testidp.IdP
	resource string // the endpoint's canonical URI
	endpoint *Endpoint
}

// The IdP's clients: MCP principals with their tokens' audience.
var idpClients = []testidp.Client{
	{ID: "alice-ide", Secret: "s3cret-alice", Claims: map[string]any{"groups": []string{"billing"}, "org": tenant}},
	{ID: "bob-ide", Secret: "s3cret-bob", Claims: map[string]any{"groups": []string{"support"}, "org": tenant}},
}

func newEndpointHarness(t testing.TB) *endpointHarness {
	t.Helper()
	h := &endpointHarness{harness: newHarness(t)}
	h.idp = testidp.Start(t)
	srv := httptest.NewUnstartedServer(nil)
	h.resource = "http://" + srv.Listener.Addr().String() + "/mcp"
	for _, c := range idpClients {
		c.Audience = []string{h.resource}
		h.idp.AddClient(c)
		h.secrets = append(h.secrets, c.Secret)
	}
	h.idp.AddClient(testidp.Client{ID: "alice-other-api", Secret: "s3cret-other", Audience: []string{"https://other.example/mcp"},
		Claims: map[string]any{"groups": []string{"billing"}, "org": tenant}})

	xcfg := exchange.Config{
		Audience: gwAudience,
		IdPs: []exchange.IdPConfig{{
			Name: "corp", Issuer: h.idp.Issuer, Audience: h.resource,
			Tenants: []string{tenant}, TenantClaim: "org", RequiredClaims: []string{"org"}, KeysMaxAge: time.Minute,
			Rules: []exchange.Rule{
				{ID: "billing", Claim: "groups", Contains: "billing", Scopes: []string{"refund:draft", "pay:send", "kb:read"}},
				{ID: "support", Claim: "groups", Contains: "support", Scopes: []string{"kb:read"}},
			},
		}},
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	stop, err := exchange.Start(h.ctx, h.nc, xcfg, map[string]nkeys.KeyPair{tenant: h.issuer}, exchange.WithHTTPClient(&http.Client{Transport: tr}))
	must(t, err)
	t.Cleanup(func() { must(t, stop()) })
	h.startBridge()

	h.cfg.Endpoint = EndpointConfig{
		Resource: h.resource, AuthorizationServers: []string{h.idp.Issuer}, AllowedOrigins: []string{"https://ide.example"},
		GatewayAudience: gwAudience, TrustedGateways: []string{h.gwSigning}, GatewayXKey: h.gwCurve,
		CallTimeout: 20 * time.Second, ApprovalWait: 30 * time.Second, KeyDir: t.TempDir(),
	}
	h.endpoint, err = NewEndpoint(h.nc, h.cfg)
	must(t, err)
	t.Cleanup(func() { must(t, h.endpoint.Close()) })
	srv.Config.Handler = h.endpoint
	srv.Start()
	t.Cleanup(srv.Close)
	return h
}

// token returns a client-credentials access token of the IdP.
func (h *endpointHarness) token(id, secret string) string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := h.idp.Token(ctx, id, secret)
	must(h.t, err)
	h.secrets = append(h.secrets, tok)
	return tok
}

// connect returns an official Go SDK client session presenting tok.
func (h *endpointHarness) connect(tok string) *sdk.ClientSession {
	h.t.Helper()
	hc := &http.Client{Transport: bearerTransport{token: tok, base: http.DefaultTransport}}
	c := sdk.NewClient(&sdk.Implementation{Name: "test-ide", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
	defer cancel()
	s, err := c.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: h.resource, HTTPClient: hc, DisableStandaloneSSE: true}, nil)
	must(h.t, err)
	h.t.Cleanup(func() { _ = s.Close() })
	return s
}

// approve runs an approver that answers every held request of the test
// tenant with decide, until the test ends.
func (h *endpointHarness) approve(decide func(approval.Request) string) {
	h.t.Helper()
	a := newActor(h.t)
	cfg := client.ApproverConfig{AgentConfig: client.DefaultAgentConfig()}
	cfg.Credential, cfg.Key, cfg.Curve, cfg.GatewayXKey = h.credential(a, "approve:payments.send"), a.kp, a.curve, h.gwCurve
	ap, err := client.NewApprover(h.nc, h.js, cfg)
	must(h.t, err)
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() {
		done <- ap.Watch(ctx, func(ctx context.Context, r approval.Request) error {
			_, err := ap.Answer(ctx, r, decide(r), "checked by the test")
			return err
		})
	}()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("approver Watch: %v", err)
		}
	})
}
