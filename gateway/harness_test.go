package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/delivery"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/gateway/operator"
	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/subjects"
)

const testAudience = "billing-gateway"

// fakeClock is the only faked part: every decision reads it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// syncBuffer collects every log line the gateway writes.
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

// actor is an agent (or approver, or consumer) with its keys.
type actor struct {
	kp    nkeys.KeyPair
	pub   string
	seed  []byte
	signr *identity.Signer
	curve nkeys.KeyPair
	xkey  string
	box   *identity.Box
	token identity.Token
}

func newActor(t testing.TB) *actor {
	t.Helper()
	kp, err := identity.NewAgent()
	must(t, err)
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	s, err := identity.NewSigner(kp)
	must(t, err)
	ck, err := identity.NewCurve()
	must(t, err)
	xkey, _ := ck.PublicKey()
	box, err := identity.NewBox(ck)
	must(t, err)
	return &actor{kp: kp, pub: pub, seed: seed, signr: s, curve: ck, xkey: xkey, box: box}
}

type harness struct {
	t      testing.TB
	srv    *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	dir    string
	cfg    Config
	clock  *fakeClock
	logs   *syncBuffer
	gw     *Gateway
	cancel context.CancelFunc
	done   chan error

	issuer    nkeys.KeyPair
	issuerB   nkeys.KeyPair // trusted for tenant_b only
	untrusted nkeys.KeyPair
	gwCurve   string
	gwSigning string
	consumer  *actor // holds the refunds consumer curve key
	agent     *actor
	secrets   []string // everything that must never be emitted
	emitted   []string // more emitted text to scan: metrics scrapes, spans
	opts      []Option // extra gateway options
	// journalMaxAge is scale_out.journal_max_age of the instances
	// startInstance starts next (zero: the default).
	journalMaxAge time.Duration
	// allowErrors accepts error-level log lines (tests that inject
	// failures); otherwise any error logged fails the test.
	allowErrors bool
	// beforeRun, when set, is called with the gateway New made, before
	// Run (a test writes into its ledger).
	beforeRun func(*Gateway)
}

const testCatalog = `
approval_risks: [critical]
targets:
  - name: refunds.draft_refund
    kind: tool_call
    scope: refund:draft
    tenants: [tenant_a]
    risk: medium
    consumer_xkey: %[1]s
    payload_schema: '{"type":"object","required":["order_id","amount_cents"],"properties":{"order_id":{"type":"string"},"amount_cents":{"type":"integer","minimum":1}},"additionalProperties":false}'
    policy_visible: [amount_cents]
    approver_visible: [order_id, amount_cents]
    response_deadline: 1m
    response_schema: '{"type":"object","required":["refund_id","status"],"properties":{"refund_id":{"type":"string"},"status":{"enum":["drafted","rejected"]},"customer_email":{"type":"string"}},"additionalProperties":false}'
    sensitive: [customer_email]
  - name: kb.search
    kind: read
    scope: kb:read
    tenants: [tenant_a, tenant_b]
    plain: true
  - name: payments.send
    kind: tool_call
    scope: pay:send
    tenants: [tenant_a]
    risk: critical
    plain: true
    consumer_xkey: %[1]s
    payload_schema: '{"type":"object","required":["amount_cents"],"properties":{"amount_cents":{"type":"integer","minimum":1},"currency":{"type":"string"},"iban":{"type":"string"}},"additionalProperties":false}'
    approver_visible: [amount_cents]
  - name: ops.forbidden
    kind: tool_call
    scope: refund:draft
    tenants: [tenant_a]
    plain: true
  - name: ops.limited
    kind: read
    scope: kb:read
    tenants: [tenant_a]
    plain: true
    budget: {rate: 0.001, burst: 1}
  - name: b.only
    kind: read
    scope: kb:read
    tenants: [tenant_b]
    plain: true
`

