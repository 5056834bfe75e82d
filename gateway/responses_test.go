package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects/reason"
)

// respond publishes a consumer's sealed answer to the request the
// harness agent sent under messageID, in the request's trace when
// traceID is given.
func (h *harness) respond(a *actor, messageID, answer string, traceID ...string) uint64 {
	h.t.Helper()
	sealed, err := a.box.Seal([]byte(answer), h.gwCurve)
	must(h.t, err)
	body := h.body(func(b *envelope.Builder) {
		b.Capability, b.Target = envelope.Respond, envelope.RequestRef(h.agent.pub, messageID)
		if len(traceID) > 0 {
			b.TraceID = traceID[0]
		}
		b.Payload = envelope.Payload{Sealed: base64.RawURLEncoding.EncodeToString(sealed), From: a.xkey, To: h.gwCurve}
	})
	return h.publish(h.ingress(a, "tenant_a"), body, h.signed(a, a.token, body))
}

// deliveredRefund sends the agent a sealed refund request and waits for
// its delivery on the capability stream; it returns the request's
// envelope.
func (h *harness) deliveredRefund() *envelope.Body {
	h.t.Helper()
	body, _ := h.sealedRefund(h.agent, 1500, nil)
	env, err := envelope.Parse(body, envelope.Limits{})
	must(h.t, err)
	if out := h.outputFor(h.send(body)); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		h.t.Fatalf("request went to %s", out.Subject)
	}
	return env
}

func TestResponseRoundTrip(t *testing.T) {
	h := newHarness(t)
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.*"}, time.Hour, "")
	other := newActor(t)
	other.token = h.credential(h.issuer, other, "tenant_a", []string{"respond:kb.search"}, time.Hour, "")
	h.start()

	env := h.deliveredRefund()
	const secret = "jane@example.com"
	h.secrets = append(h.secrets, secret)
	// Named denials first.
	h.wantReason(h.respond(h.consumer, "0123456789abcdef0123456789abcdef", `{"refund_id":"r1","status":"drafted"}`), reason.NoSuchRequest)
	h.wantReason(h.respond(other, env.MessageID, `{"refund_id":"r1","status":"drafted"}`), reason.NotYourRequest)
	h.wantReason(h.respond(h.consumer, env.MessageID, `{"refund_id":"r1","status":"maybe"}`), reason.ResponseInvalid)
	// Removing customer_email by name would let Customer_Email through.
	h.wantReason(h.respond(h.consumer, env.MessageID, `{"refund_id":"r1","status":"drafted","Customer_Email":"`+secret+`"}`), reason.PayloadCaseVariant)
	// Nor would customer_email\u0000, which a decoder that ends keys at
	// U+0000 reads as customer_email: refused as not strict JSON, before
	// the response schema.
	h.wantReason(h.respond(h.consumer, env.MessageID, `{"refund_id":"r1","status":"drafted","customer_email\u0000":"`+secret+`"}`), reason.PayloadInvalid)

	// An invalid answer did not use up the single answer; a valid one,
	// after a gateway restart, still finds its request.
	h.stop()
	h.start()
	seq := h.respond(h.consumer, env.MessageID, `{"refund_id":"r1","status":"drafted","customer_email":"`+secret+`"}`, env.TraceID)
	out := h.outputFor(seq)
	if want := "agentgw.reply.tenant_a." + h.agent.pub; out.Subject != want {
		t.Fatalf("reply went to %s (%s); want %s", out.Subject, out.Header.Get(header.Reason), want)
	}
	claims, err := decision.Verify(out.Header.Get(header.Decision), decision.VerifyOptions{
		TrustedGateways: []string{h.gwSigning}, Audience: h.agent.pub, Now: h.clock.Now(), Skew: 30 * time.Second,
	})
	must(t, err)
	if claims.PayloadDigest != decision.Digest(out.Data) || claims.Route != decision.RouteReply || claims.TraceID != env.TraceID {
		t.Errorf("reply token %+v does not bind the sealed reply in the request's trace", claims)
	}
	plain, err := h.agent.box.Open(out.Data, out.Header.Get(header.SealedFrom))
	must(t, err)
	if string(plain) != `{"refund_id":"r1","status":"drafted"}` {
		t.Errorf("agent received %s; want the response without customer_email", plain)
	}
	if out.Header.Get("Agentgw-Request-Id") != env.MessageID {
		t.Error("reply does not name its request")
	}
	// At most one answer.
	h.wantReason(h.respond(h.consumer, env.MessageID, `{"refund_id":"r2","status":"drafted"}`), reason.AlreadyAnswered)
	if n := len(h.replies()); n != 1 {
		t.Errorf("replies = %d; want 1", n)
	}
	// A late answer to another request.
	body2, _ := h.sealedRefund(h.agent, 1600, nil)
	env2, _ := envelope.Parse(body2, envelope.Limits{})
	h.outputFor(h.send(body2))
	h.clock.Advance(2 * time.Minute)
	h.wantReason(h.respond(h.consumer, env2.MessageID, `{"refund_id":"r3","status":"drafted"}`), reason.ResponseLate)
	h.stop()
	h.scanSecrets()
	h.validateAudit()
}

