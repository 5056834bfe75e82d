package mcp

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/gwtest"
	"github.com/agentgw/agentgw/internal/natstest"
)

const (
	tenant     = "tenant_a"
	gwAudience = "billing-gateway"
)

// The catalog of the MCP tests: targets served by the bridge, all sealed
// to its curve key and answered through responses. refunds.issue and
// refunds_issue differ only where a dot meets an underscore.
const testCatalog = `
approval_risks: [critical]
targets:
  - name: refunds.draft_refund
    kind: tool_call
    scope: refund:draft
    tenants: [tenant_a]
    consumer_xkey: %[1]s
    payload_schema: '{"type":"object","required":["order_id","amount_cents"],"properties":{"order_id":{"type":"string"},"amount_cents":{"type":"integer","minimum":1}},"additionalProperties":false}'
    policy_visible: [amount_cents]
    approver_visible: [order_id, amount_cents]
    response_deadline: 1m
    response_schema: '{"type":"object","required":["refund_id","status"],"properties":{"refund_id":{"type":"string"},"status":{"enum":["drafted","rejected"]},"customer_email":{"type":"string"}},"additionalProperties":false}'
    sensitive: [customer_email]
  - name: payments.send
    kind: tool_call
    scope: pay:send
    tenants: [tenant_a]
    risk: critical
    consumer_xkey: %[1]s
    payload_schema: '{"type":"object","required":["amount_cents"],"properties":{"amount_cents":{"type":"integer","minimum":1},"currency":{"type":"string"},"to":{"type":"string"},"memo":{"type":"string"}},"additionalProperties":false}'
    approver_visible: [amount_cents]
    response_deadline: 1m
  - name: kb.search
    kind: read
    scope: kb:read
    tenants: [tenant_a]
    consumer_xkey: %[1]s
    response_deadline: 1m
  - name: refunds.issue
    kind: read
    scope: refund:issue
    tenants: [tenant_a]
    consumer_xkey: %[1]s
    response_deadline: 1m
  - name: refunds_issue
    kind: read
    scope: refund:issue
    tenants: [tenant_a]
    consumer_xkey: %[1]s
    response_deadline: 1m
`

const testPolicy = `
@id("allow-same-tenant")
permit (principal, action, resource) when { principal.tenant == resource.tenant };

@id("refund-ceiling")
forbid (principal, action == Action::"tool_call", resource == Target::"refunds.draft_refund")
when { context has payload && context.payload has amount_cents && context.payload.amount_cents > 100000 };
`

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type actor struct {
	kp    nkeys.KeyPair
	pub   string
	curve nkeys.KeyPair
	xkey  string
}

func newActor(t testing.TB) *actor {
	t.Helper()
	kp, err := identity.NewAgent()
	must(t, err)
	pub, _ := kp.PublicKey()
	ck, err := identity.NewCurve()
	must(t, err)
	xkey, _ := ck.PublicKey()
	return &actor{kp: kp, pub: pub, curve: ck, xkey: xkey}
}

// upstreamServer is an MCP tool server built with the official Go SDK.
// It records every call it receives.
type upstreamServer struct {
	URL    string
	bearer string // when set, requests must present it
	mu     sync.Mutex
	got    []string // "<tool> <arguments JSON>"
	ids    []string // each call's _meta request id
	auths  []string // every Authorization header received
}

func (u *upstreamServer) authorizations() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.auths...)
}

func (u *upstreamServer) requestIDs() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.ids...)
}

func (u *upstreamServer) calls() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.got...)
}

type refundIn struct {
	OrderID     string `json:"order_id"`
	AmountCents int    `json:"amount_cents"`
}

type refundOut struct {
	RefundID      string `json:"refund_id"`
	Status        string `json:"status"`
	CustomerEmail string `json:"customer_email"`
}

type payIn struct {
	AmountCents int    `json:"amount_cents"`
	To          string `json:"to"`
}

type payOut struct {
	PaymentID string `json:"payment_id"`
}

type searchIn struct {
	Query string `json:"query"`
}

func startUpstream(t testing.TB, bearer ...string) *upstreamServer {
	t.Helper()
	u := &upstreamServer{}
	if len(bearer) > 0 {
		u.bearer = bearer[0]
	}
	s := newUpstreamServer(u)
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, &sdk.StreamableHTTPOptions{Stateless: true, JSONResponse: true})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		u.mu.Lock()
		u.auths = append(u.auths, got)
		u.mu.Unlock()
		if u.bearer != "" && got != "Bearer "+u.bearer {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u.URL = srv.URL
	return u
}

