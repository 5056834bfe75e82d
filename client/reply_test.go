package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestRespondNamesRequestByAgentAndID: a response names the request by
// its agent and message id (a message id is unique per agent only), in
// the request's trace, sealed to the gateway from the responder's curve
// key.
func TestRespondNamesRequestByAgentAndID(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	requester := w.newActor(testTenant, "refund:draft")
	tool := w.newActor(testTenant, "respond:"+testTarget)
	d := &Delivery{
		Envelope: &envelope.Body{MessageID: "9f1c2b7e4d8a4c3fb6e15a2d7c9e0f41", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"},
		Agent:    requester.pub,
	}
	answer := []byte(`{"status":"drafted"}`)
	if _, err := w.agent(tool).Respond(ctxT(t), d, answer); err != nil {
		t.Fatalf("Respond = %v", err)
	}
	msgs := w.all("AGENTGW_IN")
	if len(msgs) != 1 {
		t.Fatalf("stream holds %d messages; want 1", len(msgs))
	}
	body := w.checkIngress(msgs[0], tool)
	if want := requester.pub + "/" + d.Envelope.MessageID; body.Capability != envelope.Respond || body.Target != want || body.TraceID != d.Envelope.TraceID {
		t.Fatalf("response = %s %s in trace %s; want respond %s in trace %s", body.Capability, body.Target, body.TraceID, want, d.Envelope.TraceID)
	}
	ct, err := body.Payload.SealedBytes()
	if err != nil {
		t.Fatal(err)
	}
	if body.Payload.From != tool.xkey {
		t.Errorf("answer sealed from %s; want the responder's curve key", body.Payload.From)
	}
	if got, err := w.gwCurve.Open(ct, body.Payload.From); err != nil || !bytes.Equal(got, answer) {
		t.Errorf("gateway Open = %q, %v; want the answer", got, err)
	}
}

// TestVerifyReplyOnlyFromGatewayXKey: a reply's payload must be sealed
// from the configured gateway curve key (AgentConfig.GatewayXKey). A
// reply whose token a trusted gateway signed over its bytes is refused
// seal_mismatch when Agentgw-Sealed-From names another curve key, or the
// gateway's signing key.
// signedReply is a reply to a's request the gateway of w signed, its
// payload sealed by sealer and its Agentgw-Sealed-From sealedFrom.
func signedReply(t *testing.T, w *world, a *actor, sealer *identity.Box, sealedFrom string) *nats.Msg {
	t.Helper()
	data, err := sealer.Seal([]byte(`{"status":"drafted"}`), a.xkey)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := decision.Sign(w.gwSign, decision.Claims{
		Subject: a.pub, Audience: a.pub, IssuedAt: testClock, Expires: testClock.Add(time.Minute),
		Tenant: testTenant, Scope: "respond:" + testTarget, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
		MessageID: "9f1c2b7e4d8a4c3fb6e15a2d7c9e0f41", BodyDigest: decision.Digest([]byte("{}")),
		PayloadDigest: decision.Digest(data), PolicyVersion: "v1", Route: decision.RouteReply,
	})
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg("agentgw.reply." + testTenant + "." + a.pub)
	m.Data = data
	m.Header.Set(header.Decision, tok.Reveal())
	m.Header.Set(header.SealedFrom, sealedFrom)
	return m
}

// TestReplyResponderIsAKeyOrNothing: Agentgw-Responder is unsigned, and
// anyone who can publish on the reply subject can copy a signed reply
// with another: a reply keeps it only when it is a user key, so no text
// of the publisher's (terminal escapes, line breaks) reaches what
// prints it.
func TestReplyResponderIsAKeyOrNothing(t *testing.T) {
	w := newWorld(t)
	a := w.newActor(testTenant, "refund:draft")
	ag := w.agent(a)
	consumer := w.newActor(testTenant, "respond:"+testTarget)
	opt := WaitOptions{TrustedGateways: []string{w.gwSign.PublicKey()}}
	for responder, want := range map[string]string{
		consumer.pub: consumer.pub, "\x1b[2J\x1b[31mUSURPER": "", consumer.pub + "\r\nforged": "", "N" + consumer.pub[1:]: "", "": "",
	} {
		m := signedReply(t, w, a, w.gwCurve, w.gwCurve.PublicKey())
		m.Header.Set(headerResponder, responder)
		if r, err := ag.verifyReply(m, testTarget, opt); err != nil || r.Responder != want {
			t.Errorf("responder %q: %+v, %v; want the reply, responder %q", responder, r, err, want)
		}
	}
}

func TestVerifyReplyOnlyFromGatewayXKey(t *testing.T) {
	w := newWorld(t)
	a := w.newActor(testTenant, "refund:draft")
	ag := w.agent(a)
	stranger, err := identity.NewBox(mustKey(t, identity.NewCurve))
	if err != nil {
		t.Fatal(err)
	}
	reply := func(sealer *identity.Box, sealedFrom string) *nats.Msg {
		return signedReply(t, w, a, sealer, sealedFrom)
	}
	opt := WaitOptions{TrustedGateways: []string{w.gwSign.PublicKey()}}
	if r, err := ag.verifyReply(reply(w.gwCurve, w.gwCurve.PublicKey()), testTarget, opt); err != nil || string(r.Payload) != `{"status":"drafted"}` {
		t.Fatalf("verifyReply(from the gateway's curve key) = %v, %v; want the reply", r, err)
	}
	for name, m := range map[string]*nats.Msg{
		"deny/another-xkey":      reply(stranger, stranger.PublicKey()),
		"deny/gateway-nkey":      reply(w.gwCurve, w.gwSign.PublicKey()),
		"deny/no-sealed-from":    reply(w.gwCurve, ""),
		"deny/xkey-of-recipient": reply(w.gwCurve, a.xkey),
	} {
		if _, err := ag.verifyReply(m, testTarget, opt); reason.Of(err) != reason.SealMismatch {
			t.Errorf("verifyReply(%s) = %v; want seal_mismatch", name, err)
		}
	}
	// Trusting a key to sign tokens is not trusting it to seal: a curve
	// key listed among TrustedGateways (a misconfiguration) seals nothing.
	opt.TrustedGateways = append(opt.TrustedGateways, stranger.PublicKey())
	if _, err := ag.verifyReply(reply(stranger, stranger.PublicKey()), testTarget, opt); reason.Of(err) != reason.SealMismatch {
		t.Errorf("verifyReply(sealed from a curve key listed in TrustedGateways) = %v; want seal_mismatch", err)
	}
	opt.TrustedGateways = opt.TrustedGateways[:1]

	// Mid-rotation, the gateway's new curve key is listed in ReplyXKeys:
	// a reply sealed from it opens, as one from GatewayXKey still does.
	next, err := identity.NewBox(mustKey(t, identity.NewCurve))
	if err != nil {
		t.Fatal(err)
	}
	cfg := w.agentConfig(a)
	cfg.ReplyXKeys = []string{next.PublicKey()}
	rotating, err := NewAgent(w.nc, cfg, WithClock(func() time.Time { return testClock }))
	if err != nil {
		t.Fatal(err)
	}
	for name, sealer := range map[string]*identity.Box{"GatewayXKey": w.gwCurve, "ReplyXKeys": next} {
		if r, err := rotating.verifyReply(reply(sealer, sealer.PublicKey()), testTarget, opt); err != nil || string(r.Payload) != `{"status":"drafted"}` {
			t.Errorf("verifyReply(sealed from a key of %s) = %v, %v; want the reply", name, r, err)
		}
	}
	if _, err := ag.verifyReply(reply(next, next.PublicKey()), testTarget, opt); reason.Of(err) != reason.SealMismatch {
		t.Errorf("verifyReply(sealed from a key not in ReplyXKeys) = %v; want seal_mismatch", err)
	}
	if _, err := rotating.verifyReply(reply(next, ""), testTarget, opt); reason.Of(err) != reason.SealMismatch {
		t.Errorf("verifyReply(no sealed-from, ReplyXKeys set) = %v; want seal_mismatch", err)
	}
	cfg.ReplyXKeys = []string{"XBAD"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "reply xkey 0") {
		t.Errorf("Validate(a malformed reply xkey) = %v; want it named", err)
	}
}

// TestWaitOptionsSkew: WaitOptions.Skew zero is DefaultSkew (30 s), as an
// absent or 0 skewMs is in the TypeScript SDK, never "no tolerance"; a
// negative skew is refused before anything is subscribed or sent.
func TestWaitOptionsSkew(t *testing.T) {
	w := newWorld(t)
	a := w.newActor(testTenant, "refund:draft")
	ag := w.agent(a)
	// A reply token issued at iat, living a minute, read at testClock.
	token := func(iat time.Time) string {
		tok, err := decision.Sign(w.gwSign, decision.Claims{
			Subject: a.pub, Audience: a.pub, IssuedAt: iat, Expires: iat.Add(time.Minute),
			Tenant: testTenant, Scope: "respond:" + testTarget, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
			MessageID: "9f1c2b7e4d8a4c3fb6e15a2d7c9e0f41", BodyDigest: decision.Digest([]byte("{}")),
			PayloadDigest: decision.Digest([]byte("x")), Route: decision.RouteReply,
		})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Reveal()
	}
	trust := []string{w.gwSign.PublicKey()}
	for _, tc := range []struct {
		name string
		skew time.Duration
		iat  time.Time
		want reason.Code
	}{
		{"zero/issued 20s ahead", 0, testClock.Add(20 * time.Second), ""},
		{"zero/issued 40s ahead", 0, testClock.Add(40 * time.Second), reason.DecisionInvalid},
		{"zero/expired 20s ago", 0, testClock.Add(-80 * time.Second), ""},
		{"zero/expired 40s ago", 0, testClock.Add(-100 * time.Second), reason.DecisionExpired},
		{"1s/issued 20s ahead", time.Second, testClock.Add(20 * time.Second), reason.DecisionInvalid},
		{"negative", -time.Second, testClock, reason.Internal},
	} {
		_, err := ag.verifyToken(token(tc.iat), WaitOptions{TrustedGateways: trust, Skew: tc.skew})
		if got := reason.Of(err); got != tc.want {
			t.Errorf("%s: verifyToken = %v; want %q", tc.name, err, tc.want)
		}
	}
	// The request could not be sent anyway: the options are refused first.
	neg := WaitOptions{TrustedGateways: trust, Skew: -time.Second}
	if _, err := ag.WatchDecisions(neg); !errors.Is(err, ErrConfig) {
		t.Errorf("WatchDecisions(negative skew) = %v; want ErrConfig", err)
	}
	if _, _, err := ag.SendAndWait(ctxT(t), Request{Capability: envelope.ToolCall, Target: testTarget, Plain: []byte(`{}`)}, neg); !errors.Is(err, ErrConfig) {
		t.Errorf("SendAndWait(negative skew) = %v; want ErrConfig", err)
	}
	if _, _, err := ag.SendAndDecide(ctxT(t), Request{Capability: envelope.ToolCall, Target: testTarget, Plain: []byte(`{}`)}, neg); !errors.Is(err, ErrConfig) {
		t.Errorf("SendAndDecide(negative skew) = %v; want ErrConfig", err)
	}
}

// TestCopyDenials: which denials SendAndWait takes for a copy's rather
// than the request's. replay_detected and replay_refused always; once the
// request was delivered or held, also the denials a late copy gets
// before its replay is looked up (message_expired, credential_expired),
// or in place of replay_detected after a scaled-out journal was lost
// (ledger_incomplete). Every other denial is the request's own, as the
// TypeScript SDK's sendAndWait has it.
func TestCopyDenials(t *testing.T) {
	always := map[reason.Code]bool{reason.ReplayDetected: true, reason.ReplayRefused: true}
	late := map[reason.Code]bool{reason.MessageExpired: true, reason.CredentialExpired: true, reason.LedgerIncomplete: true}
	for _, info := range reason.All {
		if got := copyDenied(info.Code); got != always[info.Code] {
			t.Errorf("copyDenied(%s) = %v; want %v", info.Code, got, always[info.Code])
		}
		if got := lateCopyDenied(info.Code); got != late[info.Code] {
			t.Errorf("lateCopyDenied(%s) = %v; want %v", info.Code, got, late[info.Code])
		}
	}
}

// TestSendAndWaitTakesOnlyAReplyOfItsTarget: the request id that picks a
// reply is an unsigned header. A genuine, fresh gateway reply to another
// of the agent's requests (to kb.search), re-published under the id of a
// pending request to refunds.draft_refund, is not its answer; nor is a
// reply signed for another tenant or another agent. The reply to the
// request's target is.
func TestSendAndWaitTakesOnlyAReplyOfItsTarget(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	a := w.newActor(testTenant, "refund:draft")
	ag := w.agent(a)
	replySubj, err := subjects.Reply(testTenant, a.pub)
	if err != nil {
		t.Fatal(err)
	}
	other := w.newActor(testTenant)
	reply := func(requestID, answer string, edit func(*decision.Claims)) *nats.Msg {
		data, err := w.gwCurve.Seal([]byte(answer), a.xkey)
		if err != nil {
			t.Fatal(err)
		}
		c := decision.Claims{
			Subject: a.pub, Audience: a.pub, IssuedAt: testClock, Expires: testClock.Add(time.Minute),
			Tenant: testTenant, Scope: "respond:" + testTarget, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
			MessageID: "9f1c2b7e4d8a4c3fb6e15a2d7c9e0f41", BodyDigest: decision.Digest([]byte("{}")),
			PayloadDigest: decision.Digest(data), PolicyVersion: "v1", Route: decision.RouteReply,
		}
		edit(&c)
		tok, err := decision.Sign(w.gwSign, c)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(replySubj)
		m.Data = data
		m.Header.Set(header.Decision, tok.Reveal())
		m.Header.Set(header.SealedFrom, w.gwCurve.PublicKey())
		m.Header.Set(headerRequestID, requestID)
		return m
	}
	bad := map[string]func(*decision.Claims){
		"kb.search":      func(c *decision.Claims) { c.Scope = "respond:kb.search" },
		"another tenant": func(c *decision.Claims) { c.Tenant = "tenant_b" },
		"another agent":  func(c *decision.Claims) { c.Subject = other.pub },
	}
	// The gateway's side: once the request is stored, a reply of the
	// kind its payload names comes first, then the reply to it.
	sub, err := w.nc.Subscribe(ag.Subject(), func(in *nats.Msg) {
		body, err := envelope.Parse(in.Data, envelope.Limits{})
		if err != nil {
			t.Errorf("Parse(request) = %v", err)
			return
		}
		var p struct{ Case string }
		if err := json.Unmarshal(body.Payload.Plain, &p); err != nil {
			t.Errorf("request payload: %v", err)
			return
		}
		for _, m := range []*nats.Msg{
			reply(body.MessageID, `{"status":"`+p.Case+`"}`, bad[p.Case]),
			reply(body.MessageID, `{"status":"drafted"}`, func(*decision.Claims) {}),
		} {
			if err := w.nc.PublishMsg(m); err != nil {
				t.Error(err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	for name := range bad {
		plain, _ := json.Marshal(map[string]string{"case": name})
		_, r, err := ag.SendAndWait(ctxT(t), Request{Capability: envelope.ToolCall, Target: testTarget, Plain: json.RawMessage(plain)},
			WaitOptions{TrustedGateways: []string{w.gwSign.PublicKey()}})
		if err != nil {
			t.Fatalf("SendAndWait = %v", err)
		}
		if string(r.Payload) != `{"status":"drafted"}` {
			t.Errorf("SendAndWait took the reply %s (%s); want the gateway's reply to %s", r.Payload, name, testTarget)
		}
	}
}
