package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/operator"
	"github.com/agentgw/agentgw/subjects/reason"
)

// The tests of this file each prove one defence of operator replay: each
// fails when the check it names is removed.

// forbidOpsRule is the rule of testPolicy that forbids ops.forbidden.
const forbidOpsRule = "@id(\"forbid-ops\")\nforbid (principal, action, resource == Target::\"ops.forbidden\");"

// allowOps removes forbidOpsRule from the policy and waits for the
// gateway to load it (h.cfg.ReloadInterval short).
func (h *harness) allowOps(t *testing.T) {
	t.Helper()
	v1 := h.gw.Policy().Version()
	replaceFile(t, h.cfg.Policies[0], strings.Replace(testPolicy, forbidOpsRule, "", 1))
	waitFor(t, func() bool { return h.gw.Policy().Version() != v1 })
}

// forbiddenBody is an envelope the test policy denies policy_denied.
func (h *harness) forbiddenBody() []byte {
	return h.body(func(b *envelope.Builder) { b.Capability, b.Target = envelope.ToolCall, "ops.forbidden" })
}

// operatorRequestData is the data of an operator request about denied
// record seq of tenant, issued at at and valid for a minute.
func operatorRequestData(tenant string, seq uint64, dry bool, at time.Time) []byte {
	at = at.UTC().Truncate(time.Second)
	return fmt.Appendf(nil, `{"v":1,"request_id":"%s","tenant":"%s","denied_seq":%d,"dry_run":%t,"issued_at":"%s","expires_at":"%s"}`,
		envelope.NewMessageID(), tenant, seq, dry, at.Format(time.RFC3339), at.Add(time.Minute).Format(time.RFC3339))
}

// rawOperatorRequest sends data on operator.Subject with credential cred
// and signature sig (what sign returns for data), and returns the answer.
func (h *harness) rawOperatorRequest(cred string, data []byte, sign func([]byte) []byte) operator.Result {
	h.t.Helper()
	m := nats.NewMsg(operator.Subject)
	m.Data = data
	m.Header.Set(header.Credential, cred)
	m.Header.Set(header.Signature, base64.RawURLEncoding.EncodeToString(sign(data)))
	resp, err := h.nc.RequestMsg(m, 10*time.Second)
	must(h.t, err)
	var res operator.Result
	must(h.t, json.Unmarshal(resp.Data, &res))
	return res
}

// TestOperatorRequestSignedByCredentialKey: the operator credential is
// a bearer token; whoever holds it but not its key (here a thief signing
// with its own key) must not get an answer, nor may a signature over the
// request in another context (the envelope's) stand for it.
func TestOperatorRequestSignedByCredentialKey(t *testing.T) {
	h := newHarness(t)
	h.start()
	denied := h.deniedSeq(h.send(h.forbiddenBody()))
	op, thief := newActor(t), newActor(t)
	tok := h.credential(h.issuer, op, "tenant_a", []string{operator.Scope}, time.Hour, "").Reveal()
	data := func() []byte { return operatorRequestData("tenant_a", denied, true, h.clock.Now()) }
	if res := h.rawOperatorRequest(tok, data(), func(d []byte) []byte { return op.signr.Sign(operator.SigningInput(d)) }); res.Code != "" || res.Route != "deny" {
		t.Fatalf("request signed by the credential's key = %+v; want a dry run answered", res)
	}
	if res := h.rawOperatorRequest(tok, data(), func(d []byte) []byte { return thief.signr.Sign(operator.SigningInput(d)) }); res.Code != string(reason.BadSignature) {
		t.Errorf("request signed by another key = %+v; want bad_signature", res)
	}
	if res := h.rawOperatorRequest(tok, data(), func(d []byte) []byte { return op.signr.Sign(envelope.SigningInput(d)) }); res.Code != string(reason.BadSignature) {
		t.Errorf("request signed in the envelope's context = %+v; want bad_signature", res)
	}
	h.stop()
}

