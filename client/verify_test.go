package client

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/delivery"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects/reason"
)

// forward shapes what the gateway publishes on agentgw.cap.<tenant>.<target>
// for an envelope from a: the original body and signature, the payload
// re-sealed to consumer (nil: a plain target), a decision token. edit may
// change the claims before they are signed.
type forward struct {
	w        *world
	a        *actor
	target   string
	plain    []byte        // the plaintext the consumer should see
	sealed   bool          // the agent sealed its payload to the gateway
	consumer *identity.Box // nil: plain target
	signer   *identity.Signer
	edit     func(*decision.Claims)
}

func (f forward) msg() *nats.Msg {
	w := f.w
	w.t.Helper()
	bd := envelope.Builder{
		Tenant: testTenant, Audience: testAudience, Capability: envelope.ToolCall, Target: f.target,
		IdempotencyKey: "idem-1",
	}
	if f.sealed {
		ct, err := f.a.box.Seal(f.plain, w.gwCurve.PublicKey())
		if err != nil {
			w.t.Fatal(err)
		}
		bd.Payload = envelope.Payload{Sealed: base64.RawURLEncoding.EncodeToString(ct), From: f.a.xkey, To: w.gwCurve.PublicKey()}
	} else {
		bd.Payload = envelope.Payload{Plain: f.plain}
	}
	body, err := bd.Build(testClock)
	if err != nil {
		w.t.Fatal(err)
	}
	env, err := envelope.Parse(body, envelope.Limits{})
	if err != nil {
		w.t.Fatal(err)
	}
	m := nats.NewMsg("agentgw.cap." + testTenant + "." + f.target)
	signer, err := identity.NewSigner(f.a.kp)
	if err != nil {
		w.t.Fatal(err)
	}
	doc := delivery.Doc{Signature: base64.RawURLEncoding.EncodeToString(signer.Sign(envelope.SigningInput(body))), Envelope: body}
	m.Header.Set(header.Agent, f.a.pub)
	payload := env.Payload.Plain
	if f.consumer != nil {
		if payload, err = w.gwCurve.Seal(f.plain, f.consumer.PublicKey()); err != nil {
			w.t.Fatal(err)
		}
		doc.Sealed, doc.SealedFrom = base64.RawURLEncoding.EncodeToString(payload), w.gwCurve.PublicKey()
	}
	c := decision.Claims{
		Subject: f.a.pub, Audience: f.target, IssuedAt: testClock, Expires: testClock.Add(time.Minute),
		Tenant: testTenant, Scope: "refund:draft", TraceID: env.TraceID, MessageID: env.MessageID,
		BodyDigest: decision.Digest(body), PayloadDigest: decision.Digest(payload),
		PolicyIDs: []string{"permit-refunds"}, PolicyVersion: "v1", Route: decision.RouteAllow,
	}
	if f.edit != nil {
		f.edit(&c)
	}
	gw := f.signer
	if gw == nil {
		gw = w.gwSign
	}
	tok, err := decision.Sign(gw, c)
	if err != nil {
		w.t.Fatal(err)
	}
	doc.Decision = tok.Reveal()
	if m.Data, err = doc.Append(nil); err != nil {
		w.t.Fatal(err)
	}
	return m
}

// docFields is a delivery as an attacker could write it: no checks.
type docFields struct {
	V          int             `json:"v"`
	Decision   string          `json:"decision,omitempty"`
	Signature  string          `json:"signature,omitempty"`
	Sealed     string          `json:"sealed,omitempty"`
	SealedFrom string          `json:"sealed_from,omitempty"`
	Envelope   json.RawMessage `json:"envelope,omitempty"`
}

