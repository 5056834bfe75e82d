package oidc_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/delivery"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/exchange/protocol"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/e2e/oidc/testidp"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestExchangeRequiresXKeyPossession: a principal who may log in to the
// tenant's IdP asks for a credential for its own agent key naming
// another agent's public curve key, the key the gateway opens sealed
// payloads from. Whatever it can put in the request without that key's
// secret is refused, and no credential is issued. The service before
// xkey_proof issued one for "own_curve_key" (v 1 requests had no proof).
func TestExchangeRequiresXKeyPossession(t *testing.T) {
	h := newHarness(t)
	h.serve()
	billing := h.token(h.corp, "billing-bot", "s3cret-billing")
	victim, mallory := newAgent(t), newAgent(t)
	otherGateway, _ := identity.NewCurve()
	otherGX, _ := otherGateway.PublicKey()
	// A proof the victim made for one of its own requests, seen in flight.
	victimReq := h.request(victim, billing)

	// forVictim is mallory's request naming the victim's xkey; edit
	// changes it further.
	forVictim := func(edit func(r *protocol.Request)) func(r *protocol.Request) {
		return func(r *protocol.Request) {
			r.Agent, r.XKey = mallory.pub, victim.xkey
			r.XKeyProof = h.xkeyProof(mallory.ck, r.Agent, r.RequestID)
			if edit != nil {
				edit(r)
			}
		}
	}
	tests := []struct {
		name string
		req  func(r *protocol.Request)
		// raw, when set, edits the marshalled body: the member's form
		// is the protocol's, which Marshal will not break.
		raw  func(body string, r *protocol.Request) string
		want reason.Code
	}{
		{name: "deny/own_curve_key", want: reason.ExchangeProofInvalid, req: forVictim(nil)},
		{name: "deny/victims_proof_for_its_own_request", want: reason.ExchangeProofInvalid, req: forVictim(func(r *protocol.Request) {
			r.RequestID, r.XKeyProof = victimReq.RequestID, victimReq.XKeyProof
		})},
		{name: "deny/proof_for_another_agent", want: reason.ExchangeProofInvalid, req: func(r *protocol.Request) {
			r.Agent = mallory.pub
			r.XKeyProof = h.xkeyProof(h.agent.ck, h.agent.pub, r.RequestID) // the harness agent's own xkey, but its agent key
		}},
		{name: "deny/proof_for_another_request_id", want: reason.ExchangeProofInvalid, req: func(r *protocol.Request) {
			r.XKeyProof = h.xkeyProof(h.agent.ck, r.Agent, protocol.NewRequestID())
		}},
		{name: "deny/proof_sealed_to_another_gateway", want: reason.ExchangeProofInvalid, req: func(r *protocol.Request) {
			p, err := protocol.SealXKeyProof(h.agent.ck, otherGX, r.Agent, r.RequestID)
			must(t, err)
			r.XKeyProof = p
		}},
		{name: "deny/xkey_is_the_gateways", want: reason.ExchangeProofInvalid, req: func(r *protocol.Request) {
			// Anyone can seal to a public key, here the gateway's own.
			r.XKey = h.gwX
			r.XKeyProof = h.xkeyProof(h.gwCurve, r.Agent, r.RequestID)
		}},
		{name: "deny/proof_missing", want: reason.ExchangeRequestInvalid, req: forVictim(nil),
			raw: func(body string, r *protocol.Request) string {
				return strings.Replace(body, `,"xkey_proof":"`+r.XKeyProof+`"`, "", 1)
			}},
		{name: "deny/v1_body", want: reason.ExchangeRequestInvalid, req: forVictim(nil),
			raw: func(body string, r *protocol.Request) string {
				return strings.Replace(strings.Replace(body, `,"xkey_proof":"`+r.XKeyProof+`"`, "", 1), `{"v":2,`, `{"v":1,`, 1)
			}},
		{name: "allow/own_curve_key_for_own_xkey", req: func(r *protocol.Request) {
			r.Agent, r.XKey = mallory.pub, mallory.xkey
			r.XKeyProof = h.xkeyProof(mallory.ck, r.Agent, r.RequestID)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := h.request(h.agent, billing)
			tt.req(req)
			body, err := protocol.Marshal(req)
			must(t, err)
			if tt.raw != nil {
				edited := tt.raw(string(body), req)
				if edited == string(body) {
					t.Fatal("the raw edit changed nothing")
				}
				body = []byte(edited)
			}
			// Signed by the key the request names: the signature is
			// not what is tested.
			signer := h.agent.kp
			if req.Agent == mallory.pub {
				signer = mallory.kp
			}
			got := h.send(body, h.signBy(signer)(body))
			ev := h.lastEvent()
			if got != tt.want || ev.Reason != string(tt.want) {
				t.Fatalf("exchange = %q (audit %q: %s); want %q", got, ev.Reason, ev.Detail, tt.want)
			}
			if tt.want != "" && (ev.CredentialID != "" || ev.Issuer != "") {
				t.Errorf("refused exchange names credential %q", ev.CredentialID)
			}
			t.Logf("detail: %s", ev.Detail)
		})
	}
}