// TestOperatorRequestFreshness: a captured operator request is usable
// only until its expires_at (plus skew), and a request dated ahead of
// the gateway's clock (one signed to be used later) is refused.
func TestOperatorRequestFreshness(t *testing.T) {
	h := newHarness(t)
	h.start()
	denied := h.deniedSeq(h.send(h.forbiddenBody()))
	op := newActor(t)
	tok := h.credential(h.issuer, op, "tenant_a", []string{operator.Scope}, time.Hour, "").Reveal()
	sign := func(d []byte) []byte { return op.signr.Sign(operator.SigningInput(d)) }
	now := h.clock.Now()
	for _, tc := range []struct {
		name string
		at   time.Time
		want reason.Code
	}{
		{"expired", now.Add(-10 * time.Minute), reason.MessageExpired},
		{"issued in the future", now.Add(10 * time.Minute), reason.IssuedInFuture},
	} {
		if res := h.rawOperatorRequest(tok, operatorRequestData("tenant_a", denied, true, tc.at), sign); res.Code != string(tc.want) {
			t.Errorf("request %s = %+v; want %s", tc.name, res, tc.want)
		}
	}
	h.stop()
}

// TestOperatorCannotReplayOtherTenantsRecord: denied-stream sequences
// are shared by every tenant. An operator of tenant_a, asking in its own
// tenant, names a record of tenant_b: neither a dry run nor a replay of
// it is made. A genuine record of tenant_b also names an ingress subject
// of tenant_b (refused on that ground too); one written straight to the
// denied stream that names tenant_a's ingress is refused for the tenant
// it is filed under alone.
func TestOperatorCannotReplayOtherTenantsRecord(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx := context.Background()
	b := newActor(t)
	b.token = h.credential(h.issuerB, b, "tenant_b", []string{"kb:read"}, time.Hour, "")
	// Denied revoked, then un-revoked: its replay would be allowed.
	must(t, os.WriteFile(h.cfg.Revocations.File, []byte("jtis: []\nkeys: ["+b.pub+"]\nprincipals: []\n"), 0o600))
	must(t, h.gw.Reload())
	body := h.body(func(e *envelope.Builder) { e.Tenant, e.Target = "tenant_b", "b.only" })
	in := h.publish(h.ingress(b, "tenant_b"), body, h.signed(b, b.token, body))
	h.wantReason(in, reason.Revoked)
	denied := h.deniedSeq(in)
	must(t, os.WriteFile(h.cfg.Revocations.File, []byte("jtis: []\nkeys: []\nprincipals: []\n"), 0o600))
	must(t, h.gw.Reload())
	m := nats.NewMsg("agentgw.denied.tenant_b." + string(reason.PolicyDenied))
	m.Data = h.forbiddenBody()
	m.Header.Set(header.IngressSubject, h.ingress(h.agent, "tenant_a"))
	m.Header.Set(header.Reason, string(reason.PolicyDenied))
	ack, err := h.js.PublishMsg(ctx, m)
	must(t, err)
	op := h.operator(operator.Scope)
	for name, seq := range map[string]uint64{"genuine": denied, "naming tenant_a's ingress": ack.Sequence} {
		for _, dry := range []bool{true, false} {
			res, err := op.Replay(ctx, seq, dry)
			if err == nil || !strings.Contains(err.Error(), string(reason.ReplayRefused)) {
				t.Errorf("tenant_a operator replaying tenant_b's record, %s (dry run %v) = %+v, %v; want replay_refused", name, dry, res, err)
			}
		}
	}
	h.stop()
}

// TestReplayOfCopyOfAllowedRefused: a copy of an allowed message is
// denied replay_detected, and that denial is on the denied stream like
// any other. Replaying it must not deliver the allowed message a second
// time: the ledger's entry of the message records an allow. The dry run
// says so too.
func TestReplayOfCopyOfAllowedRefused(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx := context.Background()
	body := h.body(nil)
	if out := h.outputFor(h.send(body)); out.Header.Get(header.Route) != "allow" {
		t.Fatalf("first went to %s", out.Subject)
	}
	cp := h.send(body)
	h.wantReason(cp, reason.ReplayDetected)
	denied := h.deniedSeq(cp)
	op := h.operator(operator.Scope)
	res, err := op.Replay(ctx, denied, true)
	must(t, err)
	if res.Route != "deny" || res.Reason != string(reason.ReplayRefused) {
		t.Errorf("dry run of a copy of an allowed message = %+v; want deny replay_refused", res)
	}
	res, err = op.Replay(ctx, denied, false)
	must(t, err)
	if out := h.outputFor(res.IngressSeq); out.Header.Get(header.Reason) != string(reason.ReplayRefused) {
		t.Errorf("replay of a copy of an allowed message went to %s (%q); want replay_refused", out.Subject, out.Header.Get(header.Reason))
	}
	h.stop()
}

