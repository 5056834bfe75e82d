package gateway

import (
	"context"
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
	"go.uber.org/goleak"

	"github.com/agentgw/agentgw/internal/natstest"

	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/schemas"
	"github.com/agentgw/agentgw/subjects/reason"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.LeakOptions()...)
}

func TestSealedToolCallDelivered(t *testing.T) {
	h := newHarness(t)
	h.start()
	body, plain := h.sealedRefund(h.agent, 2500, nil)
	seq := h.send(body)
	out := h.outputFor(seq)
	if !strings.HasPrefix(out.Subject, "agentgw.cap.tenant_a.refunds.draft_refund") {
		t.Fatalf("output subject = %s (reason %q); want the capability subject", out.Subject, out.Header.Get(header.Reason))
	}
	doc := h.delivery(out)
	if string(doc.Envelope) != string(body) {
		t.Fatal("capability output does not carry the original body bytes")
	}
	resealed, err := base64.RawURLEncoding.DecodeString(doc.Sealed)
	must(t, err)
	claims, err := decision.Verify(doc.Decision, decision.VerifyOptions{
		TrustedGateways: []string{h.gwSigning}, Audience: "refunds.draft_refund", Now: h.clock.Now(), Skew: 30 * time.Second,
	})
	if err != nil {
		t.Fatalf("consumer rejects the decision token: %v", err)
	}
	if err := claims.CheckBinding(doc.Envelope, resealed); err != nil {
		t.Fatalf("decision token binding: %v", err)
	}
	got, err := h.consumer.box.Open(resealed, doc.SealedFrom)
	if err != nil {
		t.Fatalf("consumer cannot open the re-sealed payload: %v", err)
	}
	if string(got) != string(plain) {
		t.Fatalf("consumer opened %q; want the agent's exact plaintext", got)
	}
	// Tampering with either bound part is caught by the consumer.
	if err := claims.CheckBinding(append([]byte(" "), out.Data...), resealed); !errors.Is(err, reason.DecisionBinding) {
		t.Errorf("CheckBinding(tampered body) = %v; want %v", err, reason.DecisionBinding)
	}
	if ev := h.auditFor(seq); ev.Route != "allow" || ev.CredentialID == "" || ev.TraceID == "" {
		t.Errorf("audit event = %+v; want an allow with credential jti and trace id", ev)
	}
	h.stop()
	h.scanSecrets()
}

// auditEvents returns every event of the audit stream, in order (an audit
// message holds several: audit.Decode).
func (h *harness) auditEvents() []audit.Event {
	h.t.Helper()
	var out []audit.Event
	for _, m := range h.all(StreamAudit) {
		evs, err := audit.Decode(m.Data)
		must(h.t, err)
		out = append(out, evs...)
	}
	return out
}