func docOf(t testing.TB, m *nats.Msg) docFields {
	t.Helper()
	var d docFields
	if err := json.Unmarshal(m.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// editDoc rewrites the delivery in m's body.
func editDoc(t testing.TB, m *nats.Msg, mod func(*docFields)) *nats.Msg {
	t.Helper()
	d := docOf(t, m)
	mod(&d)
	var err error
	if m.Data, err = json.Marshal(d); err != nil {
		t.Fatal(err)
	}
	return m
}

func (w *world) verifyOptions(consumer *identity.Box) VerifyOptions {
	return VerifyOptions{
		Tenant:               testTenant,
		Targets:              []string{testTarget, "orders.status"},
		TrustedGateways:      []string{w.gwSign.PublicKey()},
		Curve:                consumer,
		GatewayXKeys:         []string{w.gwCurve.PublicKey()},
		VerifyAgentSignature: true,
		Now:                  testClock.Add(10 * time.Second),
		Skew:                 DefaultSkew,
	}
}

func TestVerifyDelivery(t *testing.T) {
	w := newWorld(t)
	a := w.newActor(testTenant)
	consumer, err := identity.NewBox(mustKey(t, identity.NewCurve))
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := identity.NewBox(mustKey(t, identity.NewCurve))
	if err != nil {
		t.Fatal(err)
	}
	otherGW, err := identity.NewSigner(mustKey(t, identity.NewGatewayKey))
	if err != nil {
		t.Fatal(err)
	}
	plaintext := []byte(`{"order":"A-1","amount_cents":2500}`)
	sealedFwd := forward{w: w, a: a, target: testTarget, plain: plaintext, sealed: true, consumer: consumer}
	plainFwd := forward{w: w, a: a, target: "orders.status", plain: []byte(`{"q":"status"}`)}
	with := func(f forward, edit func(*decision.Claims)) forward { f.edit = edit; return f }

	// Another genuine message, for swapping its parts in.
	other := sealedFwd.msg()

	// A re-sealed payload that opens with the consumer's key but is
	// sealed by stranger, not the gateway's curve key, its bytes bound
	// by a trusted gateway's token: only GatewayXKeys refuses it.
	strangerSealed, err := stranger.Seal(plaintext, consumer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	sealedByStranger := func() *nats.Msg {
		f := with(sealedFwd, func(c *decision.Claims) { c.PayloadDigest = decision.Digest(strangerSealed) })
		return editDoc(t, f.msg(), func(d *docFields) {
			d.Sealed, d.SealedFrom = base64.RawURLEncoding.EncodeToString(strangerSealed), stranger.PublicKey()
		})
	}

	cases := []struct {
		name   string
		msg    func() *nats.Msg
		opt    func(*VerifyOptions)
		want   reason.Code // "" = accepted
		sealed bool
	}{
		{name: "ok/sealed", msg: sealedFwd.msg, sealed: true},
		{name: "ok/plain", msg: plainFwd.msg},
		{name: "ok/plain_envelope_resealed", msg: forward{w: w, a: a, target: testTarget, plain: plaintext, consumer: consumer}.msg, sealed: true},
		{name: "ok/no_agent_header", msg: func() *nats.Msg { m := sealedFwd.msg(); m.Header.Del(header.Agent); return m }, sealed: true},
		{name: "ok/within_skew", msg: with(sealedFwd, func(c *decision.Claims) { c.Expires = testClock.Add(time.Second) }).msg, sealed: true},
		{name: "ok/sealed_by_another_key_without_allow_list", opt: func(o *VerifyOptions) { o.GatewayXKeys = nil }, msg: sealedByStranger, sealed: true},

		{name: "deny/wrong_subject", want: reason.InvalidSubject, msg: func() *nats.Msg {
			m := sealedFwd.msg()
			m.Subject = "agentgw.cap." + testTenant + ".payments.send"
			return m
		}},
		{name: "deny/subject_of_another_tenant", want: reason.InvalidSubject, opt: func(o *VerifyOptions) { o.Tenant = "tenant_b" }, msg: sealedFwd.msg},
		{name: "deny/missing_token", want: reason.DecisionMissing, msg: func() *nats.Msg {
			return editDoc(t, sealedFwd.msg(), func(d *docFields) { d.Decision = "" })
		}},
		{name: "deny/garbage_token", want: reason.DecisionInvalid, msg: func() *nats.Msg {
			return editDoc(t, sealedFwd.msg(), func(d *docFields) { d.Decision = "eyJ0eXAiOiJKV1QifQ.e30.AAAA" })
		}},
		{name: "deny/token_signed_by_another_key", want: reason.DecisionInvalid, msg: func() *nats.Msg {
			f := sealedFwd
			f.signer = otherGW
			return f.msg()
		}},
		{name: "deny/reply_token_on_cap_subject", want: reason.DecisionInvalid,
			msg: with(sealedFwd, func(c *decision.Claims) { c.Route = decision.RouteReply }).msg},
		{name: "deny/expired", want: reason.DecisionExpired, msg: with(sealedFwd, func(c *decision.Claims) {
			c.IssuedAt, c.Expires = testClock.Add(-2*time.Minute), testClock.Add(-time.Minute)
		}).msg},
		{name: "deny/token_for_another_target", want: reason.DecisionAudience,
			msg: with(sealedFwd, func(c *decision.Claims) { c.Audience = "orders.status" }).msg},
		{name: "deny/token_from_another_subject", want: reason.DecisionAudience, msg: func() *nats.Msg {
			// A genuine message for orders.status replayed onto the
			// refunds subject.
			m := plainFwd.msg()
			m.Subject = "agentgw.cap." + testTenant + "." + testTarget
			return m
		}},
		{name: "deny/token_for_another_tenant", want: reason.DecisionAudience,
			msg: with(sealedFwd, func(c *decision.Claims) { c.Tenant = "tenant_b" }).msg},
		{name: "deny/body_altered", want: reason.DecisionBinding, msg: func() *nats.Msg {
			m := sealedFwd.msg()
			m.Data = bytes.Replace(m.Data, []byte(`"idem-1"`), []byte(`"idem-2"`), 1)
			return m
		}},
		{name: "deny/body_swapped", want: reason.DecisionBinding, msg: func() *nats.Msg {
			return editDoc(t, sealedFwd.msg(), func(d *docFields) { d.Envelope = docOf(t, other).Envelope })
		}},
		{name: "deny/resealed_altered", want: reason.DecisionBinding, msg: func() *nats.Msg {
			return editDoc(t, sealedFwd.msg(), func(d *docFields) {
				ct, _ := base64.RawURLEncoding.DecodeString(d.Sealed)
				ct[len(ct)-1] ^= 1
				d.Sealed = base64.RawURLEncoding.EncodeToString(ct)
			})
		}},
		{name: "deny/resealed_swapped", want: reason.DecisionBinding, msg: func() *nats.Msg {
			return editDoc(t, sealedFwd.msg(), func(d *docFields) { d.Sealed = docOf(t, other).Sealed })
		}},
		{name: "deny/resealed_stripped_plain_envelope", want: reason.DecisionBinding, msg: func() *nats.Msg {
			m := forward{w: w, a: a, target: testTarget, plain: plaintext, consumer: consumer}.msg()
			return editDoc(t, m, func(d *docFields) { d.Sealed = "" })
		}},
		{name: "deny/resealed_stripped_sealed_envelope", want: reason.SealBroken, msg: func() *nats.Msg {
			return editDoc(t, sealedFwd.msg(), func(d *docFields) { d.Sealed = "" })
		}},
		{name: "deny/resealed_not_base64", want: reason.SealBroken, msg: func() *nats.Msg {
			return editDoc(t, sealedFwd.msg(), func(d *docFields) { d.Sealed = "not base64!" })
		}},
		{name: "deny/payload_for_another_consumer", want: reason.SealBroken, msg: func() *nats.Msg {
			f := sealedFwd
			f.consumer = stranger
			return f.msg()
		}},
		{name: "deny/sealed_from_spoofed", want: reason.SealBroken, msg: func() *nats.Msg {
			return editDoc(t, sealedFwd.msg(), func(d *docFields) { d.SealedFrom = stranger.PublicKey() })
		}},
		{name: "deny/sealed_by_key_outside_allow_list", want: reason.SealBroken, msg: sealedByStranger},
		{name: "deny/sealed_from_spoofed_any_sender", want: reason.SealBroken, opt: func(o *VerifyOptions) { o.GatewayXKeys = nil }, msg: func() *nats.Msg {
			return editDoc(t, sealedFwd.msg(), func(d *docFields) { d.SealedFrom = stranger.PublicKey() })
		}},
		{name: "deny/no_consumer_key", want: reason.SealBroken, opt: func(o *VerifyOptions) { o.Curve = nil }, msg: sealedFwd.msg},
		{name: "deny/agent_header_forged", want: reason.DecisionBinding, msg: func() *nats.Msg {
			m := sealedFwd.msg()
			m.Header.Set(header.Agent, w.newActor(testTenant).pub)
			return m
		}},
		{name: "deny/claims_disagree_with_body", want: reason.DecisionBinding,
			msg: with(sealedFwd, func(c *decision.Claims) { c.MessageID = "another-message-id-000" }).msg},
		{name: "deny/agent_signature_forged", want: reason.BadSignature, msg: func() *nats.Msg {
			return editDoc(t, sealedFwd.msg(), func(d *docFields) { d.Signature = docOf(t, other).Signature })
		}},
	}
	// Refusals a reader with other keys could lift are marked
	// ErrUnknownKey; those that prove the message wrong are not.
	unknownKey := map[string]bool{
		"deny/token_signed_by_another_key": true, "deny/payload_for_another_consumer": true,
		"deny/sealed_from_spoofed": true, "deny/sealed_by_key_outside_allow_list": true,
		"deny/sealed_from_spoofed_any_sender": true, "deny/no_consumer_key": true,
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.msg()
			opt := w.verifyOptions(consumer)
			if tc.opt != nil {
				tc.opt(&opt)
			}
			d, err := VerifyDelivery(m.Subject, m.Header, m.Data, opt)
			if tc.want != "" {
				var den *reason.Denial
				if !errors.Is(err, tc.want) || !errors.As(err, &den) {
					t.Fatalf("VerifyDelivery(%s) = %v; want a *reason.Denial %v", tc.name, err, tc.want)
				}
				if d != nil {
					t.Errorf("VerifyDelivery(%s) returned a delivery with its error", tc.name)
				}
				if got := errors.Is(err, ErrUnknownKey); got != unknownKey[tc.name] {
					t.Errorf("VerifyDelivery(%s) = %v: marked ErrUnknownKey %v, want %v", tc.name, err, got, unknownKey[tc.name])
				}
				if bytes.Contains([]byte(err.Error()), plaintext) {
					t.Errorf("error quotes the payload: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyDelivery(%s) = %v; want nil", tc.name, err)
			}
			want := plaintext
			if m.Subject != "agentgw.cap."+testTenant+"."+testTarget {
				want = []byte(`{"q":"status"}`)
			}
			if !bytes.Equal(d.Payload, want) || d.Sealed != tc.sealed {
				t.Errorf("Payload = %q, sealed %v; want %q, %v", d.Payload, d.Sealed, want, tc.sealed)
			}
			if d.Agent != a.pub || !bytes.Equal(d.Body, docOf(t, m).Envelope) || d.Envelope.MessageID != d.Claims.MessageID || d.Target != d.Claims.Audience {
				t.Errorf("delivery = %v; want agent, body and ids of the message", d)
			}
			if s := d.String(); bytes.Contains([]byte(s), want) || strings.Contains(s, decision.Digest(want)) {
				t.Errorf("Delivery.String() = %s; quotes the payload or its digest", s)
			}
			if s, n := d.String(), fmt.Sprintf("payload=%d bytes", len(want)); !strings.Contains(s, n) {
				t.Errorf("Delivery.String() = %s; want %q", s, n)
			}
		})
	}
}

// TestVerifyDeliveryReadsDocumentStrictly rewrites a genuine delivery's
// text the ways a case-insensitive, last-duplicate-wins decoder that
// skips newlines in base64 would still read as the genuine delivery:
// each is refused, as the TypeScript SDK refuses it — the document's
// shape with decision_token_missing, the re-sealed payload's text with
// seal_broken.
func TestVerifyDeliveryReadsDocumentStrictly(t *testing.T) {
	w := newWorld(t)
	a := w.newActor(testTenant)
	consumer, err := identity.NewBox(mustKey(t, identity.NewCurve))
	if err != nil {
		t.Fatal(err)
	}
	fwd := forward{w: w, a: a, target: testTarget, plain: []byte(`{"order":"A-1","amount_cents":2500}`), sealed: true, consumer: consumer}
	genuine := fwd.msg()
	opt := w.verifyOptions(consumer)
	if _, err := VerifyDelivery(genuine.Subject, genuine.Header, genuine.Data, opt); err != nil {
		t.Fatalf("genuine delivery: %v", err)
	}
	doc := docOf(t, genuine)
	text := string(genuine.Data)
	half := len(doc.Sealed) / 2
	for _, tc := range []struct {
		name string
		data string
		want reason.Code
	}{
		{"deny/decision-case", strings.Replace(text, `"decision":`, `"Decision":`, 1), reason.DecisionMissing},
		{"deny/sealed-from-case", strings.Replace(text, `"sealed_from":`, `"SEALED_FROM":`, 1), reason.DecisionMissing},
		{"deny/envelope-case", strings.Replace(text, `"envelope":`, `"Envelope":`, 1), reason.DecisionMissing},
		{"deny/duplicate-decision", strings.Replace(text, `"decision":`, `"decision":"a.b.c","decision":`, 1), reason.DecisionMissing},
		{"deny/duplicate-sealed", strings.Replace(text, `"sealed":`, `"sealed":"AAAA","sealed":`, 1), reason.DecisionMissing},
		{"deny/case-duplicate-envelope", strings.Replace(text, `"envelope":`, `"Envelope":{},"envelope":`, 1), reason.DecisionMissing},
		{"deny/newline-in-sealed", strings.Replace(text, doc.Sealed, doc.Sealed[:half]+`\n`+doc.Sealed[half:], 1), reason.SealBroken},
		{"deny/crlf-in-sealed", strings.Replace(text, doc.Sealed, doc.Sealed[:half]+`\r\n`+doc.Sealed[half:], 1), reason.SealBroken},
	} {
		if tc.data == text {
			t.Fatalf("%s: the rewrite changed nothing", tc.name)
		}
		_, err := VerifyDelivery(genuine.Subject, genuine.Header, []byte(tc.data), opt)
		if got := reason.Of(err); got != tc.want {
			t.Errorf("VerifyDelivery(%s) = %v; want %s", tc.name, err, tc.want)
		}
	}
}
