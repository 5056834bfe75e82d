package gateway

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/decision"
	"github.com/agentgw/agentgw/envelope"
	"github.com/agentgw/agentgw/header"
	"github.com/agentgw/agentgw/reason"
)

// respond publishes a consumer's sealed answer to the request id, in
// the request's trace when traceID is given.
func (h *harness) respond(a *actor, requestID, answer string, traceID ...string) uint64 {
	h.t.Helper()
	sealed, err := a.box.Seal([]byte(answer), h.gwCurve)
	must(h.t, err)
	body := h.body(func(b *envelope.Builder) {
		b.Capability, b.Target = envelope.Respond, requestID
		if len(traceID) > 0 {
			b.TraceID = traceID[0]
		}
		b.Payload = envelope.Payload{Sealed: base64.RawURLEncoding.EncodeToString(sealed), From: a.xkey, To: h.gwCurve}
	})
	return h.publish(h.ingress(a, "tenant_a"), body, h.signed(a, a.token, body))
}

func TestResponseRoundTrip(t *testing.T) {
	h := newHarness(t)
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.*"}, time.Hour, "")
	other := newActor(t)
	other.token = h.credential(h.issuer, other, "tenant_a", []string{"respond:kb.search"}, time.Hour, "")
	h.start()

	body, _ := h.sealedRefund(h.agent, 1500, nil)
	env, err := envelope.Parse(body, envelope.Limits{})
	must(t, err)
	if out := h.outputFor(h.send(body)); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("request went to %s", out.Subject)
	}
	const secret = "jane@example.com"
	h.secrets = append(h.secrets, secret)
	// Named denials first.
	h.wantReason(h.respond(h.consumer, "0123456789abcdef0123456789abcdef", `{"refund_id":"r1","status":"drafted"}`), reason.NoSuchRequest)
	h.wantReason(h.respond(other, env.MessageID, `{"refund_id":"r1","status":"drafted"}`), reason.NotYourRequest)
	h.wantReason(h.respond(h.consumer, env.MessageID, `{"refund_id":"r1","status":"maybe"}`), reason.ResponseInvalid)
	// Removing customer_email by name would let Customer_Email through.
	h.wantReason(h.respond(h.consumer, env.MessageID, `{"refund_id":"r1","status":"drafted","Customer_Email":"`+secret+`"}`), reason.PayloadCaseVariant)

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
	if n := len(h.all(StreamReply)); n != 1 {
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