// auditFor returns the audit event recorded for an ingress sequence.
func (h *harness) auditFor(seq uint64) audit.Event {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, ev := range h.auditEvents() {
			if ev.IngressSeq == seq {
				return ev
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("no audit event for ingress sequence %d", seq)
	return audit.Event{}
}

// hostile describes one attack: how to make and send it, and the reason
// the gateway must give.
type hostile struct {
	name string
	want reason.Code
	send func(h *harness) uint64
}

func hostileCases() []hostile {
	resign := func(h *harness, body []byte) uint64 { return h.send(body) }
	// sealedRefundOf sends a refund whose sealed payload is plain, as is.
	sealedRefundOf := func(h *harness, plain string) uint64 {
		sealed, err := h.agent.box.Seal([]byte(plain), h.gwCurve)
		must(h.t, err)
		return resign(h, h.body(func(b *envelope.Builder) {
			b.Capability, b.Target = envelope.ToolCall, "refunds.draft_refund"
			b.Payload = envelope.Payload{Sealed: base64.RawURLEncoding.EncodeToString(sealed), From: h.agent.xkey, To: h.gwCurve}
		}))
	}
	withCred := func(h *harness, tok func(h *harness) string) uint64 {
		body := h.body(nil)
		hdr := h.signed(h.agent, h.agent.token, body)
		hdr.Set(header.Credential, tok(h))
		return h.publish(h.ingress(h.agent, "tenant_a"), body, hdr)
	}
	return []hostile{
		{"deny/oversized", reason.Oversized, func(h *harness) uint64 {
			return resign(h, []byte(`{"pad":"`+strings.Repeat("x", 70<<10)+`"}`))
		}},
		{"deny/missing_credential", reason.MissingHeader, func(h *harness) uint64 {
			body := h.body(nil)
			hdr := h.signed(h.agent, h.agent.token, body)
			hdr.Del(header.Credential)
			return h.publish(h.ingress(h.agent, "tenant_a"), body, hdr)
		}},
		{"deny/signature_stripped", reason.MissingHeader, func(h *harness) uint64 {
			body := h.body(nil)
			hdr := h.signed(h.agent, h.agent.token, body)
			hdr.Del(header.Signature)
			return h.publish(h.ingress(h.agent, "tenant_a"), body, hdr)
		}},
		{"deny/invalid_subject", reason.InvalidSubject, func(h *harness) uint64 {
			body := h.body(nil)
			return h.publish("agentgw.in.TENANT_A."+h.agent.pub, body, h.signed(h.agent, h.agent.token, body))
		}},
		{"deny/malformed_json", reason.MalformedEnvelope, func(h *harness) uint64 { return resign(h, []byte(`{"v":1,`)) }},
		{"deny/duplicate_key", reason.MalformedEnvelope, func(h *harness) uint64 {
			body := h.body(nil)
			return resign(h, []byte(strings.Replace(string(body), `"v":1,`, `"v":1,"v":1,`, 1)))
		}},
		{"deny/unsupported_version", reason.UnsupportedVersion, func(h *harness) uint64 {
			body := h.body(nil)
			return resign(h, []byte(strings.Replace(string(body), `"v":1,`, `"v":2,`, 1)))
		}},
		{"deny/malformed_credential", reason.MalformedCredential, func(h *harness) uint64 {
			return withCred(h, func(*harness) string { return "not.a.jwt" })
		}},
		{"deny/untrusted_issuer", reason.UntrustedIssuer, func(h *harness) uint64 {
			return withCred(h, func(h *harness) string {
				return h.credential(h.untrusted, h.agent, "tenant_a", []string{"kb:read"}, time.Hour, "").Reveal()
			})
		}},
		{"deny/issuer_of_other_tenant", reason.UntrustedIssuer, func(h *harness) uint64 {
			return withCred(h, func(h *harness) string {
				return h.credential(h.issuerB, h.agent, "tenant_a", []string{"kb:read"}, time.Hour, "").Reveal()
			})
		}},
		{"deny/credential_wrong_audience", reason.WrongAudience, func(h *harness) uint64 {
			return withCred(h, func(h *harness) string {
				return h.credential(h.issuer, h.agent, "tenant_a", []string{"kb:read"}, time.Hour, "other-gateway").Reveal()
			})
		}},
		{"deny/credential_expired", reason.CredentialExpired, func(h *harness) uint64 {
			h.clock.Advance(-2 * time.Minute)
			tok := h.credential(h.issuer, h.agent, "tenant_a", []string{"kb:read"}, time.Minute, "")
			h.clock.Advance(2 * time.Minute)
			body := h.body(nil)
			return h.publish(h.ingress(h.agent, "tenant_a"), body, h.signed(h.agent, tok, body))
		}},
		{"deny/credential_not_yet_valid", reason.CredentialNotYetValid, func(h *harness) uint64 {
			return withCred(h, func(h *harness) string {
				tok, err := identity.Issue(h.issuer, identity.IssueRequest{
					Subject: h.agent.pub, Audience: testAudience, Tenant: "tenant_a", Scopes: []string{"kb:read"},
					XKey: h.agent.xkey, NotBefore: h.clock.Now().Add(5 * time.Minute), TTL: time.Hour,
				}, h.clock.Now())
				must(h.t, err)
				h.secrets = append(h.secrets, tok.Reveal())
				return tok.Reveal()
			})
		}},
		{"deny/credential_lifetime_too_long", reason.CredentialTooLong, func(h *harness) uint64 {
			return withCred(h, func(h *harness) string {
				return h.credential(h.issuer, h.agent, "tenant_a", []string{"kb:read"}, 48*time.Hour, "").Reveal()
			})
		}},
		{"deny/bad_signature_other_body", reason.BadSignature, func(h *harness) uint64 {
			body, other := h.body(nil), h.body(nil)
			return h.publish(h.ingress(h.agent, "tenant_a"), body, h.signed(h.agent, h.agent.token, other))
		}},
		{"deny/bad_signature_other_key", reason.BadSignature, func(h *harness) uint64 {
			body := h.body(nil)
			hdr := h.signed(newActor(h.t), h.agent.token, body)
			return h.publish(h.ingress(h.agent, "tenant_a"), body, hdr)
		}},
		{"deny/reserialised_after_signing", reason.BadSignature, func(h *harness) uint64 {
			body := h.body(nil)
			hdr := h.signed(h.agent, h.agent.token, body)
			return h.publish(h.ingress(h.agent, "tenant_a"), []byte(strings.Replace(string(body), `,"`, `, "`, 1)), hdr)
		}},
		{"deny/tenant_mismatch", reason.TenantMismatch, func(h *harness) uint64 {
			return resign(h, h.body(func(b *envelope.Builder) { b.Tenant = "tenant_b" }))
		}},
		{"deny/subject_of_other_tenant", reason.TenantMismatch, func(h *harness) uint64 {
			body := h.body(nil)
			return h.publish(h.ingress(h.agent, "tenant_b"), body, h.signed(h.agent, h.agent.token, body))
		}},
		{"deny/subject_of_other_agent", reason.SubjectMismatch, func(h *harness) uint64 {
			body := h.body(nil)
			return h.publish(h.ingress(newActor(h.t), "tenant_a"), body, h.signed(h.agent, h.agent.token, body))
		}},
		{"deny/envelope_wrong_audience", reason.WrongAudience, func(h *harness) uint64 {
			return resign(h, h.body(func(b *envelope.Builder) { b.Audience = "other-gateway" }))
		}},
		{"deny/message_expired", reason.MessageExpired, func(h *harness) uint64 {
			h.clock.Advance(-10 * time.Minute)
			body := h.body(nil)
			h.clock.Advance(10 * time.Minute)
			return resign(h, body)
		}},
		{"deny/issued_in_future", reason.IssuedInFuture, func(h *harness) uint64 {
			h.clock.Advance(2 * time.Minute)
			body := h.body(nil)
			h.clock.Advance(-2 * time.Minute)
			return resign(h, body)
		}},
		{"deny/ttl_too_long", reason.TTLTooLong, func(h *harness) uint64 {
			return resign(h, h.body(func(b *envelope.Builder) { b.TTL = 10 * time.Minute }))
		}},
		{"deny/unknown_target", reason.UnknownTarget, func(h *harness) uint64 {
			return resign(h, h.body(func(b *envelope.Builder) { b.Target = "no.such.target" }))
		}},
		{"deny/capability_outside_delegation", reason.CapabilityMismatch, func(h *harness) uint64 {
			return resign(h, h.body(func(b *envelope.Builder) { b.Capability = envelope.ToolCall }))
		}},
		{"deny/missing_scope", reason.MissingScope, func(h *harness) uint64 {
			tok := h.credential(h.issuer, h.agent, "tenant_a", []string{"refund:draft"}, time.Hour, "")
			body := h.body(nil)
			return h.publish(h.ingress(h.agent, "tenant_a"), body, h.signed(h.agent, tok, body))
		}},
		{"deny/tenant_not_allowed", reason.TenantNotAllowed, func(h *harness) uint64 {
			return resign(h, h.body(func(b *envelope.Builder) { b.Target = "b.only" }))
		}},
		{"deny/policy_forbids", reason.PolicyDenied, func(h *harness) uint64 {
			return resign(h, h.body(func(b *envelope.Builder) { b.Capability, b.Target = envelope.ToolCall, "ops.forbidden" }))
		}},
		{"deny/plain_to_sealed_target", reason.PlainNotAllowed, func(h *harness) uint64 {
			return resign(h, h.body(func(b *envelope.Builder) { b.Capability, b.Target = envelope.ToolCall, "refunds.draft_refund" }))
		}},
		{"deny/sealed_from_other_key", reason.SealMismatch, func(h *harness) uint64 {
			other := newActor(h.t)
			body, _ := h.sealedRefund(other, 100, nil)
			return resign(h, body)
		}},
		{"deny/seal_broken", reason.SealBroken, func(h *harness) uint64 {
			body := h.body(func(b *envelope.Builder) {
				b.Capability, b.Target = envelope.ToolCall, "refunds.draft_refund"
				b.Payload = envelope.Payload{Sealed: base64.RawURLEncoding.EncodeToString([]byte("xkv1" + strings.Repeat("A", 60))), From: h.agent.xkey, To: h.gwCurve}
			})
			return resign(h, body)
		}},
		{"deny/payload_schema", reason.PayloadInvalid, func(h *harness) uint64 {
			return sealedRefundOf(h, `{"order_id":42}`)
		}},
		// A duplicated member would pass the ceiling as its last value and
		// reach a consumer that keeps the first; by case, a Go consumer
		// decoding into a struct.
		{"deny/sealed_duplicate_member", reason.PayloadInvalid, func(h *harness) uint64 {
			return sealedRefundOf(h, `{"order_id":"o1","amount_cents":999999999,"amount_cents":5}`)
		}},
		{"deny/sealed_case_folded_member", reason.PayloadInvalid, func(h *harness) uint64 {
			return sealedRefundOf(h, `{"order_id":"o1","amount_cents":5,"Amount_Cents":999999999}`)
		}},
		// A lone member differing only in case from a field the gateway
		// reads by name is no duplicate, but policy, approver and claim
		// check would not see it while a Go consumer reads it as the
		// field: Amount_cents hides the amount from the approver, from
		// the ceiling, and Tenant contradicts the envelope unseen.
		{"deny/case_variant_of_approver_visible", reason.PayloadCaseVariant, func(h *harness) uint64 {
			return resign(h, h.body(func(b *envelope.Builder) {
				b.Capability, b.Target = envelope.ToolCall, "payments.send"
				b.Payload = envelope.Payload{Plain: json.RawMessage(`{"Amount_cents":999999999,"iban":"DE00123"}`)}
			}))
		}},
		{"deny/sealed_case_variant_of_policy_visible", reason.PayloadCaseVariant, func(h *harness) uint64 {
			return sealedRefundOf(h, `{"order_id":"o1","amount_cent\u017f":999999999}`) // U+017F folds to s
		}},
		{"deny/case_variant_of_claim_field", reason.PayloadCaseVariant, func(h *harness) uint64 {
			return resign(h, h.body(func(b *envelope.Builder) {
				b.Payload = envelope.Payload{Plain: json.RawMessage(`{"q":"x","Tenant":"tenant_b"}`)}
			}))
		}},
		// A member name with a control character: every check here
		// matches names exactly and sees another member, while a
		// consumer whose decoder ends keys at U+0000 (cJSON) reads
		// tenant, or amount_cents.
		{"deny/control_char_in_member_name", reason.MalformedEnvelope, func(h *harness) uint64 {
			body := h.body(func(b *envelope.Builder) { b.Payload = envelope.Payload{Plain: json.RawMessage(`{"q":"x"}`)} })
			return resign(h, []byte(strings.Replace(string(body), `{"q":"x"}`, `{"q":"x","tenant\u0000":"tenant_b"}`, 1)))
		}},
		{"deny/sealed_control_char_in_member_name", reason.PayloadInvalid, func(h *harness) uint64 {
			return sealedRefundOf(h, `{"order_id":"o1","amount_cents":5,"amount_cents\u0000":999999999}`)
		}},
		{"deny/content_policy", reason.ContentDenied, func(h *harness) uint64 {
			body, _ := h.sealedRefund(h.agent, 500000, nil)
			return resign(h, body)
		}},
		{"deny/payload_contradicts_envelope", reason.ContentDenied, func(h *harness) uint64 {
			return resign(h, h.body(func(b *envelope.Builder) {
				b.Payload = envelope.Payload{Plain: json.RawMessage(`{"q":"x","tenant":"tenant_b"}`)}
			}))
		}},
		{"deny/budget_exceeded", reason.BudgetExceeded, func(h *harness) uint64 {
			first := resign(h, h.body(func(b *envelope.Builder) { b.Target = "ops.limited" }))
			h.outputFor(first)
			return resign(h, h.body(func(b *envelope.Builder) { b.Target = "ops.limited" }))
		}},
		{"deny/revoked_agent", reason.Revoked, func(h *harness) uint64 {
			victim := newActor(h.t)
			tok := h.credential(h.issuer, victim, "tenant_a", []string{"kb:read"}, time.Hour, "")
			must(h.t, os.WriteFile(h.cfg.Revocations.File, []byte("jtis: []\nprincipals: []\nkeys: ["+victim.pub+"]\n"), 0o600))
			must(h.t, h.gw.Reload())
			body := h.body(nil)
			return h.publish(h.ingress(victim, "tenant_a"), body, h.signed(victim, tok, body))
		}},
	}
}

func TestHostileMessagesDenied(t *testing.T) {
	h := newHarness(t)
	h.start()
	opensBefore := h.gw.Stats().PayloadOpens.Load()
	cases := hostileCases()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seq := tc.send(h)
			out := h.outputFor(seq)
			got := reason.Code(out.Header.Get(header.Reason))
			if got != tc.want {
				t.Fatalf("reason = %q (detail %q); want %q", got, out.Header.Get(header.Detail), tc.want)
			}
			if !strings.HasPrefix(out.Subject, "agentgw.denied.") || !strings.HasSuffix(out.Subject, "."+string(tc.want)) {
				t.Errorf("output subject = %s; want agentgw.denied.<tenant>.%s", out.Subject, tc.want)
			}
			ev := h.auditFor(seq)
			if ev.Reason != string(tc.want) || ev.Route != "deny" {
				t.Errorf("audit event reason = %q route = %q; want %q deny", ev.Reason, ev.Route, tc.want)
			}
			// A credential whose holder did not sign is not named: its
			// JWT alone would otherwise put a victim's credential on
			// the audit trail of messages it never sent.
			if tc.want == reason.BadSignature && (ev.CredentialID != "" || ev.Issuer != "" || len(ev.Scopes) > 0) {
				t.Errorf("bad signature's audit event names credential %q of %q, scopes %v; want none", ev.CredentialID, ev.Issuer, ev.Scopes)
			}
		})
	}
	// Only the cases that pass policy reach the opening step: the seal,
	// strict-JSON, case-variant, schema and content cases. Every other
	// denial happened with the payload shut.
	if opened := h.gw.Stats().PayloadOpens.Load() - opensBefore; opened != 7 {
		t.Errorf("payload opens during hostile run = %d; want 7 (seal_broken, three strict-JSON cases, a case variant, payload_schema, content_policy)", opened)
	}
	r, err := invariant.Wait(context.Background(), h.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v (%s)", err, r)
	}
	t.Logf("invariant: %s", r)
	h.stop()
	h.scanSecrets()
	h.validateAudit()
}