// sdkAgent is the SDK's agent for a, on the harness's connection and
// clock.
func (h *harness) sdkAgent(a *actor) *client.Agent {
	h.t.Helper()
	c := client.DefaultAgentConfig()
	c.Credential, c.Key, c.Curve, c.GatewayXKey = a.token, a.kp, a.curve, h.gwCurve
	ag, err := client.NewAgent(h.nc, c, client.WithClock(h.clock.Now))
	must(h.t, err)
	return ag
}

// delivered verifies a refunds delivery as its consumer does.
func (h *harness) delivered(m *jetstream.RawStreamMsg) *client.Delivery {
	h.t.Helper()
	if !strings.HasPrefix(m.Subject, "agentgw.cap.") {
		h.t.Fatalf("request went to %s (%s)", m.Subject, m.Header.Get(header.Reason))
	}
	d, err := client.VerifyDelivery(m.Subject, m.Header, m.Data, client.VerifyOptions{
		Tenant: "tenant_a", Targets: []string{"refunds.draft_refund"}, TrustedGateways: []string{h.gwSigning},
		Curve: h.consumer.box, Now: h.clock.Now(), Skew: 30 * time.Second,
	})
	must(h.t, err)
	return d
}

// wantReply checks that out is a reply to a carrying answer.
func (h *harness) wantReply(out *jetstream.RawStreamMsg, a *actor, answer string) {
	h.t.Helper()
	if want := "agentgw.reply.tenant_a." + a.pub; out.Subject != want {
		h.t.Fatalf("reply went to %s (%s %s); want %s", out.Subject, out.Header.Get(header.Reason), out.Header.Get(header.Detail), want)
	}
	plain, err := a.box.Open(out.Data, out.Header.Get(header.SealedFrom))
	must(h.t, err)
	if string(plain) != answer {
		h.t.Fatalf("reply to %s = %s; want %s", a.pub, plain, answer)
	}
}

// TestResponseGoesToItsRequester: another agent of the tenant that
// learns a request's message id (it travels in headers, audit events and
// approval records) and sends its own request under it does not take
// over the first request's answer: each answer reaches the agent whose
// request it answers, and neither uses up the other.
func TestResponseGoesToItsRequester(t *testing.T) {
	h := newHarness(t)
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.draft_refund"}, time.Hour, "")
	mallory := newActor(t)
	mallory.token = h.credential(h.issuer, mallory, "tenant_a", []string{"refund:draft"}, time.Hour, "")
	h.secrets = append(h.secrets, string(mallory.seed))
	h.start()
	<-h.gw.Ready()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tool := h.sdkAgent(h.consumer)

	body, _ := h.sealedRefund(h.agent, 1500, nil)
	env, err := envelope.Parse(body, envelope.Limits{})
	must(t, err)
	first := h.delivered(h.outputFor(h.send(body)))
	// Mallory's own request under the agent's message id, delivered
	// after the agent's.
	mbody, _ := h.sealedRefund(mallory, 1, func(b *envelope.Builder) { b.MessageID = env.MessageID })
	second := h.delivered(h.outputFor(h.publish(h.ingress(mallory, "tenant_a"), mbody, h.signed(mallory, mallory.token, mbody))))
	if second.Agent != mallory.pub || second.Envelope.MessageID != env.MessageID {
		t.Fatalf("second delivery is %s's %s; want mallory's under the same id", second.Agent, second.Envelope.MessageID)
	}

	// The tool answers the agent's request: the answer is the agent's.
	rcpt, err := tool.Respond(ctx, first, map[string]string{"refund_id": "r-agent", "status": "drafted"})
	must(t, err)
	h.wantReply(h.outputFor(rcpt.Seq), h.agent, `{"refund_id":"r-agent","status":"drafted"}`)
	// Mallory's request is answered on its own, to mallory.
	rcpt, err = tool.Respond(ctx, second, map[string]string{"refund_id": "r-mallory", "status": "rejected"})
	must(t, err)
	h.wantReply(h.outputFor(rcpt.Seq), mallory, `{"refund_id":"r-mallory","status":"rejected"}`)
	// Each request had one answer.
	rcpt, err = tool.Respond(ctx, first, map[string]string{"refund_id": "r-again", "status": "drafted"})
	must(t, err)
	h.wantReason(rcpt.Seq, reason.AlreadyAnswered)
	if n := len(h.replies()); n != 2 {
		t.Errorf("replies = %d; want 2", n)
	}
	h.stop()
	h.scanSecrets()
	h.validateAudit()
}

