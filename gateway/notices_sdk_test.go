package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestSendAndDecideThroughSDK: Agent.SendAndDecide returns where the
// message went, and a denial as a *DeniedError with the reason code;
// a notice signed by an untrusted gateway key is not believed.
func TestSendAndDecideThroughSDK(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := client.DefaultAgentConfig()
	cfg.Credential, cfg.Key, cfg.Curve, cfg.GatewayXKey = h.agent.token, h.agent.kp, h.agent.curve, h.gwCurve
	agent, err := client.NewAgent(h.nc, cfg, client.WithClock(h.clock.Now))
	must(t, err)
	trust := client.WaitOptions{TrustedGateways: []string{h.gwSigning}}

	_, d, err := agent.SendAndDecide(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund",
		Sealed: []byte(`{"order_id":"ord_3","amount_cents":300}`)}, trust)
	must(t, err)
	if d.Route != notice.RouteAllow || d.Target != "refunds.draft_refund" {
		t.Errorf("SendAndDecide = %+v; want delivered to refunds.draft_refund", d)
	}

	rc, d, err := agent.SendAndDecide(ctx, client.Request{Capability: envelope.Read, Target: "kb.nowhere",
		Plain: json.RawMessage(`{"q":"x"}`)}, trust)
	var denied *client.DeniedError
	if !errors.As(err, &denied) || denied.Reason != reason.UnknownTarget || denied.MessageID != rc.MessageID || d == nil {
		t.Fatalf("SendAndDecide(unknown target) = %+v, %v; want *DeniedError unknown_target", d, err)
	}

	// Another gateway's key: the notice arrives but is not believed.
	other := client.WaitOptions{TrustedGateways: []string{newActor(t).pub}}
	short, stop := context.WithTimeout(ctx, 2*time.Second)
	defer stop()
	_, _, err = agent.SendAndDecide(short, client.Request{Capability: envelope.Read, Target: "kb.search",
		Plain: json.RawMessage(`{"q":"x"}`)}, other)
	if !errors.Is(err, client.ErrNoDecision) {
		t.Errorf("SendAndDecide trusting another gateway = %v; want ErrNoDecision", err)
	}
	if _, err := agent.WatchDecisions(client.WaitOptions{}); !errors.Is(err, client.ErrConfig) {
		t.Errorf("WatchDecisions without trusted keys = %v; want ErrConfig", err)
	}
	h.stop()
	h.scanSecrets()
}

// TestSendAndWaitEndsOnDenial: the gateway's verified denial of the
// request ends SendAndWait with a *DeniedError carrying the reason code,
// after OnDecision was handed the notice; without OnDecision too.
func TestSendAndWaitEndsOnDenial(t *testing.T) {
	h := newHarness(t)
	h.start()
	// Long enough that only the notice can end the wait in the test.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	agent := h.sdkAgent(h.agent)
	var seen []*client.Decision
	trust := client.WaitOptions{TrustedGateways: []string{h.gwSigning}, OnDecision: func(d *client.Decision) { seen = append(seen, d) }}

	rc, reply, err := agent.SendAndWait(ctx, client.Request{Capability: envelope.Read, Target: "kb.nowhere",
		Plain: json.RawMessage(`{"q":"x"}`)}, trust)
	var denied *client.DeniedError
	if !errors.As(err, &denied) || denied.Reason != reason.UnknownTarget || rc == nil || denied.MessageID != rc.MessageID || reply != nil {
		t.Fatalf("SendAndWait(unknown target) = %+v, %v, %v; want the receipt and *DeniedError unknown_target", rc, reply, err)
	}
	if len(seen) != 1 || seen[0].Route != notice.RouteDeny || seen[0].Reason != reason.UnknownTarget || seen[0].MessageID != rc.MessageID {
		t.Errorf("OnDecision saw %+v; want the one denial of %s", seen, rc.MessageID)
	}

	trust.OnDecision = nil
	rc, _, err = agent.SendAndWait(ctx, client.Request{Capability: envelope.ToolCall, Target: "ops.forbidden",
		Plain: json.RawMessage(`{"q":"x"}`)}, trust)
	if !errors.As(err, &denied) || denied.Reason != reason.PolicyDenied || rc == nil || denied.MessageID != rc.MessageID {
		t.Fatalf("SendAndWait(forbidden target) without OnDecision = %v; want *DeniedError policy_denied", err)
	}
	h.stop()
	h.scanSecrets()
}