// TestReplayOfDuplicateRequestStaysDuplicate: a request denied
// duplicate_request (another message with the same idempotency key and
// payload was allowed) must not be carried out a second time by a
// replay: a replay passes the idempotency gate only for its own
// message's entry.
func TestReplayOfDuplicateRequestStaysDuplicate(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx := context.Background()
	key := func(b *envelope.Builder) { b.IdempotencyKey = "refund-42" }
	if out := h.outputFor(h.send(h.body(key))); out.Header.Get(header.Route) != "allow" {
		t.Fatalf("first went to %s", out.Subject)
	}
	dup := h.send(h.body(key))
	h.wantReason(dup, reason.DuplicateRequest)
	res, err := h.operator(operator.Scope).Replay(ctx, h.deniedSeq(dup), false)
	must(t, err)
	if out := h.outputFor(res.IngressSeq); out.Header.Get(header.Reason) != string(reason.DuplicateRequest) {
		t.Errorf("replay of a duplicate request went to %s (%q); want duplicate_request", out.Subject, out.Header.Get(header.Reason))
	}
	h.stop()
}

// TestReplayDeniedAgainUsesTheReplay: a message gets one replay, even
// when that replay is denied again. A captured copy of the
// re-submission (its authorization still valid), published once the
// policy allows the message, must be refused: the single-use replay
// marker, not the ledger entry (still a denial), refuses it.
func TestReplayDeniedAgainUsesTheReplay(t *testing.T) {
	h := newHarness(t)
	h.cfg.ReloadInterval = 50 * time.Millisecond
	h.start()
	ctx := context.Background()
	forbidden := h.send(h.forbiddenBody())
	h.wantReason(forbidden, reason.PolicyDenied)
	res, err := h.operator(operator.Scope).Replay(ctx, h.deniedSeq(forbidden), false)
	must(t, err)
	h.wantReason(res.IngressSeq, reason.PolicyDenied)
	h.allowOps(t)
	in, err := h.js.Stream(ctx, StreamIngress)
	must(t, err)
	orig, err := in.GetMsg(ctx, res.IngressSeq)
	must(t, err)
	c := nats.NewMsg(h.ingress(h.agent, "tenant_a"))
	c.Data = orig.Data
	for _, k := range []string{header.Credential, header.Signature, header.Replay} {
		c.Header.Set(k, orig.Header.Get(k))
	}
	ack, err := h.js.PublishMsg(ctx, c)
	must(t, err)
	if out := h.outputFor(ack.Sequence); out.Header.Get(header.Reason) != string(reason.ReplayRefused) {
		t.Errorf("second use of the replay went to %s (%q); want replay_refused", out.Subject, out.Header.Get(header.Reason))
	}
	h.stop()
}

// TestReplayRefusesRecordOfAnotherTenantsIngress: a re-submission goes
// to the ingress subject the record names. A record filed under tenant_a
// that names an ingress subject of tenant_b (written here straight to
// the denied stream) must not let a tenant_a operator publish into
// tenant_b's ingress.
func TestReplayRefusesRecordOfAnotherTenantsIngress(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx := context.Background()
	<-h.gw.Ready()
	m := nats.NewMsg("agentgw.denied.tenant_a." + string(reason.PolicyDenied))
	m.Data = h.forbiddenBody()
	m.Header.Set(header.IngressSubject, h.ingress(newActor(t), "tenant_b"))
	m.Header.Set(header.Reason, string(reason.PolicyDenied))
	ack, err := h.js.PublishMsg(ctx, m)
	must(t, err)
	op := h.operator(operator.Scope)
	for _, dry := range []bool{true, false} {
		res, err := op.Replay(ctx, ack.Sequence, dry)
		if err == nil || !strings.Contains(err.Error(), string(reason.ReplayRefused)) {
			t.Errorf("replay of a tenant_a record naming tenant_b's ingress (dry run %v) = %+v, %v; want replay_refused", dry, res, err)
		}
	}
	h.stop()
}