// TestResponderBoundToConsumer: a key holding respond:<target> that is
// not the consumer the request was delivered to (it does not hold the
// consumer_xkey the request was delivered under) is refused, even
// knowing the whole delivery, and does not use up the answer: the
// consumer's answer still reaches the agent.
func TestResponderBoundToConsumer(t *testing.T) {
	h := newHarness(t)
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.draft_refund"}, time.Hour, "")
	impostor := newActor(t)
	impostor.token = h.credential(h.issuer, impostor, "tenant_a", []string{"respond:refunds.draft_refund"}, time.Hour, "")
	// A credential may name the consumer's public curve key; without
	// its private half the answer does not open.
	claimant := newActor(t)
	claimant.xkey = h.consumer.xkey
	claimant.token = h.credential(h.issuer, claimant, "tenant_a", []string{"respond:refunds.draft_refund"}, time.Hour, "")
	h.secrets = append(h.secrets, string(impostor.seed), string(claimant.seed))
	h.start()
	<-h.gw.Ready()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	body, _ := h.sealedRefund(h.agent, 1500, nil)
	env, err := envelope.Parse(body, envelope.Limits{})
	must(t, err)
	d := h.delivered(h.outputFor(h.send(body)))
	rcpt, err := h.sdkAgent(impostor).Respond(ctx, d, map[string]string{"refund_id": "r-forged", "status": "rejected"})
	must(t, err)
	h.wantReason(rcpt.Seq, reason.WrongResponder)
	h.wantReason(h.respond(claimant, env.MessageID, `{"refund_id":"r-forged","status":"rejected"}`), reason.SealBroken)
	// A plain answer proves no key, even from the consumer's credential.
	plain := h.body(func(b *envelope.Builder) {
		b.Capability, b.Target = envelope.Respond, envelope.RequestRef(h.agent.pub, env.MessageID)
		b.Payload = envelope.Payload{Plain: []byte(`{"refund_id":"r-plain","status":"drafted"}`)}
	})
	h.wantReason(h.publish(h.ingress(h.consumer, "tenant_a"), plain, h.signed(h.consumer, h.consumer.token, plain)), reason.WrongResponder)

	rcpt, err = h.sdkAgent(h.consumer).Respond(ctx, d, map[string]string{"refund_id": "r-1", "status": "drafted"})
	must(t, err)
	h.wantReply(h.outputFor(rcpt.Seq), h.agent, `{"refund_id":"r-1","status":"drafted"}`)
	if n := len(h.replies()); n != 1 {
		t.Errorf("replies = %d; want 1", n)
	}
	h.stop()
	h.scanSecrets()
	h.validateAudit()
}