// newUpstreamServer builds the tool server, recording calls in u.
func newUpstreamServer(u *upstreamServer) *sdk.Server {
	record := func(req *sdk.CallToolRequest) {
		u.mu.Lock()
		u.got = append(u.got, req.Params.Name+" "+string(req.Params.Arguments))
		id, _ := req.Params.Meta[RequestIDMeta].(string)
		u.ids = append(u.ids, id)
		u.mu.Unlock()
	}
	s := sdk.NewServer(&sdk.Implementation{Name: "refunds-upstream", Version: "1"}, nil)
	sdk.AddTool(s, &sdk.Tool{Name: "draft_refund", Description: "Draft a refund"}, func(_ context.Context, req *sdk.CallToolRequest, in refundIn) (*sdk.CallToolResult, refundOut, error) {
		record(req)
		return nil, refundOut{RefundID: "r-" + in.OrderID, Status: "drafted", CustomerEmail: "cust@example.com"}, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "send_payment", Description: "Send a payment"}, func(_ context.Context, req *sdk.CallToolRequest, in payIn) (*sdk.CallToolResult, payOut, error) {
		record(req)
		return nil, payOut{PaymentID: fmt.Sprintf("p-%d", in.AmountCents)}, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "search", Description: "Search the knowledge base"}, func(_ context.Context, req *sdk.CallToolRequest, in searchIn) (*sdk.CallToolResult, any, error) {
		record(req)
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "3 articles about " + in.Query}}}, nil, nil
	})
	return s
}

// mapping is the MCP mapping of the test catalog.
func mapping(upstreamURL string) *Config {
	c := &Config{
		Tenant: tenant,
		Tools: []Tool{
			{Name: "draft_refund", Target: "refunds.draft_refund", Scope: "refund:draft", Description: "Draft a refund",
				InputSchema: `{"type":"object","required":["order_id","amount_cents"],"properties":{"order_id":{"type":"string"},"amount_cents":{"type":"integer"}}}`,
				Upstream:    Upstream{URL: upstreamURL}},
			{Name: "send_payment", Target: "payments.send", Scope: "pay:send", Description: "Send a payment (needs approval)",
				Upstream: Upstream{URL: upstreamURL}},
			{Name: "search", Target: "kb.search", Capability: "read", Scope: "kb:read", Description: "Search the knowledge base",
				Upstream: Upstream{URL: upstreamURL}},
		},
	}
	if err := c.Validate(); err != nil {
		panic(err)
	}
	return c
}

// harness runs NATS, a gateway, an upstream MCP server and the bridge.
type harness struct {
	t         testing.TB
	dir       string
	gw        *gateway.Gateway
	nc        *nats.Conn
	js        jetstream.JetStream
	ctx       context.Context
	issuer    nkeys.KeyPair
	gwSigning string
	gwCurve   string
	bridgeID  *actor // the bridge's agent identity and the consumer curve key
	upstream  *upstreamServer
	cfg       *Config
	logs      *syncBuffer
	natsURL   string
	catalog   string   // the gateway's catalog file
	policies  []string // the gateway's policy files
	secrets   []string // must appear in no log, audit event or stream record
	rejected  chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHarness(t testing.TB) *harness { return newHarnessPolicy(t, testPolicy) }

// newHarnessPolicy is newHarness with the gateway deciding on policy.
func newHarnessPolicy(t testing.TB, policy string) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), logs: &syncBuffer{}, rejected: make(chan error, 16)}
	srv := natstest.Start(t, natstest.Options{})
	h.nc = natstest.Connect(t, srv)
	h.natsURL = srv.ClientURL()
	var err error
	h.js, err = jetstream.New(h.nc)
	must(t, err)
	h.issuer, _ = identity.NewIssuer()
	signing, _ := identity.NewGatewayKey()
	curve, _ := identity.NewCurve()
	h.gwSigning, _ = signing.PublicKey()
	h.gwCurve, _ = curve.PublicKey()
	h.bridgeID = newActor(t)
	write := func(name string, data []byte) string {
		p := filepath.Join(h.dir, name)
		must(t, os.WriteFile(p, data, 0o600))
		return p
	}
	seed := func(kp nkeys.KeyPair) []byte {
		s, _ := kp.Seed()
		h.secrets = append(h.secrets, string(s))
		return s
	}
	seed(h.issuer)
	seed(h.bridgeID.kp)
	seed(h.bridgeID.curve)
	cfg := gateway.DefaultConfig()
	cfg.Audience = gwAudience
	cfg.DataDir = filepath.Join(h.dir, "data")
	cfg.Catalog = write("catalog.yaml", fmt.Appendf(nil, testCatalog, h.bridgeID.xkey))
	cfg.Policies = []string{write("policy.cedar", []byte(policy))}
	h.catalog, h.policies = cfg.Catalog, cfg.Policies
	cfg.Keys = gateway.KeysConfig{Signing: write("signing.nk", seed(signing)), Curve: write("curve.nk", seed(curve))}
	iss, _ := h.issuer.PublicKey()
	cfg.Tenants = map[string]gateway.TenantConfig{tenant: {Issuers: []string{iss}}}
	cfg.Consumer.FetchWait = 200 * time.Millisecond
	logger := zerolog.New(h.logs)
	gw, err := gateway.New(cfg, gateway.WithConn(h.nc), gateway.WithLogger(logger))
	must(t, err)
	h.gw = gw
	h.ctx = gwtest.Run(t, gw, "for the MCP tests")
	h.upstream = startUpstream(t)
	h.cfg = mapping(h.upstream.URL)
	return h
}

