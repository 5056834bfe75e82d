package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestStreamsHoldNoCredential sends a credential down every path that
// ends in a stream the gateway writes: a held request refused, denials
// before and after the credential gate, a credential header holding a
// seed, a delivery, an operator replay and a held request expired. No
// stream but ingress may hold a credential JWT or a seed byte for byte;
// every denied record carries the credential sealed to the gateway's
// curve key instead.
func TestStreamsHoldNoCredential(t *testing.T) {
	f := newApprovalFlow(t) // one held payment
	h := f.harness
	ctx := context.Background()

	refused := f.grant()
	refused.Decision, refused.Reason = approval.Deny, "no"
	f.wantReason(f.answer(f.approver, refused, f.req.HeldMessageID), reason.ApprovalDenied)

	unknown := h.send(h.body(func(b *envelope.Builder) { b.Target = "no.such.target" }))
	h.wantReason(unknown, reason.UnknownTarget)

	signed := h.body(nil)
	tampered := []byte(strings.Replace(string(signed), "refund policy", "refund POLICY", 1))
	h.wantReason(h.publish(h.ingress(h.agent, "tenant_a"), tampered, h.signed(h.agent, h.agent.token, signed)), reason.BadSignature)

	// An agent that puts its seed where the credential goes.
	body := h.body(nil)
	hdr := h.signed(h.agent, h.agent.token, body)
	hdr.Set(header.Credential, string(h.agent.seed))
	h.wantReason(h.publish(h.ingress(h.agent, "tenant_a"), body, hdr), reason.MalformedCredential)

	if out := h.outputFor(h.send(h.body(nil))); out.Header.Get(header.Route) != "allow" {
		t.Fatalf("search went to %s; want its capability", out.Subject)
	}

	res, err := h.operator("operator:replay").Replay(ctx, h.deniedSeq(unknown), false)
	must(t, err)
	h.wantReason(res.IngressSeq, reason.UnknownTarget)

	// Last: the expiry moves the clock past what the operator client
	// (on the real clock) would sign for.
	payment := h.body(func(b *envelope.Builder) {
		b.Capability, b.Target = envelope.ToolCall, "payments.send"
		b.Payload = envelope.Payload{Plain: json.RawMessage(`{"amount_cents":880000}`)}
	})
	pending := h.send(payment)
	if out := h.outputFor(pending); out.Header.Get(header.Route) != "approval" {
		t.Fatalf("second payment went to %s; want the approval queue", out.Subject)
	}
	h.clock.Advance(h.cfg.Limits.ApprovalTTL + time.Second)
	expiredMsgID := h.find(StreamApproval, header.IngressSeq, strconv.FormatUint(pending, 10)).Header.Get(header.MessageID)
	waitFor(t, func() bool {
		m := h.find(StreamDenied, header.MessageID, expiredMsgID)
		return m != nil && m.Header.Get(header.Reason) == string(reason.ApprovalExpired)
	})

	r, err := invariant.Wait(ctx, h.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
	h.stop()
	h.scanSecrets()
	denied := h.all(StreamDenied)
	if len(denied) < 6 {
		t.Fatalf("denied records = %d; want at least 6", len(denied))
	}
	for _, m := range denied {
		if v := m.Header.Get(header.Credential); v != "" {
			t.Errorf("denied record %d (%s) holds %s", m.Sequence, m.Header.Get(header.Reason), header.Credential)
		}
		if m.Header.Get(header.CredentialSealed) == "" || m.Header.Get(header.CredentialSealedTo) != h.gwCurve {
			t.Errorf("denied record %d (%s): %s = %q, %s = %q; want a credential sealed to %s", m.Sequence, m.Header.Get(header.Reason),
				header.CredentialSealed, m.Header.Get(header.CredentialSealed), header.CredentialSealedTo, m.Header.Get(header.CredentialSealedTo), h.gwCurve)
		}
	}
}

// TestOperatorReplaySealedCredential: a replay opens the sealed
// credential and runs every gate on it again (a revoked agent stays
// denied until un-revoked); a sealed credential moved onto another
// record does not open for that record's body, and records sealed to a
// curve key the gateway no longer holds are refused by name.
func TestOperatorReplaySealedCredential(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx := context.Background()
	op := h.operator("operator:replay")

	unknown := h.deniedSeq(h.send(h.body(func(b *envelope.Builder) { b.Target = "no.such.target" })))
	must(t, os.WriteFile(h.cfg.Revocations.File, []byte("jtis: []\nprincipals: []\nkeys: ["+h.agent.pub+"]\n"), 0o600))
	must(t, h.gw.Reload())
	revokedIn := h.send(h.body(nil))
	h.wantReason(revokedIn, reason.Revoked)
	revoked := h.deniedSeq(revokedIn)

	res, err := op.Replay(ctx, revoked, true)
	must(t, err)
	if res.Route != "deny" || res.Reason != string(reason.Revoked) {
		t.Fatalf("dry run while revoked = %+v; want deny revoked", res)
	}
	must(t, os.WriteFile(h.cfg.Revocations.File, []byte("jtis: []\nkeys: []\nprincipals: []\n"), 0o600))
	must(t, h.gw.Reload())

	// The credential of one record on the body of another.
	st, err := h.js.Stream(ctx, StreamDenied)
	must(t, err)
	a, err := st.GetMsg(ctx, revoked)
	must(t, err)
	b, err := st.GetMsg(ctx, unknown)
	must(t, err)
	moved := nats.NewMsg(a.Subject)
	moved.Data = a.Data
	for k, v := range a.Header {
		moved.Header[k] = v
	}
	moved.Header.Set(header.CredentialSealed, b.Header.Get(header.CredentialSealed))
	moved.Header.Del(header.MsgID)
	ack, err := h.js.PublishMsg(ctx, moved)
	must(t, err)
	for _, dry := range []bool{true, false} {
		if _, err := op.Replay(ctx, ack.Sequence, dry); err == nil || !strings.Contains(err.Error(), string(reason.ReplayRefused)) {
			t.Errorf("replay (dry run %v) of a record with a moved credential = %v; want replay_refused", dry, err)
		}
	}

	res, err = op.Replay(ctx, revoked, true)
	must(t, err)
	if res.Route != "allow" {
		t.Fatalf("dry run after un-revoking = %+v; want allow", res)
	}
	res, err = op.Replay(ctx, revoked, false)
	must(t, err)
	if out := h.outputFor(res.IngressSeq); out.Header.Get(header.Route) != "allow" {
		t.Fatalf("replayed message went to %s (%s); want its capability", out.Subject, out.Header.Get(header.Reason))
	}
	if ev := h.auditFor(res.IngressSeq); ev.Operator == "" || ev.Route != "allow" || ev.CredentialID == "" {
		t.Errorf("replay decision audit = %+v; want the operator and the agent's credential named", ev)
	}

	// A new curve key: what was sealed to the old one cannot be opened.
	h.stop()
	curve, err := identity.NewCurve()
	must(t, err)
	writeSeed(t, h.cfg.Keys.Curve, curve)
	old := h.gwCurve
	h.gwCurve, _ = curve.PublicKey()
	seed, _ := curve.Seed()
	h.secrets = append(h.secrets, string(seed))
	h.start()
	for _, dry := range []bool{true, false} {
		var err error
		waitFor(t, func() bool { // until the restarted gateway answers
			_, err = op.Replay(ctx, unknown, dry)
			return !errors.Is(err, client.ErrUnavailable)
		})
		if err == nil || !strings.Contains(err.Error(), string(reason.ReplayRefused)) || !strings.Contains(err.Error(), old) {
			t.Errorf("replay (dry run %v) after a curve key change = %v; want replay_refused naming %s", dry, err, old)
		}
	}
	h.stop()
	h.scanSecrets()
}