// TestResponseToRequesterWhoLostStanding: the requester's key or
// credential is revoked, or its issuer untrusted, after its request was
// delivered. The consumer's answer is refused no_such_request (for the
// responder the request is gone) and nothing reaches the requester's
// reply subject.
func TestResponseToRequesterWhoLostStanding(t *testing.T) {
	const principal = "https://idp.example.com#alice"
	cases := []struct {
		name     string
		setup    func(h *harness)
		withdraw func(h *harness)
	}{
		{"revoked-principal", func(h *harness) {
			tok, err := identity.Issue(h.issuer, identity.IssueRequest{Subject: h.agent.pub, Audience: testAudience, Tenant: "tenant_a",
				Service: "test-agent", Scopes: []string{"refund:draft"}, XKey: h.agent.xkey, TTL: time.Hour, Principal: principal}, h.clock.Now())
			must(h.t, err)
			h.secrets = append(h.secrets, tok.Reveal())
			h.agent.token = tok
		}, func(h *harness) { h.gw.revocations.ReplacePrincipals([]string{principal}) }},
		{"revoked-key", nil, func(h *harness) { h.gw.revocations.RevokeKey(h.agent.pub) }},
		{"revoked-jti", nil, func(h *harness) { h.gw.revocations.RevokeJTI(h.agent.token.JTI()) }},
		{"issuer-untrusted", nil, func(h *harness) {
			other, _ := identity.NewIssuer()
			pub, _ := other.PublicKey()
			h.gw.verifier.SetTrust(map[string][]string{"tenant_a": {pub}})
			h.consumer.token = h.credential(other, h.consumer, "tenant_a", []string{"respond:refunds.*"}, time.Hour, "")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.*"}, time.Hour, "")
			if tc.setup != nil {
				tc.setup(h)
			}
			h.start()
			env := h.deliveredRefund()
			tc.withdraw(h)
			out := h.outputFor(h.respond(h.consumer, env.MessageID, `{"refund_id":"r1","status":"drafted"}`))
			if got := reason.Code(out.Header.Get(header.Reason)); got != reason.NoSuchRequest {
				t.Errorf("answer to a requester who lost its standing: %s reason %q; want the denied stream, %s",
					out.Subject, got, reason.NoSuchRequest)
			}
			if !strings.Contains(out.Header.Get(header.Detail), "requester no longer stands") {
				t.Errorf("detail %q does not say why", out.Header.Get(header.Detail))
			}
			if n := len(h.replies()); n != 0 {
				t.Errorf("replies = %d; want 0", n)
			}
		})
	}
}

// TestResponseToLegacyRecord: an outstanding record written before
// records named the requester's credential (no issuer, no credential id,
// no scopes) is still answered, and checked on the agent key: an answer
// is delivered, or refused once the key is revoked.
func TestResponseToLegacyRecord(t *testing.T) {
	for _, revoke := range []bool{false, true} {
		t.Run(map[bool]string{false: "delivered", true: "key-revoked"}[revoke], func(t *testing.T) {
			h := newHarness(t)
			h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.*"}, time.Hour, "")
			h.start()
			body, _ := h.sealedRefund(h.agent, 1500, nil)
			env, err := envelope.Parse(body, envelope.Limits{})
			must(t, err)
			h.outputFor(h.send(body))
			// Rewrite the record as an older gateway wrote it.
			id := responseID("tenant_a", h.agent.pub, env.MessageID)
			led := h.gw.ledgers()[0]
			b := led.NewBatch()
			deadline, v, ok, err := b.Hold(id)
			must(t, err)
			if !ok {
				t.Fatal("no outstanding record")
			}
			var rec map[string]any
			must(t, json.Unmarshal(v, &rec))
			delete(rec, "issuer")
			delete(rec, "credential_id")
			delete(rec, "scopes")
			old, _ := json.Marshal(rec)
			must(t, b.PutHold(id, deadline, old))
			must(t, b.Commit())
			b.Close()
			if revoke {
				h.gw.revocations.RevokeKey(h.agent.pub)
			}
			out := h.outputFor(h.respond(h.consumer, env.MessageID, `{"refund_id":"r1","status":"drafted"}`))
			switch got := reason.Code(out.Header.Get(header.Reason)); {
			case !revoke && got != "":
				t.Errorf("answer to a legacy record: %s %q; want delivered", out.Subject, got)
			case revoke && got != reason.NoSuchRequest:
				t.Errorf("answer to a legacy record of a revoked key: %s %q; want %s", out.Subject, got, reason.NoSuchRequest)
			}
		})
	}
}

// editTarget rewrites the entry of target name in the harness catalog
// with edit and reloads it.
func (h *harness) editTarget(name string, edit func(entry string) string) {
	h.t.Helper()
	raw, err := os.ReadFile(h.cfg.Catalog)
	must(h.t, err)
	s := string(raw)
	i := strings.Index(s, "  - name: "+name+"\n")
	if i < 0 {
		h.t.Fatalf("no target %s in the catalog", name)
	}
	j := i + len("  - name: "+name+"\n")
	end := len(s)
	if k := strings.Index(s[j:], "  - name: "); k >= 0 {
		end = j + k
	}
	entry := edit(s[i:end])
	if entry == s[i:end] {
		h.t.Fatalf("catalog edit of %s did not apply", name)
	}
	tmp := h.cfg.Catalog + ".tmp"
	must(h.t, os.WriteFile(tmp, []byte(s[:i]+entry+s[end:]), 0o600))
	must(h.t, os.Rename(tmp, h.cfg.Catalog))
	if h.gw != nil { // a gateway not made yet loads it when it is
		must(h.t, h.gw.Reload())
	}
}