const testPolicy = `
@id("allow-same-tenant")
permit (principal, action, resource) when { principal.tenant == resource.tenant };

@id("forbid-ops")
forbid (principal, action, resource == Target::"ops.forbidden");

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

func writeSeed(t testing.TB, path string, kp nkeys.KeyPair) {
	t.Helper()
	seed, err := kp.Seed()
	must(t, err)
	must(t, os.WriteFile(path, seed, 0o600))
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), clock: &fakeClock{now: time.Now().UTC().Truncate(time.Second)}, logs: &syncBuffer{}}
	h.srv = natstest.Start(t, natstest.Options{})
	h.nc = natstest.Connect(t, h.srv)
	var err error
	h.js, err = jetstream.New(h.nc)
	must(t, err)

	h.issuer, _ = identity.NewIssuer()
	h.issuerB, _ = identity.NewIssuer()
	h.untrusted, _ = identity.NewIssuer()
	signing, _ := identity.NewGatewayKey()
	curve, _ := identity.NewCurve()
	h.gwCurve, _ = curve.PublicKey()
	h.gwSigning, _ = signing.PublicKey()
	writeSeed(t, filepath.Join(h.dir, "signing.nk"), signing)
	writeSeed(t, filepath.Join(h.dir, "curve.nk"), curve)
	h.consumer = newActor(t)
	h.agent = newActor(t)
	must(t, os.WriteFile(filepath.Join(h.dir, "catalog.yaml"), fmt.Appendf(nil, testCatalog, h.consumer.xkey), 0o600))
	must(t, os.WriteFile(filepath.Join(h.dir, "policy.cedar"), []byte(testPolicy), 0o600))
	issA, _ := h.issuer.PublicKey()
	issB, _ := h.issuerB.PublicKey()

	cfg := DefaultConfig()
	cfg.Audience = testAudience
	cfg.DataDir = filepath.Join(h.dir, "data")
	cfg.Catalog = filepath.Join(h.dir, "catalog.yaml")
	cfg.Policies = []string{filepath.Join(h.dir, "policy.cedar")}
	cfg.Keys = KeysConfig{Signing: filepath.Join(h.dir, "signing.nk"), Curve: filepath.Join(h.dir, "curve.nk")}
	cfg.Tenants = map[string]TenantConfig{"tenant_a": {Issuers: []string{issA}}, "tenant_b": {Issuers: []string{issB}}}
	cfg.Revocations.File = filepath.Join(h.dir, "revocations.yaml")
	must(t, os.WriteFile(cfg.Revocations.File, []byte("jtis: []\nkeys: []\nprincipals: []\n"), 0o600))
	cfg.Consumer.FetchWait = 200 * time.Millisecond
	cfg.Consumer.AckWait = 2 * time.Second
	h.cfg = cfg

	h.agent.token = h.credential(h.issuer, h.agent, "tenant_a", []string{"refund:draft", "kb:read", "pay:send"}, time.Hour, "")
	for _, kp := range []nkeys.KeyPair{h.issuer, h.issuerB, h.untrusted, signing, curve, h.consumer.kp, h.consumer.curve, h.agent.kp, h.agent.curve} {
		seed, _ := kp.Seed()
		h.secrets = append(h.secrets, string(seed))
	}
	return h
}

// credential issues a credential; aud "" means the test audience.
func (h *harness) credential(issuer nkeys.KeyPair, a *actor, tenant string, scopes []string, ttl time.Duration, aud string) identity.Token {
	h.t.Helper()
	if aud == "" {
		aud = testAudience
	}
	tok, err := identity.Issue(issuer, identity.IssueRequest{
		Subject: a.pub, Audience: aud, Tenant: tenant, Service: "test-agent", Name: "test agent",
		Scopes: scopes, XKey: a.xkey, TTL: ttl,
	}, h.clock.Now())
	must(h.t, err)
	h.secrets = append(h.secrets, tok.Reveal())
	return tok
}

func (h *harness) start() {
	h.t.Helper()
	logger := zerolog.New(h.logs).With().Timestamp().Logger()
	gw, err := New(h.cfg, append([]Option{WithClock(h.clock.Now), WithLogger(logger), WithConn(h.nc)}, h.opts...)...)
	must(h.t, err)
	if gw.CurveKey() != h.gwCurve {
		h.t.Fatalf("gateway curve key = %s; want %s", gw.CurveKey(), h.gwCurve)
	}
	if h.beforeRun != nil {
		h.beforeRun(gw)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.gw, h.cancel, h.done = gw, cancel, make(chan error, 1)
	go func() { h.done <- gw.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.gw == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("gateway Run: %v", err)
	}
	if err := h.gw.Close(); err != nil {
		h.t.Errorf("gateway Close: %v", err)
	}
	h.gw = nil
	if !h.allowErrors {
		for _, line := range strings.Split(h.logs.String(), "\n") {
			if strings.Contains(line, `"level":"error"`) {
				h.t.Errorf("the gateway logged an error: %s", line)
				break
			}
		}
	}
}

// plainBody builds a valid body for a plain-payload target.
func (h *harness) body(mod func(*envelope.Builder)) []byte {
	h.t.Helper()
	b := envelope.Builder{
		Tenant: "tenant_a", Audience: testAudience, Capability: envelope.Read, Target: "kb.search",
		Payload: envelope.Payload{Plain: json.RawMessage(`{"q":"refund policy"}`)},
	}
	if mod != nil {
		mod(&b)
	}
	body, err := b.Build(h.clock.Now())
	must(h.t, err)
	return body
}

// sealedRefund builds a sealed refund request from a, returning the body
// and the exact plaintext sealed.
func (h *harness) sealedRefund(a *actor, amount int, mod func(*envelope.Builder)) ([]byte, []byte) {
	h.t.Helper()
	plain := fmt.Appendf(nil, `{"order_id":"ord_%d","amount_cents":%d}`, amount, amount)
	sealed, err := a.box.Seal(plain, h.gwCurve)
	must(h.t, err)
	body := h.body(func(b *envelope.Builder) {
		b.Capability, b.Target = envelope.ToolCall, "refunds.draft_refund"
		b.Payload = envelope.Payload{Sealed: base64.RawURLEncoding.EncodeToString(sealed), From: a.xkey, To: h.gwCurve}
		if mod != nil {
			mod(b)
		}
	})
	h.secrets = append(h.secrets, string(plain))
	return body, plain
}

// publish sends raw bytes as an agent would, with optional header edits.
// It returns the ingress stream sequence.
func (h *harness) publish(subject string, body []byte, hdr nats.Header) uint64 {
	h.t.Helper()
	m := nats.NewMsg(subject)
	m.Data = body
	for k, v := range hdr {
		m.Header[k] = v
	}
	ack, err := h.js.PublishMsg(context.Background(), m)
	must(h.t, err)
	if ack.Duplicate {
		h.t.Fatalf("publish to %s was de-duplicated by JetStream", subject)
	}
	return ack.Sequence
}

// signed returns the standard agent headers for body.
func (h *harness) signed(a *actor, tok identity.Token, body []byte) nats.Header {
	return nats.Header{
		header.Credential: []string{tok.Reveal()},
		header.Signature:  []string{base64.RawURLEncoding.EncodeToString(a.signr.Sign(envelope.SigningInput(body)))},
	}
}

func (h *harness) ingress(a *actor, tenant string) string {
	s, err := subjects.Ingress(tenant, a.pub)
	must(h.t, err)
	return s
}

// send publishes a correctly signed body from the harness agent.
func (h *harness) send(body []byte) uint64 {
	return h.publish(h.ingress(h.agent, "tenant_a"), body, h.signed(h.agent, h.agent.token, body))
}

// delivery parses a capability output's body.
func (h *harness) delivery(m *jetstream.RawStreamMsg) delivery.Doc {
	h.t.Helper()
	d, err := delivery.Parse(m.Data, 1<<20)
	must(h.t, err)
	return d
}

// checkApprovalToken fails the test unless m, an approval request, carries
// in Agentgw-Decision a token of this gateway valid when it was decided
// (Agentgw-Decided-At): route approval, addressed to the request's
// target, bound to the request's exact bytes and to the held envelope it
// names, and living at least until the request's deadline.
func (h *harness) checkApprovalToken(m *jetstream.RawStreamMsg) {
	h.t.Helper()
	var req approval.Request
	must(h.t, json.Unmarshal(m.Data, &req))
	at, err := time.Parse(time.RFC3339Nano, m.Header.Get(header.DecidedAt))
	must(h.t, err)
	c, err := decision.Verify(m.Header.Get(header.Decision), decision.VerifyOptions{
		TrustedGateways: []string{h.gwSigning}, Audience: req.Target, Now: at,
	})
	if err != nil {
		h.t.Fatalf("approval request token: %v", err)
	}
	if c.Route != decision.RouteApproval || c.PayloadDigest != decision.Digest(m.Data) || c.Tenant != req.Tenant ||
		c.MessageID != req.HeldMessageID || c.Subject != req.Agent || "sha256:"+c.BodyDigest != req.BodyDigest ||
		c.TraceID != req.TraceID || c.PolicyVersion != req.PolicyVersion || c.Expires.Before(req.Deadline) {
		h.t.Fatalf("approval request token claims %+v do not bind the request %s", c, m.Data)
	}
}

// outputFor waits for the terminal output of an ingress sequence (a
// decision notice is not one).
func (h *harness) outputFor(seq uint64) *jetstream.RawStreamMsg {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, name := range []string{StreamCap, StreamApproval, StreamDenied, StreamReply} {
			for _, m := range h.all(name) {
				if m.Header.Get(header.IngressSeq) == fmt.Sprint(seq) && m.Header.Get(notice.Header) == "" {
					return m
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("no output for ingress sequence %d", seq)
	return nil
}

// find scans a stream for a message whose header k equals v.
func (h *harness) find(stream, k, v string) *jetstream.RawStreamMsg {
	for _, m := range h.all(stream) {
		if m.Header.Get(k) == v {
			return m
		}
	}
	return nil
}

// streamNames lists every stream on the server.
func (h *harness) streamNames() []string {
	h.t.Helper()
	var names []string
	l := h.js.StreamNames(context.Background())
	for n := range l.Name() {
		names = append(names, n)
	}
	must(h.t, l.Err())
	return names
}

func (h *harness) all(stream string) []*jetstream.RawStreamMsg {
	ctx := context.Background()
	s, err := h.js.Stream(ctx, stream)
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return nil
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		if m, err := s.GetMsg(ctx, seq); err == nil {
			out = append(out, m)
		}
	}
	return out
}

// scanSecrets fails the test if any secret appears in anything the
// gateway emitted: logs, metrics and spans, and the raw headers and
// bodies of every message of every stream on the server (outputs,
// journal, buckets) but the ingress stream, where agents themselves put
// their credentials.
func (h *harness) scanSecrets() {
	h.t.Helper()
	emitted := append([]string{h.logs.String()}, h.emitted...)
	for _, name := range h.streamNames() {
		if name == StreamIngress {
			continue
		}
		for _, m := range h.all(name) {
			emitted = append(emitted, fmt.Sprint(m.Header), string(m.Data))
		}
	}
	all := strings.Join(emitted, "\n")
	for _, s := range h.secrets {
		if s != "" && strings.Contains(all, s) {
			h.t.Errorf("a secret (%d bytes, starts %q) was emitted", len(s), s[:min(4, len(s))])
		}
	}
	// A JWT whose header starts {"typ":"JWT" or {"alg": (base64url below)
	// is a leak too. Nothing here looks for seeds: one is caught only above,
	// as a secret the harness knows.
	for _, frag := range []string{"eyJ0eXAiOiJKV1Qi", "eyJhbGciOi"} {
		if strings.Contains(all, frag) {
			h.t.Errorf("a JWT-shaped string was emitted")
		}
	}
}

// replayOperator is an actor with a credential of tenant_a granting
// operator:replay.
func (h *harness) replayOperator() *actor {
	op := newActor(h.t)
	op.token = h.credential(h.issuer, op, "tenant_a", []string{operator.Scope}, time.Hour, "")
	return op
}

// setReplayAuth sets on hdr what the gateway writes when it re-submits
// body, denied at deniedSeq, for the operator op until exp (Unix
// seconds): Agentgw-Replay, and op's credential sealed to the gateway as
// Agentgw-Replay-Credential.
func (h *harness) setReplayAuth(hdr nats.Header, body []byte, deniedSeq uint64, op *actor, exp int64) {
	h.t.Helper()
	sealed, err := h.gw.box.SealCredential(op.token.Reveal(), body)
	must(h.t, err)
	digest := envelope.Digest(body)
	cd := sha256.Sum256([]byte(sealed))
	sig := h.gw.signer.Sign(operator.ReplayInput(hex.EncodeToString(digest[:]), deniedSeq, op.pub, exp, hex.EncodeToString(cd[:])))
	hdr.Set(header.Replay, fmt.Sprintf("%d.%s.%d.%s", deniedSeq, op.pub, exp, base64.RawURLEncoding.EncodeToString(sig)))
	hdr.Set(header.ReplayCredential, sealed)
}