// validateAudit checks every audit event against its published schema.
func (h *harness) validateAudit() {
	h.t.Helper()
	s, err := schemas.Compile(schemas.AuditEvent)
	must(h.t, err)
	events := h.all(StreamAudit)
	if len(events) == 0 {
		h.t.Fatal("no audit events")
	}
	for _, m := range events {
		for _, ev := range audit.Lines(m.Data) {
			if err := schemas.Validate(s, ev); err != nil {
				h.t.Errorf("audit event %s violates the schema: %v", ev, err)
			}
		}
	}
}

// TestEveryWireReasonIsExercised keeps the hostile table honest: each
// reason the gateway can produce from the wire has a named case.
func TestEveryWireReasonIsExercised(t *testing.T) {
	covered := map[reason.Code]bool{
		reason.ReplayDetected: true, reason.DuplicateRequest: true, reason.IdempotencyConflict: true, // TestReplayAndIdempotency
	}
	for _, c := range hostileCases() {
		covered[c.want] = true
	}
	notFromWire := map[reason.Code]string{
		reason.SchemaViolation: "the strict parser rejects everything the schema does (proved in package schemas)",
		reason.ApprovalDenied:  "approval flow", reason.ApprovalExpired: "approval flow", reason.ApprovalInvalid: "approval flow", reason.SelfApproval: "approval flow",
		reason.NoSuchRequest: "responses", reason.NotYourRequest: "responses", reason.AlreadyAnswered: "responses", reason.ResponseLate: "responses", reason.ResponseInvalid: "responses", reason.WrongResponder: "responses",
		reason.ReplayRefused: "operator replay", reason.Internal: "internal failures",
		reason.LedgerIncomplete: "a journal lost (TestScaleOutJournalCreatedAgain)",
		reason.DecisionMissing:  "consumer side", reason.DecisionInvalid: "consumer side", reason.DecisionExpired: "consumer side", reason.DecisionAudience: "consumer side", reason.DecisionBinding: "consumer side",
		reason.DecisionDuplicate: "consumer side", reason.DecisionRecordFull: "consumer side",
	}
	for _, info := range reason.All {
		if info.Stage == "exchange" { // the token-exchange service, not the ingress pipeline
			continue
		}
		if !covered[info.Code] && notFromWire[info.Code] == "" {
			t.Errorf("reason %q has no end-to-end case", info.Code)
		}
	}
}

