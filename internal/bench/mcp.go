package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/exchange"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/mcp"
)

// MCPResult compares one MCP tool call through the whole agentgw path
// (MCP client → endpoint → gateway → bridge → upstream server → response
// → gateway → endpoint → client) with the same call made directly to the
// upstream server, measured in the same run, calls interleaved: in
// rounds of Concurrency calls in flight at once on one MCP session, a
// round on each path in turn. The rates are each path's calls over the
// time its rounds took, and the CPU figures the whole process's CPU
// during its rounds per call (the path's work still running when its
// round ends, a notice or an acknowledgement, is charged to the other).
type MCPResult struct {
	Calls        int     `json:"calls"`
	Concurrency  int     `json:"concurrency"`
	Direct       Latency `json:"direct"`
	Gateway      Latency `json:"gateway"`
	DirectRate   float64 `json:"direct_calls_per_second"`
	GatewayRate  float64 `json:"gateway_calls_per_second"`
	DirectCPUus  float64 `json:"direct_cpu_us_per_call"`
	GatewayCPUus float64 `json:"gateway_cpu_us_per_call"`
}

const (
	mcpTenant   = "bench"
	mcpAudience = "agentgw-bench"
	mcpTarget   = "bench.echo"
)

// mcp runs the MCP comparison on fresh streams.
func (r *runner) mcp(ctx context.Context) (*MCPResult, error) {
	r.logf("bench: MCP tool call, %d calls through agentgw and directly", r.cfg.MCPCalls)
	if err := r.resetStreams(ctx); err != nil {
		return nil, err
	}
	dir := filepath.Join(r.dir, "mcp")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stops []func()
	defer func() {
		cancel()
		for _, s := range slices.Backward(stops) {
			s()
		}
	}()
	nc, err := r.connect("agentgw-bench-mcp")
	if err != nil {
		return nil, err
	}
	stops = append(stops, nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}

	// Keys and the gateway.
	issuer, _ := identity.NewIssuer()
	signing, _ := identity.NewGatewayKey()
	gwCurve, _ := identity.NewCurve()
	bridgeKey, _ := identity.NewAgent()
	bridgeCurve, _ := identity.NewCurve()
	bridgeXKey, _ := bridgeCurve.PublicKey()
	write := func(name string, data []byte) (string, error) {
		p := filepath.Join(dir, name)
		return p, os.WriteFile(p, data, 0o600)
	}
	seedFile := func(name string, kp nkeys.KeyPair) (string, error) {
		s, _ := kp.Seed()
		return write(name, s)
	}
	cfg := gateway.DefaultConfig()
	cfg.Audience, cfg.DataDir = mcpAudience, filepath.Join(dir, "data")
	var errs []error
	var e1, e2, e3, e4 error
	cfg.Catalog, e1 = write("catalog.yaml", fmt.Appendf(nil, `
targets:
  - name: %s
    kind: tool_call
    scope: bench:call
    tenants: [%s]
    consumer_xkey: %s
    response_deadline: 1m
`, mcpTarget, mcpTenant, bridgeXKey))
	pol, e2 := write("policy.cedar", []byte(`permit (principal, action, resource) when { principal.tenant == resource.tenant };`))
	cfg.Policies = []string{pol}
	cfg.Keys.Signing, e3 = seedFile("signing.nk", signing)
	cfg.Keys.Curve, e4 = seedFile("curve.nk", gwCurve)
	if errs = append(errs, e1, e2, e3, e4); errors.Join(errs...) != nil {
		return nil, fmt.Errorf("bench: %w", errors.Join(errs...))
	}
	issPub, _ := issuer.PublicKey()
	cfg.Tenants = map[string]gateway.TenantConfig{mcpTenant: {Issuers: []string{issPub}}}
	gw, err := gateway.New(cfg, gateway.WithConn(nc), gateway.WithLogger(zerolog.Nop()))
	if err != nil {
		return nil, fmt.Errorf("bench: mcp gateway: %w", err)
	}
	gwDone := make(chan error, 1)
	go func() { gwDone <- gw.Run(ctx) }()
	stops = append(stops, func() { <-gwDone; _ = gw.Close() })
	select {
	case <-gw.Ready():
	case err := <-gwDone:
		gwDone <- err
		return nil, fmt.Errorf("bench: mcp gateway: %w", err)
	case <-time.After(30 * time.Second):
		return nil, errors.New("bench: mcp gateway not ready")
	}
	gwSigning, _ := signing.PublicKey()
	gwXKey, _ := gwCurve.PublicKey()

	// The upstream tool server and a JWKS for the bench's own bearer tokens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	base := "http://" + ln.Addr().String()
	tool := sdk.NewServer(&sdk.Implementation{Name: "bench-upstream", Version: "1"}, nil)
	type echoIn struct {
		N int `json:"n"`
	}
	type echoOut struct {
		N int `json:"n"`
	}
	sdk.AddTool(tool, &sdk.Tool{Name: "echo"}, func(_ context.Context, _ *sdk.CallToolRequest, in echoIn) (*sdk.CallToolResult, echoOut, error) {
		return nil, echoOut(in), nil
	})
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "bench", Algorithm: string(jose.EdDSA), Use: "sig"}}})
	mux := http.NewServeMux()
	mux.Handle("/mcp", sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return tool }, &sdk.StreamableHTTPOptions{Stateless: true, JSONResponse: true}))
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jwks) })
	upSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = upSrv.Serve(ln) }()
	stops = append(stops, func() { _ = upSrv.Close() })

	epLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	resource := "http://" + epLn.Addr().String() + "/mcp"

	// The token exchange maps the bench principal to bench:call, and
	// checks xkey proofs with the gateway's curve key.
	xbox, err := identity.NewBox(gwCurve)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	stopX, err := exchange.Start(ctx, nc, exchange.Config{
		Audience: mcpAudience,
		IdPs: []exchange.IdPConfig{{
			Name: "bench", Issuer: base, JWKSURL: base + "/jwks", Audience: resource, Tenants: []string{mcpTenant}, Tenant: mcpTenant,
			Rules: []exchange.Rule{{ID: "bench", Claim: "groups", Contains: "bench", Scopes: []string{"bench:call"}}},
		}},
	}, map[string]nkeys.KeyPair{mcpTenant: issuer}, xbox, exchange.WithoutAuditPublish())
	if err != nil {
		return nil, fmt.Errorf("bench: mcp exchange: %w", err)
	}
	stops = append(stops, func() { _ = stopX() })

	mapping := &mcp.Config{Tenant: mcpTenant, Tools: []mcp.Tool{{
		Name: "echo", Target: mcpTarget, Scope: "bench:call", Upstream: mcp.Upstream{URL: base + "/mcp"},
	}}, Endpoint: mcp.EndpointConfig{
		Resource: resource, AuthorizationServers: []string{base},
		GatewayAudience: mcpAudience, TrustedGateways: []string{gwSigning}, GatewayXKey: gwXKey,
		TrustedIssuers: []string{issPub},
	}}
	if err := mapping.Validate(); err != nil {
		return nil, err
	}

	// The bridge.
	bridgePub, _ := bridgeKey.PublicKey()
	cred, err := identity.Issue(issuer, identity.IssueRequest{Subject: bridgePub, Audience: mcpAudience, Tenant: mcpTenant,
		Service: "bench-bridge", Name: "bench bridge", Scopes: []string{"respond:" + mcpTarget}, XKey: bridgeXKey, TTL: time.Hour}, time.Now())
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	acfg := client.DefaultAgentConfig()
	acfg.Credential, acfg.Key, acfg.Curve, acfg.GatewayXKey = cred, bridgeKey, bridgeCurve, gwXKey
	responder, err := client.NewAgent(nc, acfg)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	ccfg := client.DefaultConsumerConfig()
	ccfg.Curve, ccfg.TrustedGateways, ccfg.Responder = bridgeCurve, []string{gwSigning}, responder
	ccfg.Durable = "bench-bridge"
	bridge, err := mcp.NewBridge(js, mapping, ccfg)
	if err != nil {
		return nil, err
	}
	bridgeDone := make(chan error, 1)
	go func() { bridgeDone <- bridge.Run(ctx) }()
	stops = append(stops, func() { <-bridgeDone })

	// The endpoint.
	ep, err := mcp.NewEndpoint(nc, mapping)
	if err != nil {
		return nil, err
	}
	epSrv := &http.Server{Handler: ep, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = epSrv.Serve(epLn) }()
	stops = append(stops, func() { _ = epSrv.Close(); _ = ep.Close() })

	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "bench"))
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{"iss": base, "sub": "bench-user", "aud": resource, "iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(), "groups": []string{"bench"}})
	jws, err := signer.Sign(claims)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	bearer, _ := jws.CompactSerialize()

	// Each path's client keeps a connection per call in flight, as the
	// bridge does to its upstream.
	conc := max(1, r.cfg.MCPConcurrency)
	connect := func(url string, token string) (*sdk.ClientSession, error) {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = conc
		stops = append(stops, tr.CloseIdleConnections)
		hc := &http.Client{Transport: tr}
		if token != "" {
			hc.Transport = bearerRoundTripper{token: token, base: tr}
		}
		c := sdk.NewClient(&sdk.Implementation{Name: "agentgw-bench", Version: "1"}, nil)
		return c.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: url, HTTPClient: hc, DisableStandaloneSSE: true}, nil)
	}
	direct, err := connect(base+"/mcp", "")
	if err != nil {
		return nil, fmt.Errorf("bench: direct MCP session: %w", err)
	}
	stops = append(stops, func() { _ = direct.Close() })
	through, err := connect(resource, bearer)
	if err != nil {
		return nil, fmt.Errorf("bench: MCP session through agentgw: %w", err)
	}
	stops = append(stops, func() { _ = through.Close() })

	call := func(s *sdk.ClientSession, n int) (time.Duration, error) {
		t0 := time.Now()
		res, err := s.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"n": n}})
		d := time.Since(t0)
		if err != nil {
			return 0, err
		}
		got, _ := json.Marshal(res.StructuredContent)
		if string(got) != fmt.Sprintf(`{"n":%d}`, n) {
			return 0, fmt.Errorf("%w: MCP echo %d returned %s", ErrMismatch, n, got)
		}
		return d, nil
	}
	// round makes calls first..first+n-1 on s at once, and returns their
	// durations, the round's, and the process's CPU meanwhile.
	round := func(s *sdk.ClientSession, first, n int) ([]time.Duration, time.Duration, time.Duration, error) {
		ds := make([]time.Duration, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		cpu0, _ := processCPU()
		t0 := time.Now()
		for i := range n {
			wg.Go(func() { ds[i], errs[i] = call(s, first+i) })
		}
		wg.Wait()
		wall := time.Since(t0)
		cpu1, _ := processCPU()
		return ds, wall, cpu1 - cpu0, errors.Join(errs...)
	}
	c := conc
	warm := c * min(10, (r.cfg.MCPCalls+c-1)/c) // whole rounds
	var dDirect, dThrough []time.Duration
	var wallDirect, wallThrough, cpuDirect, cpuThrough time.Duration
	var prof *profiles
	defer func() {
		if prof != nil {
			_ = prof.stop()
		}
	}()
	for i := 0; i < warm+r.cfg.MCPCalls; i += c {
		if i == warm {
			// The measured calls, both paths, in the profiles asked for.
			if prof, err = r.startProfiles("mcp"); err != nil {
				return nil, err
			}
		}
		n := min(c, warm+r.cfg.MCPCalls-i)
		a, wa, ca, err := round(direct, i, n)
		if err != nil {
			return nil, fmt.Errorf("bench: direct MCP call: %w", err)
		}
		b, wb, cb, err := round(through, i, n)
		if err != nil {
			return nil, fmt.Errorf("bench: MCP call through agentgw: %w", err)
		}
		if i >= warm {
			dDirect, dThrough = append(dDirect, a...), append(dThrough, b...)
			wallDirect, wallThrough = wallDirect+wa, wallThrough+wb
			cpuDirect, cpuThrough = cpuDirect+ca, cpuThrough+cb
		}
	}
	perCall := func(cpu time.Duration, n int) float64 {
		if n == 0 {
			return 0
		}
		return float64(cpu.Microseconds()) / float64(n)
	}
	return &MCPResult{Calls: len(dThrough), Concurrency: c, Direct: durationLatency(dDirect), Gateway: durationLatency(dThrough),
		DirectRate: perSecond(len(dDirect), wallDirect), GatewayRate: perSecond(len(dThrough), wallThrough),
		DirectCPUus: perCall(cpuDirect, len(dDirect)), GatewayCPUus: perCall(cpuThrough, len(dThrough))}, nil
}

// perSecond is n over d, or 0 for no time.
func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// durationLatency summarises durations in microseconds.
func durationLatency(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	q := func(p float64) int64 { return ds[min(len(ds)-1, int(p*float64(len(ds))))].Microseconds() }
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return Latency{
		Count: int64(len(ds)), Mean: float64(sum.Microseconds()) / float64(len(ds)),
		P50: q(0.50), P90: q(0.90), P99: q(0.99), P999: q(0.999), Max: ds[len(ds)-1].Microseconds(),
	}
}

// bearerRoundTripper presents the bench principal's bearer token.
type bearerRoundTripper struct {
	token string
	base  http.RoundTripper
}

func (t bearerRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.base.RoundTrip(r)
}