// TestResponseRechecksCatalog: an answer is released to its requester
// only if the catalog in force at the answer still admits it. Each case
// reloads the catalog between the delivery of a request and its answer:
// where the target left the catalog, no longer serves the requester's
// tenant, no longer takes responses, or asks a scope the requester does
// not hold, the answer is refused no_such_request (for the responder the
// request is gone), with its audit event, and nothing reaches the
// requester. An edit that still admits the request, or a rotation of the
// consumer key (which binds only new requests), leaves the answer to go
// through.
func TestResponseRechecksCatalog(t *testing.T) {
	rotated := newActor(t)
	cases := []struct {
		name   string
		edit   func(entry string) string
		refuse bool
	}{
		{"refused/target-removed", func(string) string { return "" }, true},
		{"refused/tenant-removed", func(e string) string {
			return strings.Replace(e, "    tenants: [tenant_a]\n", "    tenants: [tenant_b]\n", 1)
		}, true},
		{"refused/responses-off", func(e string) string {
			var kept []string
			for _, l := range strings.SplitAfter(e, "\n") {
				if !strings.HasPrefix(l, "    response_") && !strings.HasPrefix(l, "    sensitive:") {
					kept = append(kept, l)
				}
			}
			return strings.Join(kept, "")
		}, true},
		{"refused/scope-changed", func(e string) string {
			return strings.Replace(e, "    scope: refund:draft\n", "    scope: refund:admin\n", 1)
		}, true},
		{"delivered/tenant-added", func(e string) string {
			return strings.Replace(e, "    tenants: [tenant_a]\n", "    tenants: [tenant_a, tenant_b]\n", 1)
		}, false},
		{"delivered/consumer-key-rotated", func(e string) string {
			return strings.Replace(e, "    consumer_xkey: ", "    consumer_xkey: "+rotated.xkey+"\n    # was: ", 1)
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.*"}, time.Hour, "")
			h.start()
			env := h.deliveredRefund()
			h.editTarget("refunds.draft_refund", tc.edit)

			seq := h.respond(h.consumer, env.MessageID, `{"refund_id":"r1","status":"drafted"}`)
			out := h.outputFor(seq)
			if !tc.refuse {
				h.wantReply(out, h.agent, `{"refund_id":"r1","status":"drafted"}`)
				return
			}
			if got := reason.Code(out.Header.Get(header.Reason)); got != reason.NoSuchRequest || !strings.HasPrefix(out.Subject, "agentgw.denied.") {
				t.Fatalf("answer the catalog no longer admits: %s reason %q (%s); want the denied stream, %s",
					out.Subject, got, out.Header.Get(header.Detail), reason.NoSuchRequest)
			}
			if ev := h.auditFor(seq); ev.Reason != string(reason.NoSuchRequest) || ev.Route != "deny" {
				t.Errorf("audit event of the refused answer: route %q reason %q; want deny, %s", ev.Route, ev.Reason, reason.NoSuchRequest)
			}
			if n := len(h.replies()); n != 0 {
				t.Errorf("replies = %d; want 0", n)
			}
			h.stop()
			h.validateAudit()
		})
	}
}

// TestNoReplyForDeliveryRefusedAndDenied: a request whose delivery the
// capability stream refused (too large) is denied internal_error
// instead, and its response record is withdrawn with it: the consumer
// never got it, and its requester was told it was denied, so an answer
// naming it is refused, not sealed to the requester.
func TestNoReplyForDeliveryRefusedAndDenied(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.*"}, time.Hour, "")
	h.start()
	<-h.gw.Ready()
	ctx := context.Background()
	s, err := h.js.Stream(ctx, StreamCap)
	must(t, err)
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = 1024
	_, err = h.js.UpdateStream(ctx, cfg)
	must(t, err)

	body, _ := h.sealedRefund(h.agent, 1500, nil)
	env, err := envelope.Parse(body, envelope.Limits{})
	must(t, err)
	out := h.outputFor(h.send(body))
	if out.Subject != "agentgw.denied.tenant_a.internal_error" {
		t.Fatalf("setup: request went to %s", out.Subject)
	}
	h.wantReason(h.respond(h.consumer, env.MessageID, `{"refund_id":"r1","status":"drafted"}`), reason.NoSuchRequest)
}