func TestReplayAndIdempotency(t *testing.T) {
	h := newHarness(t)
	h.start()
	body := h.body(func(b *envelope.Builder) { b.IdempotencyKey = "kb:q1" })
	first := h.send(body)
	if out := h.outputFor(first); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("first message went to %s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
	// The attacker re-publishes the captured bytes without Nats-Msg-Id so
	// JetStream stores it: the ledger must catch it.
	replay := h.send(body)
	h.wantReason(replay, reason.ReplayDetected)

	// Same idempotency key, same payload, new message id: one forward only.
	dup := h.send(h.body(func(b *envelope.Builder) { b.IdempotencyKey = "kb:q1" }))
	h.wantReason(dup, reason.DuplicateRequest)
	conflict := h.send(h.body(func(b *envelope.Builder) {
		b.IdempotencyKey = "kb:q1"
		b.Payload = envelope.Payload{Plain: json.RawMessage(`{"q":"something else"}`)}
	}))
	h.wantReason(conflict, reason.IdempotencyConflict)

	// Two copies in one batch: stop, queue both, start.
	h.stop()
	twin := h.body(nil)
	a, b := h.send(twin), h.send(twin)
	h.start()
	if out := h.outputFor(a); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("first twin went to %s", out.Subject)
	}
	h.wantReason(b, reason.ReplayDetected)

	// After a restart the ledger still remembers.
	h.stop()
	h.start()
	h.wantReason(h.send(body), reason.ReplayDetected)
	if n := len(h.all(StreamCap)); n != 2 {
		t.Errorf("capability outputs = %d; want 2 (the first message and the first twin)", n)
	}
	r, err := invariant.Wait(context.Background(), h.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
}

func (h *harness) wantReason(seq uint64, want reason.Code) {
	h.t.Helper()
	out := h.outputFor(seq)
	if got := reason.Code(out.Header.Get(header.Reason)); got != want {
		h.t.Fatalf("ingress %d: reason = %q (%s); want %q", seq, got, out.Header.Get(header.Detail), want)
	}
}

// TestRedeliveryReemitsRecordedOutcome stops the gateway after the
// outputs are published but before the ingress ack (as a crash would),
// then restarts it: the redelivery re-emits the recorded outcome, which
// JetStream de-duplicates, and never becomes replay_detected.
func TestRedeliveryReemitsRecordedOutcome(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true // the simulated crash is logged
	h.start()
	crashed := make(chan struct{})
	var once sync.Once
	h.gw.beforeAck = func() error {
		once.Do(func() { close(crashed) })
		return errors.New("simulated crash before ack")
	}
	body, _ := h.sealedRefund(h.agent, 700, nil)
	seq := h.send(body)
	<-crashed
	h.stop()
	if n := len(h.all(StreamCap)); n != 1 {
		t.Fatalf("capability outputs before restart = %d; want 1", n)
	}
	h.start()
	deadline := time.Now().Add(15 * time.Second)
	for h.gw.Stats().Reemitted.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if h.gw.Stats().Reemitted.Load() == 0 {
		t.Fatal("the redelivered message was not re-emitted from the ledger")
	}
	if n := len(h.all(StreamCap)); n != 1 {
		t.Errorf("capability outputs after redelivery = %d; want exactly 1", n)
	}
	if m := h.find(StreamDenied, header.IngressSeq, fmt.Sprint(seq)); m != nil {
		t.Errorf("redelivery produced a denial %q", m.Header.Get(header.Reason))
	}
	r, err := invariant.Wait(context.Background(), h.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
	// The ingress message is acknowledged now.
	h.waitAcked(seq)
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var _ = nats.NewMsg

// TestAuditOneMessagePerBatchAndTenant: the events of one fetch batch and
// tenant go out as one audit message (recordOutcomes), on the tenant's
// subject, each decision's event exactly once.
func TestAuditOneMessagePerBatchAndTenant(t *testing.T) {
	const each = 30
	h := newHarness(t)
	h.start()
	<-h.gw.Ready()
	h.stop()
	badSig := h.tenantBBadSignatures()
	for range each {
		h.send(h.body(nil))
		badSig()
	}
	h.start()
	r, err := invariant.Wait(context.Background(), h.js, 30*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
	msgs := h.all(StreamAudit)
	seen := map[uint64]int{}
	for _, m := range msgs {
		evs, err := audit.Decode(m.Data)
		must(t, err)
		for _, ev := range evs {
			if want := "agentgw.audit." + ev.Tenant; m.Subject != want {
				t.Errorf("event of %s (ingress %d) on %s; want %s", ev.Tenant, ev.IngressSeq, m.Subject, want)
			}
			seen[ev.IngressSeq]++
		}
	}
	if len(seen) != 2*each {
		t.Errorf("events for %d ingress messages; want %d", len(seen), 2*each)
	}
	for seq, n := range seen {
		if n != 1 {
			t.Errorf("ingress %d has %d audit events", seq, n)
		}
	}
	// Both tenants' messages were queued before the start: one or two
	// fetch batches, so a handful of messages, not one per decision.
	if len(msgs) > 8 {
		t.Errorf("%d audit messages for %d decisions; want one per batch and tenant", len(msgs), 2*each)
	}
	h.validateAudit()
}

// TestEnvelopeWithSpaceAroundRefused: a signed body with white space
// before or after its object cannot be delivered verbatim (a delivery
// document holds it as a member, and the space would be the document's),
// so it is refused malformed_envelope before the ledger: its idempotency
// key is not spent, and the same request without the space is allowed.
func TestEnvelopeWithSpaceAroundRefused(t *testing.T) {
	h := newHarness(t)
	h.start()
	for i, c := range []struct{ pre, post string }{{"", "\n"}, {" ", ""}, {"", "\t"}, {"\r\n", "\r\n"}} {
		key := fmt.Sprintf("kb-q-%d", i)
		body := h.body(func(b *envelope.Builder) { b.IdempotencyKey = key })
		h.wantReason(h.send(append(append([]byte(c.pre), body...), c.post...)), reason.MalformedEnvelope)
		again := h.body(func(b *envelope.Builder) { b.IdempotencyKey = key })
		if out := h.outputFor(h.send(again)); out.Header.Get(header.Route) != "allow" {
			t.Errorf("%q…%q refused, then the request without it: %s %s; want allowed", c.pre, c.post, out.Subject, out.Header.Get(header.Reason))
		}
	}
}

// TestManyDecidingPolicies: a decision token names at most 64 policies,
// and a request that more permits than that take in is still allowed,
// its decision naming the first 64 by id (not denied internal_error
// because its token could not be signed).
func TestManyDecidingPolicies(t *testing.T) {
	var src strings.Builder
	for i := range 65 {
		fmt.Fprintf(&src, "@id(\"p%02d\") permit (principal, action, resource) when { principal.tenant == resource.tenant };\n", i)
	}
	h := newHarness(t)
	must(t, os.WriteFile(filepath.Join(h.dir, "policy.cedar"), []byte(src.String()), 0o600))
	h.start()
	seq := h.send(h.body(nil))
	if out := h.outputFor(seq); out.Header.Get(header.Route) != "allow" {
		t.Fatalf("route %q (%s); want allow", out.Header.Get(header.Route), out.Header.Get(header.Reason))
	}
	if ids := h.auditFor(seq).PolicyIDs; len(ids) != 64 || ids[0] != "p00" || ids[63] != "p63" {
		t.Errorf("policy ids %v; want p00 to p63", ids)
	}
}
