package mcp

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/exchange"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/e2e/oidc/testidp"
)

// endpointHarness adds a real OpenID provider, the token exchange, the
// bridge and the MCP endpoint to the gateway harness.
type endpointHarness struct {
	*harness
	idp      *testidp.IdP
	resource string      // the endpoint's canonical URI
	endpoint *Endpoint   // nil when the endpoint is the agentgw process
	cliOut   *syncBuffer // that process's output
}

// The IdP's clients: MCP principals with their tokens' audience.
var idpClients = []testidp.Client{
	{ID: "alice-ide", Secret: "s3cret-alice", Claims: map[string]any{"groups": []string{"billing"}, "org": tenant}},
	{ID: "bob-ide", Secret: "s3cret-bob", Claims: map[string]any{"groups": []string{"support"}, "org": tenant}},
}

// newEndpointHarness starts everything; with cli the endpoint is the
// agentgw binary running `agentgw mcp serve`, else it runs in the test.
func newEndpointHarness(t testing.TB, cli ...bool) *endpointHarness {
	t.Helper()
	return newEndpointHarnessWith(t, endpointOptions{cli: len(cli) > 0 && cli[0], policy: testPolicy})
}

// endpointOptions vary the endpoint harness.
type endpointOptions struct {
	cli    bool   // the endpoint is the agentgw process
	policy string // the gateway's Cedar policy
	gate   bool   // the endpoint reads the gateway's catalog and policies
	// trusted replaces the gateway's signing key in trusted_gateways,
	// and callTimeout (when set) the harness's call_timeout.
	trusted     []string
	callTimeout time.Duration
}

// newEndpointHarnessWith starts everything as o says.
func newEndpointHarnessWith(t testing.TB, o endpointOptions) *endpointHarness {
	t.Helper()
	h := &endpointHarness{harness: newHarnessPolicy(t, o.policy)}
	h.idp = testidp.Start(t)
	srv := httptest.NewUnstartedServer(nil)
	addr := srv.Listener.Addr().String()
	if o.cli {
		srv.Listener.Close() // the port goes to the agentgw process
	}
	h.resource = "http://" + addr + "/mcp"
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
	// The exchange checks xkey proofs with the gateway's curve key.
	gwCurve, err := identity.ReadSeedFile(filepath.Join(h.dir, "curve.nk"))
	must(t, err)
	xbox, err := identity.NewBox(gwCurve)
	must(t, err)
	stop, err := exchange.Start(h.ctx, h.nc, xcfg, map[string]nkeys.KeyPair{tenant: h.issuer}, xbox, exchange.WithHTTPClient(&http.Client{Transport: tr}))
	must(t, err)
	t.Cleanup(func() { must(t, stop()) })
	h.startBridge()

	issuerPub, _ := h.issuer.PublicKey()
	h.cfg.Endpoint = EndpointConfig{
		Resource: h.resource, AuthorizationServers: []string{h.idp.Issuer}, AllowedOrigins: []string{"https://ide.example"},
		GatewayAudience: gwAudience, TrustedGateways: []string{h.gwSigning}, GatewayXKey: h.gwCurve, TrustedIssuers: []string{issuerPub},
		CallTimeout: 20 * time.Second, ApprovalWait: 30 * time.Second, KeyDir: t.TempDir(),
	}
	if o.trusted != nil {
		h.cfg.Endpoint.TrustedGateways = o.trusted
	}
	if o.callTimeout > 0 {
		h.cfg.Endpoint.CallTimeout = o.callTimeout
	}
	if o.gate {
		h.cfg.Endpoint.Catalog, h.cfg.Endpoint.Policies = h.catalog, h.policies
		h.cfg.Endpoint.ReloadInterval = 100 * time.Millisecond
	}
	if o.cli {
		h.serveCLI(addr)
		return h
	}
	h.endpoint, err = NewEndpoint(h.nc, h.cfg)
	must(t, err)
	t.Cleanup(func() { must(t, h.endpoint.Close()) })
	srv.Config.Handler = h.endpoint
	srv.Start()
	t.Cleanup(srv.Close)
	return h
}

// serveCLI builds agentgw and runs `agentgw mcp serve` on addr with the
// harness's mapping until the test ends. Its output is kept in h.cliOut.
func (h *endpointHarness) serveCLI(addr string) {
	t := h.t
	t.Helper()
	bin := filepath.Join(t.TempDir(), "agentgw")
	build := exec.Command("go", "build", "-o", bin, "github.com/agentgw/agentgw/cmd/agentgw")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build agentgw: %v\n%s", err, out)
	}
	data, err := yaml.Marshal(h.cfg)
	must(t, err)
	cfgPath := filepath.Join(h.dir, "mcp.yaml")
	must(t, os.WriteFile(cfgPath, data, 0o600))
	h.cliOut = &syncBuffer{}
	cmd := exec.Command(bin, "mcp", "serve", "--config", cfgPath, "--listen", addr, "--server", h.natsURL)
	cmd.Stdout, cmd.Stderr = h.cliOut, h.cliOut
	must(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Error("agentgw mcp serve did not stop on interrupt")
		}
	})
	meta := strings.Replace(h.resource, "/mcp", "/.well-known/oauth-protected-resource/mcp", 1)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(meta); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("agentgw mcp serve exited: %v\n%s", err, h.cliOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agentgw mcp serve not ready\n%s", h.cliOut.String())
		}
	}
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

// postRPC posts one raw JSON-RPC body to the endpoint with bearer tok,
// as an HTTP client would, and returns the status and the response body.
func (h *endpointHarness) postRPC(tok, body string) (int, string) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.resource, strings.NewReader(body))
	must(h.t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	must(h.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// connect returns an official Go SDK client session presenting tok.
func (h *endpointHarness) connect(tok string) *sdk.ClientSession {
	h.t.Helper()
	ru, err := url.Parse(h.resource)
	must(h.t, err)
	hc := &http.Client{Transport: bearerTransport{token: tok, origin: ru.Scheme + "://" + ru.Host, base: http.DefaultTransport}}
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
	cfg.TrustedGateways = []string{h.gwSigning}
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