// TestForgedReplayAuthorizationRefused: only the gateway's signing key
// makes a replay authorization. One in the gateway's exact form, for a
// denied message not yet replayed, signed by any other key (here by an
// agent for its own denied message, with a credential sealed as the
// gateway seals it) is refused replay_refused, and the message is not
// decided a second time.
func TestForgedReplayAuthorizationRefused(t *testing.T) {
	h := newHarness(t)
	h.start()
	body := h.forbiddenBody()
	in := h.send(body)
	h.wantReason(in, reason.PolicyDenied)
	denied := h.deniedSeq(in)
	op := h.replayOperator()
	sealed, err := h.gw.box.SealCredential(op.token.Reveal(), body)
	must(t, err)
	digest := envelope.Digest(body)
	cd := sha256.Sum256([]byte(sealed))
	exp := h.clock.Now().Add(replayAuthTTL).Unix()
	input := operator.ReplayInput(hex.EncodeToString(digest[:]), denied, op.pub, exp, hex.EncodeToString(cd[:]))
	hdr := h.signed(h.agent, h.agent.token, body)
	hdr.Set(header.Replay, fmt.Sprintf("%d.%s.%d.%s", denied, op.pub, exp, base64.RawURLEncoding.EncodeToString(op.signr.Sign(input))))
	hdr.Set(header.ReplayCredential, sealed)
	out := h.outputFor(h.publish(h.ingress(h.agent, "tenant_a"), body, hdr))
	if got, detail := reason.Code(out.Header.Get(header.Reason)), out.Header.Get(header.Detail); got != reason.ReplayRefused || !strings.Contains(detail, "invalid replay authorization") {
		t.Fatalf("forged replay authorization: %s (%q: %s); want replay_refused, invalid replay authorization", out.Subject, got, detail)
	}
}

// TestReplayOfEarlyDenialUsedUp: a message first denied before the
// ledger gate (its agent revoked) has no ledger entry, yet its
// re-submission is the one replay all the same. Denied again (by
// policy), that re-submission's own record must not give the message a
// second pass once the policy allows it.
func TestReplayOfEarlyDenialUsedUp(t *testing.T) {
	h := newHarness(t)
	h.cfg.ReloadInterval = 50 * time.Millisecond
	h.start()
	ctx := context.Background()
	replaceFile(t, h.cfg.Revocations.File, "jtis: []\nprincipals: []\nkeys: ["+h.agent.pub+"]\n")
	must(t, h.gw.Reload())
	early := h.send(h.forbiddenBody())
	h.wantReason(early, reason.Revoked)
	replaceFile(t, h.cfg.Revocations.File, "jtis: []\nprincipals: []\nkeys: []\n")
	must(t, h.gw.Reload())
	ops := h.operator(operator.Scope)
	res, err := ops.Replay(ctx, h.deniedSeq(early), false)
	must(t, err)
	h.wantReason(res.IngressSeq, reason.PolicyDenied)
	h.allowOps(t)
	second := h.deniedSeq(res.IngressSeq)
	dry, err := ops.Replay(ctx, second, true)
	must(t, err)
	if dry.Route != "deny" || dry.Reason != string(reason.ReplayRefused) {
		t.Errorf("dry run of the re-submission's record predicted %s %s; want deny replay_refused", dry.Route, dry.Reason)
	}
	again, err := ops.Replay(ctx, second, false)
	if err == nil {
		out := h.outputFor(again.IngressSeq)
		if got := reason.Code(out.Header.Get(header.Reason)); got != reason.ReplayRefused {
			t.Errorf("the re-submission's own record replayed: went to %s (%q); want replay_refused", out.Subject, got)
		}
	} else if !strings.Contains(err.Error(), string(reason.ReplayRefused)) {
		t.Errorf("second replay: %v; want replay_refused", err)
	}
	h.stop()
}