// TestSendAndWaitHeldRequest: SendAndWait hands the notice of a held
// request to OnDecision and keeps waiting; the notice of its release
// after a grant does not end the wait either. Only ctx ends it here (the
// payments target has no responder).
func TestSendAndWaitHeldRequest(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	decisions, done := waitInBackground(ctx, h.sdkAgent(h.agent), heldPayment(), client.WaitOptions{TrustedGateways: []string{h.gwSigning}})

	held := nextDecision(t, decisions, done)
	if held.Route != notice.RouteApproval || held.ApprovalID != held.MessageID || held.Deadline.IsZero() {
		t.Fatalf("first decision = %+v; want held for approval", held)
	}
	h.grant(h.approvalRequest(held.ApprovalID))
	released := nextDecision(t, decisions, done)
	if released.Route != notice.RouteAllow || released.Target != "payments.send" || released.MessageID != held.MessageID {
		t.Fatalf("second decision = %+v; want %s released to payments.send", released, held.MessageID)
	}
	cancel()
	w := <-done
	if !errors.Is(w.err, client.ErrNoReply) || !errors.Is(w.err, context.Canceled) || w.reply != nil || w.rcpt == nil || w.rcpt.MessageID != held.MessageID {
		t.Errorf("SendAndWait = %+v, %v; want the receipt of %s and ErrNoReply once ctx is done", w.rcpt, w.err, held.MessageID)
	}
	if len(decisions) != 0 {
		t.Errorf("OnDecision saw %d more decisions; want none", len(decisions))
	}
	h.stop()
	h.scanSecrets()
}

// TestSendAndWaitForgedNotices: denials of the request that do not
// verify as its notice (signed by a key the agent does not trust, a
// genuine denial of another message relabelled, or its notice edited to
// name the request) neither end SendAndWait nor reach OnDecision.
func TestSendAndWaitForgedNotices(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A genuine denial of another message of the agent's, to relabel.
	other := h.body(func(b *envelope.Builder) { b.Target = "kb.nowhere" })
	h.send(other)
	otherID := messageID(t, other)
	var genuine []*jetstream.RawStreamMsg
	waitFor(t, func() bool { genuine = h.noticesTo(h.agent, otherID); return len(genuine) == 1 })

	decisions, done := waitInBackground(ctx, h.sdkAgent(h.agent), heldPayment(), client.WaitOptions{TrustedGateways: []string{h.gwSigning}})
	held := nextDecision(t, decisions, done)
	if held.Route != notice.RouteApproval {
		t.Fatalf("first decision = %+v; want held for approval", held)
	}
	id := held.MessageID
	publish := func(data []byte) {
		t.Helper()
		m := nats.NewMsg("agentgw.reply.tenant_a." + h.agent.pub)
		m.Data = data
		m.Header.Set(notice.Header, notice.Kind)
		m.Header.Set(header.MessageID, id)
		must(t, h.nc.PublishMsg(m))
	}
	// A denial of the request signed by a gateway key nobody trusts.
	untrusted, err := identity.NewGatewayKey()
	must(t, err)
	signer, err := identity.NewSigner(untrusted)
	must(t, err)
	forged, err := (&notice.Notice{MessageID: id, Route: notice.RouteDeny, Reason: string(reason.PolicyDenied)}).Marshal()
	must(t, err)
	tok, err := decision.Sign(signer, decision.Claims{
		Subject: h.agent.pub, Audience: h.agent.pub, IssuedAt: h.clock.Now(), Expires: h.clock.Now().Add(time.Minute),
		Tenant: "tenant_a", Scope: notice.Scope, TraceID: envelope.NewTraceID(), MessageID: id,
		BodyDigest: decision.Digest([]byte("{}")), PayloadDigest: decision.Digest(forged), Route: decision.RouteNotice,
	})
	must(t, err)
	doc, err := notice.AppendDoc(nil, tok.Reveal(), forged)
	must(t, err)
	publish(doc)
	// The genuine denial of the other message, labelled as the request's.
	publish(genuine[0].Data)
	// The same, its notice edited to name the request: the token binds other bytes.
	publish(bytes.Replace(genuine[0].Data, []byte(`"message_id":"`+otherID+`"`), []byte(`"message_id":"`+id+`"`), 1))
	must(t, h.nc.Flush())

	// Released after the forgeries reached the server: the next notice
	// SendAndWait may hand over is the release.
	h.grant(h.approvalRequest(held.ApprovalID))
	if d := nextDecision(t, decisions, done); d.Route != notice.RouteAllow || d.MessageID != id {
		t.Fatalf("decision after the forgeries = %+v; want the release of %s", d, id)
	}
	cancel()
	if w := <-done; !errors.Is(w.err, client.ErrNoReply) || !errors.Is(w.err, context.Canceled) {
		t.Errorf("SendAndWait = %v; want ErrNoReply once ctx is done", w.err)
	}
	if len(decisions) != 0 {
		t.Errorf("OnDecision saw %d more decisions; want none", len(decisions))
	}
	h.stop()
	h.scanSecrets()
}

