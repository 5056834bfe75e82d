package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/exchange/protocol"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
)

// checkIngress verifies m as the gateway would: the credential is the
// agent's and verifies, the signature verifies with the agent key over the
// exact bytes, the id headers agree. It returns the parsed body.
func (w *world) checkIngress(m *jetstream.RawStreamMsg, a *actor) *envelope.Body {
	w.t.Helper()
	body, err := envelope.Parse(m.Data, envelope.Limits{})
	if err != nil {
		w.t.Fatalf("Parse(stored body) = %v", err)
	}
	if err := (envelope.Freshness{}).Check(body, testClock); err != nil {
		w.t.Errorf("Freshness.Check = %v", err)
	}
	raw, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(a.pub))
	if err != nil {
		w.t.Fatal(err)
	}
	if err := envelope.Verify(ed25519.PublicKey(raw), m.Data, m.Header.Get(header.Signature)); err != nil {
		w.t.Errorf("envelope.Verify(stored body, agent key) = %v; want nil", err)
	}
	v, err := identity.NewVerifier(identity.VerifierConfig{
		Audience: testAudience, Trust: map[string][]string{testTenant: {mustPubKey(w.t, w.issuer)}},
	}, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	cred, err := v.Verify(m.Header.Get(header.Credential), testClock)
	if err != nil || cred.Subject != a.pub {
		w.t.Errorf("credential header: Verify = %v, subject %v; want the agent's", err, cred)
	}
	if got := m.Header.Get(header.MsgID); got != body.MessageID {
		w.t.Errorf("Nats-Msg-Id = %q; want message_id %q", got, body.MessageID)
	}
	if tp := m.Header.Get(header.Traceparent); !strings.HasPrefix(tp, "00-"+body.TraceID+"-") || !strings.HasSuffix(tp, "-00") || len(tp) != 55 {
		w.t.Errorf("traceparent = %q; want 00-%s-<span>-00 (not sampled: nothing recorded it)", tp, body.TraceID)
	}
	if body.Tenant != testTenant || body.Audience != testAudience {
		w.t.Errorf("tenant, audience = %s, %s", body.Tenant, body.Audience)
	}
	return body
}