// TestSealedPayloadOfAnotherAgentStaysSealed is the attack end to end,
// against a real gateway hosting the exchange (its exchange: section).
// An agent of tenant_a exchanges its IdP token and sends a sealed refund
// request through it. Another principal of the same IdP
// reads the victim's sealed payload where the delivery document carries
// the envelope byte for byte, and tries to get a credential naming the
// victim's xkey: with a proof sealed by its own curve key, and with the
// victim's sealed payload itself as the proof (the box goes from the
// victim's xkey to the gateway's, as a proof must; the request id is
// chosen so its length fits, so the proof opens and is compared). Both
// are refused. With the credential it may have, for its own xkey, an
// envelope carrying the victim's payload is refused by the gateway.
func TestSealedPayloadOfAnotherAgentStaysSealed(t *testing.T) {
	h := newHarness(t)
	ctx := startExchangeGateway(t, h)
	h.corp.AddClient(testidp.Client{ID: "mallory-bot", Secret: "s3cret-mallory", Audience: []string{idpAudience},
		Claims: map[string]any{"groups": []string{"billing-agents"}, "org": "tenant_a"}})

	// The victim's sealed request, delivered.
	secret := `{"order_id":"secret-order-4711","amount_cents":99000,"note":"` + strings.Repeat("x", 40) + `"}`
	src, err := client.NewCredentialSource(h.nc, h.exchangeCfg(h.agent, h.token(h.corp, "billing-bot", "s3cret-billing")))
	must(t, err)
	victim, err := client.NewExchangeAgent(h.nc, client.DefaultAgentConfig(), src)
	must(t, err)
	rcpt, err := victim.Send(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.create", Sealed: []byte(secret)})
	must(t, err)
	out := outputFor(t, h, rcpt.Seq)
	if out.Subject != "agentgw.cap.tenant_a.refunds.create" {
		t.Fatalf("the victim's request went to %s (%s); want delivered", out.Subject, out.Header.Get(header.Reason))
	}
	doc, err := delivery.Parse(out.Data, 1<<20)
	must(t, err)
	var env struct {
		Payload envelope.Payload `json:"payload"`
	}
	must(t, json.Unmarshal(doc.Envelope, &env))
	if env.Payload.From != h.agent.xkey || env.Payload.To != h.gwX {
		t.Fatalf("the delivered envelope's payload goes %s → %s; want the victim's xkey → the gateway's", env.Payload.From, env.Payload.To)
	}
	mallory := newAgent(t)
	tok := h.token(h.corp, "mallory-bot", "s3cret-mallory")
	attempt := func(name, detail string, edit func(r *protocol.Request)) {
		t.Helper()
		req := h.request(mallory, tok)
		req.XKey = h.agent.xkey
		edit(req)
		body, err := protocol.Marshal(req)
		must(t, err)
		if got := h.send(body, h.signBy(mallory.kp)(body)); got != reason.ExchangeProofInvalid {
			t.Errorf("%s: exchange naming the victim's xkey = %q; want %q", name, got, reason.ExchangeProofInvalid)
		}
		if ev := exchangeEvent(t, h, req.RequestID); ev.CredentialID != "" || !strings.Contains(ev.Detail, detail) {
			t.Errorf("%s: audit event = credential %q, detail %q; want none, and %q", name, ev.CredentialID, ev.Detail, detail)
		}
	}
	attempt("proof by mallory's curve key", "does not open from the request's xkey", func(r *protocol.Request) {
		r.XKeyProof = h.xkeyProof(mallory.ck, r.Agent, r.RequestID)
	})
	// It opens: the victim sealed it. Its plaintext is not the proof's.
	attempt("the victim's sealed payload as the proof", "not for this agent key and request id", func(r *protocol.Request) {
		// "agentgw-exchange-xkey-v1\n" ‖ agent ‖ "\n" ‖ request id is as
		// long as the victim's plaintext.
		n := len(secret) - len(protocol.XKeyProofInput(r.Agent, ""))
		if n < 16 || n > 128 {
			t.Fatalf("request id of %d characters cannot match the victim's payload", n)
		}
		r.RequestID = strings.Repeat("a", n)
		r.XKeyProof = env.Payload.Sealed
	})

	// Mallory's own credential, for its own xkey, with the victim's
	// payload: refused before anything is opened (from is not its
	// xkey), or it does not open (from its own xkey).
	got, err := client.Exchange(ctx, h.nc, h.exchangeCfg(mallory, tok))
	must(t, err)
	for _, from := range []string{h.agent.xkey, mallory.xkey} {
		seq := publishEnvelope(t, ctx, h, mallory, got.Token, envelope.Payload{Sealed: env.Payload.Sealed, From: from, To: h.gwX})
		m := outputFor(t, h, seq)
		if m.Subject == "agentgw.cap.tenant_a.refunds.create" || strings.Contains(string(m.Data), "secret-order") {
			t.Fatalf("mallory's envelope with the victim's payload from %s was delivered", from)
		}
		if r := m.Header.Get(header.Reason); r != string(reason.SealMismatch) && r != string(reason.SealBroken) {
			t.Errorf("mallory's envelope with the victim's payload from %s: reason %q; want seal_mismatch or seal_broken", from, r)
		}
	}
}

// exchangeEvent waits for the gateway's audit event of the exchange
// request with id requestID.
func exchangeEvent(t *testing.T, h *harness, requestID string) audit.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range streamMsgs(t, h, gateway.StreamAudit) {
			evs, _ := audit.Decode(m.Data)
			for _, ev := range evs {
				if ev.Kind == audit.KindCredentialExchange && ev.RequestID == requestID {
					return ev
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no audit event of exchange request %s", requestID)
	return audit.Event{}
}

// publishEnvelope publishes a tool call to refunds.create by a, signed
// by a, with cred and payload, and returns its ingress sequence.
func publishEnvelope(t *testing.T, ctx context.Context, h *harness, a *agent, cred identity.Token, p envelope.Payload) uint64 {
	t.Helper()
	id := envelope.NewMessageID()
	body, err := envelope.Builder{MessageID: id, Tenant: "tenant_a", Audience: gwAudience, Capability: envelope.ToolCall,
		Target: "refunds.create", Payload: p}.Build(time.Now())
	must(t, err)
	sig, err := a.kp.Sign(envelope.SigningInput(body))
	must(t, err)
	m := nats.NewMsg("agentgw.in.tenant_a." + a.pub)
	m.Data = body
	m.Header.Set(header.Credential, cred.Reveal())
	m.Header.Set(header.Signature, base64.RawURLEncoding.EncodeToString(sig))
	m.Header.Set(header.MsgID, id)
	js, err := jetstream.New(h.nc)
	must(t, err)
	ack, err := js.PublishMsg(ctx, m)
	must(t, err)
	return ack.Sequence
}

// startExchangeGateway runs a real gateway hosting the exchange (its
// exchange: section) with one sealed target, refunds.create (scope
// refund:draft, tenant_a); edit changes its config last.
func startExchangeGateway(t *testing.T, h *harness, edit ...func(cfg *gateway.Config, dir string)) context.Context {
	t.Helper()
	consumer, _ := identity.NewCurve()
	consumerX, _ := consumer.PublicKey()
	ctx, _ := startGateway(t, h, fmt.Sprintf(`
targets:
  - name: refunds.create
    kind: tool_call
    scope: refund:draft
    tenants: [tenant_a]
    consumer_xkey: %s
`, consumerX), append([]func(*gateway.Config, string){func(cfg *gateway.Config, dir string) {
		xc := h.cfg
		xc.IssuerSeeds = map[string]string{"tenant_a": filepath.Join(dir, "issuer_a.nk"), "tenant_b": filepath.Join(dir, "issuer_b.nk")}
		cfg.Exchange = &xc
	}}, edit...)...)
	return ctx
}