// heldPayment is a request the test policy holds for approval
// (payments.send is critical).
func heldPayment() client.Request {
	return client.Request{Capability: envelope.ToolCall, Target: "payments.send", Plain: json.RawMessage(`{"amount_cents":990000}`)}
}

// waited is what SendAndWait returned.
type waited struct {
	rcpt  *client.Receipt
	reply *client.Reply
	err   error
}

// waitInBackground runs SendAndWait on another goroutine: each decision
// it hands to OnDecision comes on decisions, its result on done.
func waitInBackground(ctx context.Context, agent *client.Agent, req client.Request, opt client.WaitOptions) (<-chan *client.Decision, <-chan waited) {
	decisions, done := make(chan *client.Decision, 16), make(chan waited, 1)
	opt.OnDecision = func(d *client.Decision) { decisions <- d }
	go func() {
		rcpt, reply, err := agent.SendAndWait(ctx, req, opt)
		done <- waited{rcpt, reply, err}
	}()
	return decisions, done
}

// nextDecision is the next decision SendAndWait hands to OnDecision; it
// fails the test if SendAndWait returns first.
func nextDecision(t *testing.T, decisions <-chan *client.Decision, done <-chan waited) *client.Decision {
	t.Helper()
	select {
	case d := <-decisions:
		return d
	case w := <-done:
		t.Fatalf("SendAndWait returned (%v) before the next decision notice", w.err)
	}
	return nil
}

// approvalRequest waits for the approval request of the held message id.
func (h *harness) approvalRequest(heldID string) approval.Request {
	h.t.Helper()
	var req approval.Request
	waitFor(h.t, func() bool {
		for _, m := range h.all(StreamApproval) {
			var r approval.Request
			if json.Unmarshal(m.Data, &r) == nil && r.HeldMessageID == heldID {
				req = r
				return true
			}
		}
		return false
	})
	return req
}

// TestSendAndWaitIgnoresACopysDenial: a copy of a held request,
// re-published on the agent's ingress subject by whoever holds its bytes,
// is denied replay_detected, and the gateway's genuine notice of that
// denial carries the request's message id; it neither ends SendAndWait
// nor reaches OnDecision: the request itself is released and delivered.
func TestSendAndWaitIgnoresACopysDenial(t *testing.T) {
	for _, late := range []time.Duration{0, 2 * time.Minute} {
		t.Run(map[bool]string{false: "replay_detected", true: "message_expired"}[late > 0], func(t *testing.T) {
			testSendAndWaitIgnoresACopysDenial(t, late)
		})
	}
}

// testSendAndWaitIgnoresACopysDenial: the copy is published late after
// the request was held; late beyond the request's freshness, it is
// refused message_expired rather than replay_detected.
func testSendAndWaitIgnoresACopysDenial(t *testing.T, late time.Duration) {
	h := newHarness(t)
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ingress, err := h.nc.SubscribeSync("agentgw.in.tenant_a.>")
	must(t, err)
	defer ingress.Unsubscribe()
	decisions, done := waitInBackground(ctx, h.sdkAgent(h.agent), heldPayment(), client.WaitOptions{TrustedGateways: []string{h.gwSigning}})
	held := nextDecision(t, decisions, done)
	if held.Route != notice.RouteApproval {
		t.Fatalf("first decision = %+v; want held for approval", held)
	}
	original, err := ingress.NextMsg(10 * time.Second)
	must(t, err)
	copied := nats.NewMsg(original.Subject)
	copied.Data = original.Data
	for k, v := range original.Header {
		copied.Header[k] = v
	}
	copied.Header.Set(nats.MsgIdHdr, "copy-"+held.MessageID) // past the stream's dedup
	h.clock.Advance(late)
	_, err = h.js.PublishMsg(ctx, copied)
	must(t, err)
	waitFor(t, func() bool { return len(h.noticesTo(h.agent, held.MessageID)) == 2 })

	h.grant(h.approvalRequest(held.ApprovalID))
	if d := nextDecision(t, decisions, done); d.Route != notice.RouteAllow || d.MessageID != held.MessageID {
		t.Fatalf("decision after the copy = %+v; want the release of %s", d, held.MessageID)
	}
	cancel()
	if w := <-done; !errors.Is(w.err, client.ErrNoReply) {
		t.Errorf("SendAndWait = %v; want ErrNoReply once ctx is done, not the copy's denial", w.err)
	}
	h.stop()
	h.scanSecrets()
}