// credential issues a credential of the test tenant to a.
func (h *harness) credential(a *actor, scopes ...string) identity.Token {
	h.t.Helper()
	tok, err := identity.Issue(h.issuer, identity.IssueRequest{
		Subject: a.pub, Audience: gwAudience, Tenant: tenant, Service: "mcp-test", Name: "mcp test",
		Scopes: scopes, XKey: a.xkey, TTL: time.Hour,
	}, time.Now())
	must(h.t, err)
	h.secrets = append(h.secrets, tok.Reveal())
	return tok
}

// agent returns an SDK agent for a holding scopes.
func (h *harness) agent(a *actor, scopes ...string) *client.Agent {
	h.t.Helper()
	c := client.DefaultAgentConfig()
	c.Credential, c.Key, c.Curve, c.GatewayXKey = h.credential(a, scopes...), a.kp, a.curve, h.gwCurve
	ag, err := client.NewAgent(h.nc, c)
	must(h.t, err)
	return ag
}

// startBridge runs the bridge until the test ends.
func (h *harness) startBridge() *Bridge {
	h.t.Helper()
	b, _ := h.startBridgeWith(nil)
	return b
}

// startBridgeWith runs a bridge whose consumer configuration edit
// changes (when not nil) until stop is called or the test ends. stop
// waits for it and reports a Run error.
func (h *harness) startBridgeWith(edit func(*client.ConsumerConfig)) (b *Bridge, stop func()) {
	h.t.Helper()
	responder := h.agent(h.bridgeID, "respond:refunds.draft_refund", "respond:payments.send", "respond:kb.search",
		"respond:refunds.issue", "respond:refunds_issue")
	ccfg := client.DefaultConsumerConfig()
	ccfg.Curve, ccfg.TrustedGateways, ccfg.Responder = h.bridgeID.curve, []string{h.gwSigning}, responder
	ccfg.Durable = "mcp-bridge"
	ccfg.OnReject = func(_ string, err error) {
		select {
		case h.rejected <- err:
		default:
		}
	}
	if edit != nil {
		edit(&ccfg)
	}
	b, err := NewBridge(h.js, h.cfg, ccfg)
	must(h.t, err)
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("bridge Run: %v", err)
			}
		})
	}
	h.t.Cleanup(stop)
	return b, stop
}

// scanSecrets fails the test if a secret appears in the gateway's log or
// in any record of any agentgw stream.
func (h *harness) scanSecrets(extra ...string) {
	h.scanTexts(nil, extra...)
}

// jwtLike matches any compact JWT (agentgw credentials and IdP tokens):
// none may appear where scanSecrets looks, whoever issued it.
var jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.`)

// scanTexts is scanSecrets over more texts (a process's output, say).
func (h *harness) scanTexts(more map[string]string, extra ...string) {
	h.t.Helper()
	secrets := append(append([]string(nil), h.secrets...), extra...)
	texts := map[string]string{"gateway log": h.logs.String()}
	maps.Copy(texts, more)
	ctx := context.Background()
	// The ingress stream holds credentials and sealed payloads by
	// design; what operators read and replay must not.
	for _, name := range []string{gateway.StreamDenied, gateway.StreamAudit} {
		s, err := h.js.Stream(ctx, name)
		if err != nil {
			continue
		}
		info, err := s.Info(ctx)
		must(h.t, err)
		var b strings.Builder
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				continue
			}
			fmt.Fprintf(&b, "%s %v %s\n", m.Subject, m.Header, m.Data)
		}
		texts["stream "+name] = b.String()
	}
	for where, text := range texts {
		if m := jwtLike.FindString(text); m != "" {
			h.t.Errorf("%s contains a JWT (%.16s…)", where, m)
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				h.t.Errorf("%s contains a secret (%.12s…)", where, s)
			}
		}
	}
}