func mustPubKey(t testing.TB, kp nkeys.KeyPair) string {
	t.Helper()
	p, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSendSealedIsVerifiable(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	a := w.newActor(testTenant, "refund:draft")
	plaintext := []byte(`{"order":"A-1","amount_cents":2500}`)
	rcpt, err := w.agent(a).Send(ctxT(t), Request{
		Capability: envelope.ToolCall, Target: testTarget, Sealed: plaintext, IdempotencyKey: "order-A-1",
	})
	if err != nil {
		t.Fatalf("Send = %v", err)
	}
	msgs := w.all("AGENTGW_IN")
	if len(msgs) != 1 {
		t.Fatalf("stream holds %d messages; want 1", len(msgs))
	}
	m := msgs[0]
	if rcpt.Stream != "AGENTGW_IN" || rcpt.Seq != m.Sequence || rcpt.Attempts != 1 {
		t.Errorf("receipt = %+v; want stream AGENTGW_IN seq %d attempts 1", rcpt, m.Sequence)
	}
	if m.Subject != "agentgw.in.0."+testTenant+"."+a.pub {
		t.Errorf("stored subject = %s; want the agent's ingress subject (partitioned)", m.Subject)
	}
	body := w.checkIngress(m, a)
	if body.MessageID != rcpt.MessageID || body.TraceID != rcpt.TraceID {
		t.Errorf("body ids (%s, %s); receipt (%s, %s)", body.MessageID, body.TraceID, rcpt.MessageID, rcpt.TraceID)
	}
	if body.Capability != envelope.ToolCall || body.Target != testTarget || body.IdempotencyKey != "order-A-1" {
		t.Errorf("body = %+v", body)
	}
	p := body.Payload
	if p.From != a.xkey || p.To != w.gwCurve.PublicKey() {
		t.Errorf("payload from, to = %s, %s; want agent xkey, gateway xkey", p.From, p.To)
	}
	ct, err := p.SealedBytes()
	if err != nil {
		t.Fatal(err)
	}
	got, err := w.gwCurve.Open(ct, p.From)
	if err != nil || !bytes.Equal(got, plaintext) {
		t.Errorf("gateway Open = %q, %v; want the plaintext", got, err)
	}
}

func TestSendPlain(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	a := w.newActor(testTenant)
	ag := w.agent(a)
	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, plain := range []any{
		json.RawMessage(`{"q":"status"}`),
		map[string]string{"q": "status"},
	} {
		rcpt, err := ag.Send(ctxT(t), Request{Capability: envelope.Read, Target: "orders.status", Plain: plain, TraceID: trace})
		if err != nil {
			t.Fatalf("Send(%T) = %v", plain, err)
		}
		if rcpt.TraceID != trace {
			t.Errorf("receipt trace = %s; want %s", rcpt.TraceID, trace)
		}
	}
	for _, m := range w.all("AGENTGW_IN") {
		body := w.checkIngress(m, a)
		if string(body.Payload.Plain) != `{"q":"status"}` || body.Payload.IsSealed() {
			t.Errorf("plain payload = %s", body.Payload.Plain)
		}
	}
}

// lossy wraps an Agent's publish so chosen attempts behave as if the
// PubAck was lost: the message reaches the real stream, the caller sees a
// timeout. It records every published body.
type lossy struct {
	mu     sync.Mutex
	real   publishFunc
	lose   map[int]bool // attempt number (1-based) -> drop the ack
	before func(n int)  // runs before attempt n, if set
	bodies [][]byte
	ids    []string
}

func (l *lossy) publish(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) {
	l.mu.Lock()
	n := len(l.bodies) + 1
	l.bodies = append(l.bodies, bytes.Clone(m.Data))
	l.ids = append(l.ids, m.Header.Get(header.MsgID))
	l.mu.Unlock()
	if l.before != nil {
		l.before(n)
	}
	ack, err := l.real(ctx, m)
	if err == nil && l.lose[n] {
		return nil, context.DeadlineExceeded
	}
	return ack, err
}

func TestSendRetryAfterLostAckKeepsID(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	a := w.newActor(testTenant)
	ag := w.agent(a)
	l := &lossy{real: ag.pubFn, lose: map[int]bool{1: true, 2: true}}
	ag.pubFn = l.publish

	rcpt, err := ag.Send(ctxT(t), Request{Capability: envelope.Read, Target: "orders.status", Plain: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatalf("Send = %v", err)
	}
	if rcpt.Attempts != 3 {
		t.Errorf("Attempts = %d; want 3", rcpt.Attempts)
	}
	for i := range l.bodies {
		if !bytes.Equal(l.bodies[i], l.bodies[0]) || l.ids[i] != rcpt.MessageID {
			t.Errorf("attempt %d sent id %s and other bytes; want the same id %s and bytes", i+1, l.ids[i], rcpt.MessageID)
		}
	}
	msgs := w.all("AGENTGW_IN")
	if len(msgs) != 1 {
		t.Fatalf("stream holds %d messages; want exactly 1", len(msgs))
	}
	if msgs[0].Sequence != rcpt.Seq {
		t.Errorf("receipt seq %d; stored at %d", rcpt.Seq, msgs[0].Sequence)
	}
	w.checkIngress(msgs[0], a)
}

func TestSendRetriesUntilStreamExists(t *testing.T) {
	w := newWorld(t)
	a := w.newActor(testTenant)
	ag := w.agent(a)
	l := &lossy{real: ag.pubFn, before: func(n int) {
		if n == 3 {
			w.ingressStream()
		}
	}}
	ag.pubFn = l.publish
	rcpt, err := ag.Send(ctxT(t), Request{Capability: envelope.Read, Target: "orders.status", Plain: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatalf("Send = %v", err)
	}
	if rcpt.Attempts != 3 || len(w.all("AGENTGW_IN")) != 1 {
		t.Errorf("Attempts = %d, stored %d; want 3 and 1", rcpt.Attempts, len(w.all("AGENTGW_IN")))
	}
}

func TestSendUnavailable(t *testing.T) {
	w := newWorld(t)
	a := w.newActor(testTenant)
	cfg := w.agentConfig(a)
	cfg.MaxAttempts = 2
	ag, err := NewAgent(w.nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ag.Send(ctxT(t), Request{Capability: envelope.Read, Target: "orders.status", Plain: json.RawMessage(`{}`)})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Send(no stream) = %v; want %v", err, ErrUnavailable)
	}
}

// preempt stores a message under id on the agent's ingress subject, as
// another publisher would.
func (w *world) preempt(a *actor, id string) {
	w.t.Helper()
	m := nats.NewMsg("agentgw.in." + testTenant + "." + a.pub)
	m.Data = []byte("someone else's message")
	m.Header.Set(header.MsgID, id)
	if _, err := w.js.PublishMsg(context.Background(), m); err != nil {
		w.t.Fatal(err)
	}
}

func TestSendCollisionReissuesUnderNewID(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	a := w.newActor(testTenant)
	ag := w.agent(a)
	const taken = "taken-id-0000000000000001"
	w.preempt(a, taken)
	ids := []string{taken}
	ag.newID = func() string {
		if len(ids) > 0 {
			id := ids[0]
			ids = ids[1:]
			return id
		}
		return envelope.NewMessageID()
	}
	l := &lossy{real: ag.pubFn}
	ag.pubFn = l.publish

	rcpt, err := ag.Send(ctxT(t), Request{Capability: envelope.Read, Target: "orders.status", Plain: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatalf("Send = %v", err)
	}
	if rcpt.MessageID == taken || rcpt.Attempts != 2 {
		t.Errorf("receipt = %+v; want a new id after 2 attempts", rcpt)
	}
	if len(l.bodies) != 2 || bytes.Equal(l.bodies[0], l.bodies[1]) {
		t.Errorf("re-issue sent the same bytes; want a new body")
	}
	msgs := w.all("AGENTGW_IN")
	if len(msgs) != 2 {
		t.Fatalf("stream holds %d messages; want the other publisher's and ours", len(msgs))
	}
	body := w.checkIngress(msgs[1], a)
	if body.MessageID != rcpt.MessageID || body.IdempotencyKey != rcpt.MessageID {
		t.Errorf("stored message_id, idempotency_key = %s, %s; want %s", body.MessageID, body.IdempotencyKey, rcpt.MessageID)
	}
}

func TestSendDuplicateAfterNoRespondersIsCollision(t *testing.T) {
	// A no-responders attempt never reached a stream, so a duplicate ack
	// on the next attempt cannot be our own: it is a collision.
	w := newWorld(t)
	a := w.newActor(testTenant)
	ag := w.agent(a)
	const taken = "taken-id-0000000000000002"
	first := true
	ag.newID = func() string {
		if first {
			first = false
			return taken
		}
		return envelope.NewMessageID()
	}
	l := &lossy{real: ag.pubFn, before: func(n int) {
		if n == 2 {
			w.ingressStream()
			w.preempt(a, taken)
		}
	}}
	ag.pubFn = l.publish
	rcpt, err := ag.Send(ctxT(t), Request{Capability: envelope.Read, Target: "orders.status", Plain: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatalf("Send = %v", err)
	}
	if rcpt.MessageID == taken || rcpt.Attempts != 3 {
		t.Errorf("receipt = %+v; want a new id after 3 attempts", rcpt)
	}
}

func TestSendCollisionExhausted(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	a := w.newActor(testTenant)
	ag := w.agent(a)
	const taken = "taken-id-0000000000000003"
	w.preempt(a, taken)
	ag.newID = func() string { return taken }
	_, err := ag.Send(ctxT(t), Request{Capability: envelope.Read, Target: "orders.status", Plain: json.RawMessage(`{}`)})
	if !errors.Is(err, ErrCollision) {
		t.Fatalf("Send(every id taken) = %v; want %v", err, ErrCollision)
	}
	if n := len(w.all("AGENTGW_IN")); n != 1 {
		t.Errorf("stream holds %d messages; want only the other publisher's", n)
	}
}

func TestSendRequestErrors(t *testing.T) {
	w := newWorld(t)
	a := w.newActor(testTenant)
	ag := w.agent(a)
	const secret = "hunter2-payload-secret"
	cases := []struct {
		name string
		req  Request
	}{
		{"no_payload", Request{Capability: envelope.Read, Target: "orders.status"}},
		{"both_payloads", Request{Capability: envelope.Read, Target: "orders.status", Plain: json.RawMessage(`{}`), Sealed: []byte("x")}},
		{"bad_capability", Request{Capability: "steal", Target: "orders.status", Plain: json.RawMessage(`{}`)}},
		{"bad_target", Request{Capability: envelope.Read, Target: "orders.*", Plain: json.RawMessage(`{}`)}},
		{"plain_not_object", Request{Capability: envelope.Read, Target: "orders.status", Plain: json.RawMessage(`["` + secret + `"]`)}},
		{"plain_duplicate_key", Request{Capability: envelope.Read, Target: "orders.status", Plain: json.RawMessage(`{"` + secret + `":1,"` + secret + `":2}`)}},
		{"plain_unencodable", Request{Capability: envelope.Read, Target: "orders.status", Plain: func() {}}},
		{"bad_trace", Request{Capability: envelope.Read, Target: "orders.status", Plain: json.RawMessage(`{}`), TraceID: "XYZ"}},
		{"negative_ttl", Request{Capability: envelope.Read, Target: "orders.status", Plain: json.RawMessage(`{}`), TTL: -time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ag.Send(ctxT(t), tc.req)
			if !errors.Is(err, ErrRequest) {
				t.Fatalf("Send(%s) = %v; want %v", tc.name, err, ErrRequest)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q quotes the payload", err)
			}
		})
	}
	plainOnly := w.agentConfig(a)
	plainOnly.Curve = nil
	ag2, err := NewAgent(w.nc, plainOnly)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ag2.Send(ctxT(t), Request{Capability: envelope.ToolCall, Target: testTarget, Sealed: []byte("x")}); !errors.Is(err, ErrRequest) {
		t.Errorf("Send(sealed, no curve key) = %v; want %v", err, ErrRequest)
	}
}

func TestNewAgentConfig(t *testing.T) {
	w := newWorld(t)
	a := w.newActor(testTenant)
	other := w.newActor("tenant_b")
	cases := []struct {
		name string
		edit func(*AgentConfig)
	}{
		{"no_credential", func(c *AgentConfig) { c.Credential = "" }},
		{"no_key", func(c *AgentConfig) { c.Key = nil }},
		{"other_agent_key", func(c *AgentConfig) { c.Key = other.kp }},
		{"other_curve_key", func(c *AgentConfig) { c.Curve = other.curve }},
		{"curve_as_agent_key", func(c *AgentConfig) { c.Key = a.curve }},
		{"wrong_tenant", func(c *AgentConfig) { c.Tenant = "tenant_b" }},
		{"wrong_audience", func(c *AgentConfig) { c.Audience = "elsewhere" }},
		{"bad_gateway_xkey", func(c *AgentConfig) { c.GatewayXKey = a.pub }},
		{"garbage_credential", func(c *AgentConfig) { c.Credential = "not.a.jwt" }},
		{"negative_retries", func(c *AgentConfig) { c.MaxAttempts = -1 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := w.agentConfig(a)
			tc.edit(&cfg)
			if _, err := NewAgent(w.nc, cfg); !errors.Is(err, ErrConfig) {
				t.Fatalf("NewAgent(%s) = %v; want %v", tc.name, err, ErrConfig)
			}
		})
	}
	ag := w.agent(a)
	if ag.Tenant() != testTenant || ag.Subject() != "agentgw.in."+testTenant+"."+a.pub {
		t.Errorf("tenant %s, subject %s: want both from the credential", ag.Tenant(), ag.Subject())
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	w := newWorld(t)
	a := w.newActor(testTenant)
	cfg := w.agentConfig(a)
	ag := w.agent(a)
	seed, _ := a.kp.Seed()
	cseed, _ := a.curve.Seed()
	op, err := newOperator(w.nc, a.token, a.kp, testTenant)
	if err != nil {
		t.Fatal(err)
	}
	ap, err := NewApprover(w.nc, w.js, ApproverConfig{AgentConfig: cfg, TrustedGateways: []string{w.gwSign.PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	xcfg := ExchangeConfig{
		Audience: testAudience, Key: a.kp, Curve: a.curve, GatewayXKey: w.gwCurve.PublicKey(),
		Token: func(context.Context) (string, error) { return "idp-token", nil },
	}
	src, err := NewCredentialSource(w.nc, xcfg)
	if err != nil {
		t.Fatal(err)
	}
	xa, err := NewExchangeAgent(w.nc, cfg, src)
	if err != nil {
		t.Fatal(err)
	}
	// An opened reply: its payload was sealed to the agent.
	reply := &Reply{RequestID: "r1", Responder: "UX", MessageID: "m1", Payload: []byte(`{"card":"4111111111111111"}`)}
	for _, s := range []string{
		fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg),
		fmt.Sprintf("%v %+v %#v %s", ag, ag, ag, ag),
		fmt.Sprintf("%v %+v %#v %s %x %q", *ag, *ag, *ag, *ag, *ag, *ag),
		fmt.Sprintf("%+v %#v", struct{ A Agent }{*ag}, []Agent{*ag}),
		fmt.Sprintf("%+v", ApproverConfig{AgentConfig: cfg}),
		fmt.Sprintf("%v %+v %#v %s %+v %#v", op, op, op, op, *op, *op),
		fmt.Sprintf("%v %+v %#v %s %+v %#v", ap, ap, ap, ap, *ap, *ap),
		fmt.Sprintf("%v %+v %#v %s", xa, xa, xa, xa),
		fmt.Sprintf("%v %+v %#v %s", xcfg, xcfg, xcfg, xcfg),
		fmt.Sprintf("%+v %#v", []any{op, ap, xa}, map[string]any{"op": op, "ap": ap, "xa": xa}),
		fmt.Sprintf("%v %+v %#v %s %x %v", reply, reply, reply, reply, reply, *reply),
	} {
		for name, secret := range map[string]string{"seed": string(seed), "curve seed": string(cseed), "credential": a.token.Reveal(), "reply payload": "4111111111111111", "reply payload's digest": decision.Digest(reply.Payload)} {
			if strings.Contains(s, secret) {
				t.Errorf("printed form holds the %s: %s", name, s)
			}
		}
	}
}

func TestAgentFromCreds(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	a := w.newActor(testTenant)
	dir := t.TempDir()
	seed, _ := a.kp.Seed()
	creds := filepath.Join(dir, "agent.creds")
	if err := identity.WriteCreds(creds, a.token, identity.Seed(seed)); err != nil {
		t.Fatal(err)
	}
	cseed, _ := a.curve.Seed()
	curve := filepath.Join(dir, "agent.xk")
	if err := os.WriteFile(curve, append(append([]byte("# agent curve key\n"), cseed...), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	ag, err := AgentFromCreds(w.nc, creds, curve, AgentConfig{GatewayXKey: w.gwCurve.PublicKey()}, WithClock(func() time.Time { return testClock }))
	if err != nil {
		t.Fatalf("AgentFromCreds = %v", err)
	}
	if _, err := ag.Send(ctxT(t), Request{Capability: envelope.ToolCall, Target: testTarget, Sealed: []byte(`{}`)}); err != nil {
		t.Fatalf("Send = %v", err)
	}
	w.checkIngress(w.all("AGENTGW_IN")[0], a)

	if _, err := AgentFromCreds(w.nc, creds, creds, AgentConfig{GatewayXKey: w.gwCurve.PublicKey()}); !errors.Is(err, ErrConfig) {
		t.Errorf("AgentFromCreds(creds file as curve seed) = %v; want %v", err, ErrConfig)
	} else if strings.Contains(err.Error(), string(seed)) {
		t.Errorf("error quotes the seed")
	}
}

// TestPeekCredentialReadsExactNames: the agent reads its own credential's
// tenant and xkey by their exact names, as the gateway does; a case
// variant is not the claim, and a duplicate name is refused.
func TestPeekCredentialReadsExactNames(t *testing.T) {
	tok := func(claims string) identity.Token {
		enc := base64.RawURLEncoding.EncodeToString
		return identity.Token(enc([]byte(`{"typ":"JWT","alg":"ed25519-nkey"}`)) + "." + enc([]byte(claims)) + "." + enc(make([]byte, 64)))
	}
	c, err := peekCredential(tok(`{"sub":"UA","nats":{"tenant":"tenant_a","Tenant":"tenant_b"}}`))
	if err != nil || c.Nats.Tenant != "tenant_a" {
		t.Errorf("peekCredential = %+v, %v; want tenant_a (the exact name)", c, err)
	}
	if _, err := peekCredential(tok(`{"sub":"UA","nats":{"tenant":"tenant_a","tenant":"tenant_b"}}`)); err == nil {
		t.Error("peekCredential accepted a duplicate claim")
	}
}

// TestReadExchangedReadsExactNames: the SDK's check of an exchanged
// credential reads sub, tenant and scopes by their exact names: a case
// variant is not the claim, a duplicate is refused.
func TestReadExchangedReadsExactNames(t *testing.T) {
	tok := func(claims string) *protocol.Response {
		enc := base64.RawURLEncoding.EncodeToString
		return &protocol.Response{AccessToken: enc([]byte(`{"typ":"JWT","alg":"ed25519-nkey"}`)) + "." + enc([]byte(claims)) + "." + enc(make([]byte, 64))}
	}
	cfg := ExchangeConfig{Audience: "gw"}
	c, err := readExchanged(tok(`{"sub":"UOTHER","SUB":"UME","iat":1,"exp":2,"nats":{"tenant":"tenant_a","Tenant":"tenant_b","xkey":"XK","scopes":["kb:read"],"Scopes":["admin:*"]}}`), cfg, "UME", "XK")
	if err == nil {
		t.Errorf("readExchanged took a credential for UOTHER as UME's: %+v", c)
	}
	c, err = readExchanged(tok(`{"sub":"UME","aud":"gw","iat":1,"exp":2,"nats":{"tenant":"tenant_a","Tenant":"tenant_b","xkey":"XK","scopes":["kb:read"],"Scopes":["admin:*"]}}`), cfg, "UME", "XK")
	if err != nil || c.Tenant != "tenant_a" || len(c.Scopes) != 1 || c.Scopes[0] != "kb:read" {
		t.Errorf("readExchanged = %+v, %v; want tenant_a and [kb:read], the exact names", c, err)
	}
	if _, err := readExchanged(tok(`{"sub":"UME","sub":"UME","iat":1,"exp":2,"nats":{"xkey":"XK"}}`), cfg, "UME", "XK"); err == nil {
		t.Error("readExchanged accepted a duplicate claim")
	}
}
