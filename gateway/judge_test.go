package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/operator"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestWaitingBatchJudgedWhenDecided: a batch verified while the decider
// is busy waits for it, and what arrives meanwhile joins it (prefetch,
// grow). Every message of it is judged at the instant the decider takes
// it, never at one before the message arrived. The decider is held on
// one batch while the next waits, the clock runs two minutes, then
// messages built before and after that join the waiting batch:
//
//   - what expired meanwhile (the envelope, the credential, both, a
//     replay authorization) is denied; judged at the instant the waiting
//     batch was verified, each was allowed;
//   - what was issued after that instant (the envelope, the credential)
//     is decided on its merits; it was denied issued_in_future or
//     credential_not_yet_valid;
//   - a time rule of an earlier gate comes before a later gate's denial,
//     as at any instant: an expired credential with a bad signature is
//     credential_expired;
//   - the decision tokens are issued at the decision instant.
func TestWaitingBatchJudgedWhenDecided(t *testing.T) {
	h := newHarness(t)
	h.cfg.Consumer.Batch = 16 // room in the waiting batch for every late message
	ctx := context.Background()
	p := newHeldPipeline()
	queued := make(chan uint64, 64)
	h.opts = append(h.opts, func(g *Gateway) {
		g.hooks = p.hooks()
		g.hooks.queued = func(seq uint64) { queued <- seq }
	})
	h.start()
	held := holdDecider(t, h, p)
	long := func(b *envelope.Builder) { b.TTL = 5 * time.Minute } // fresh at both instants
	waiting := h.send(h.body(long))
	awaitSeq(t, p.waiting, waiting, "the next batch to be verified and offered")
	t0 := h.clock.Now()

	// Built at t0: an envelope that expires at t0+1m, a credential that
	// expires at t0+5s, a replay authorization that expires at t0+1m.
	victim := newActor(t)
	shortTok := h.credential(h.issuer, victim, "tenant_a", []string{"kb:read"}, 5*time.Second, "")
	oldBody := h.body(nil)
	oldBodyB := h.body(nil)
	longBody := h.body(long)
	badSigBody := h.body(long)
	replayBody := h.body(long)
	op := h.replayOperator()
	authExp := t0.Add(time.Minute).Unix()
	replayHdr := h.signed(h.agent, h.agent.token, replayBody)
	h.setReplayAuth(replayHdr, replayBody, held, op, authExp)

	h.clock.Advance(2 * time.Minute)
	t1 := h.clock.Now()
	// Built at t1: an envelope issued then, and a credential issued then.
	newBody := h.body(nil)
	newcomer := newActor(t)
	newTok := h.credential(h.issuer, newcomer, "tenant_a", []string{"kb:read"}, time.Hour, "")
	newcomerBody := h.body(nil)
	badSig := h.signed(victim, shortTok, longBody) // not badSigBody's

	type want struct {
		name string
		seq  uint64
		code reason.Code // "" for allow
	}
	newSeq := h.send(newBody)
	late := []want{
		{"envelope expired", h.send(oldBody), reason.MessageExpired},
		{"credential expired", h.publish(h.ingress(victim, "tenant_a"), longBody, h.signed(victim, shortTok, longBody)), reason.CredentialExpired},
		{"both expired", h.publish(h.ingress(victim, "tenant_a"), oldBodyB, h.signed(victim, shortTok, oldBodyB)), reason.CredentialExpired},
		{"replay authorization expired", h.publish(h.ingress(h.agent, "tenant_a"), replayBody, replayHdr), reason.ReplayRefused},
		{"credential expired, bad signature", h.publish(h.ingress(victim, "tenant_a"), badSigBody, badSig), reason.CredentialExpired},
		{"envelope issued after the batch was verified", newSeq, ""},
		{"credential issued after the batch was verified", h.publish(h.ingress(newcomer, "tenant_a"), newcomerBody, h.signed(newcomer, newTok, newcomerBody)), ""},
	}
	// Every late message is in its queue, so the waiting batch takes it
	// when the decider asks for it, if not before.
	seen := map[uint64]bool{}
	deadline := time.After(20 * time.Second)
	for _, w := range late {
		for !seen[w.seq] {
			select {
			case s := <-queued:
				seen[s] = true
			case <-deadline:
				t.Fatalf("ingress %d (%s) never reached its queue", w.seq, w.name)
			}
		}
	}
	close(p.gate)
	var joined []uint64
	for range 1 + len(late) {
		joined = append(joined, <-p.started)
	}
	if joined[0] != waiting {
		t.Fatalf("batches taken after the held one start with %v; want the waiting batch (ingress %d) first", joined, waiting)
	}
	for _, w := range late {
		found := false
		for _, s := range joined {
			found = found || s == w.seq
		}
		if !found {
			// Not the case under test: the message was decided in a
			// batch of its own, verified after the clock moved.
			t.Fatalf("ingress %d (%s) did not join the waiting batch %v", w.seq, w.name, joined)
		}
	}

	for _, w := range append([]want{{"held batch", held, ""}, {"waiting batch", waiting, ""}}, late...) {
		out := h.outputFor(w.seq)
		route, got := out.Header.Get(header.Route), reason.Code(out.Header.Get(header.Reason))
		switch {
		case w.code == "" && route != "allow":
			t.Errorf("%s (ingress %d): routed %s %s (%s); want allow", w.name, w.seq, route, got, out.Header.Get(header.Detail))
		case w.code != "" && got != w.code:
			t.Errorf("%s (ingress %d): routed %s %q; want deny %s", w.name, w.seq, route, got, w.code)
		}
	}
	// The tokens of the joined batch are issued at the instant it was
	// decided, not at the one it was first verified at.
	for _, seq := range []uint64{waiting, newSeq} {
		out := h.outputFor(seq)
		if out.Header.Get(header.Route) != "allow" {
			continue // reported above
		}
		claims, err := decision.Verify(h.delivery(out).Decision, decision.VerifyOptions{
			TrustedGateways: []string{h.gwSigning}, Audience: "kb.search", Now: t1, Skew: 30 * time.Second,
		})
		must(t, err)
		if !claims.IssuedAt.Equal(t1) {
			t.Errorf("ingress %d: decision token issued at %s; want the decision instant %s", seq, claims.IssuedAt, t1)
		}
	}
	r, err := invariant.Wait(ctx, h.js, 20*time.Second)
	must(t, err)
	if err := r.Err(); err != nil || r.Ingress != 2+len(late) {
		t.Fatalf("invariant: %v (%s)", err, r)
	}
	h.scanSecrets()
}

// TestWaitingBatchSeesRevocation: a revocation reloaded while a verified
// batch waits for the decider applies to that batch: the credential's
// standing (trust and revocations) is judged again when the batch is
// taken, with its clock rules.
func TestWaitingBatchSeesRevocation(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	p := newHeldPipeline()
	h.opts = append(h.opts, func(g *Gateway) { g.hooks = p.hooks() })
	h.start()
	holdDecider(t, h, p)
	victim := newActor(t)
	tok := h.credential(h.issuer, victim, "tenant_a", []string{"kb:read"}, time.Hour, "")
	body := h.body(nil)
	waiting := h.publish(h.ingress(victim, "tenant_a"), body, h.signed(victim, tok, body))
	awaitSeq(t, p.waiting, waiting, "the victim's batch to be verified and offered")
	replaceFile(t, h.cfg.Revocations.File, "jtis: []\nprincipals: []\nkeys: ["+victim.pub+"]\n")
	must(t, h.gw.Reload())
	close(p.gate)
	h.wantReason(waiting, reason.Revoked)
	r, err := invariant.Wait(ctx, h.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v (%s)", err, r)
	}
}

// holdDecider sends a message on the started gateway h and returns its
// ingress sequence once the decider has taken its batch, where p's gate
// holds it: the next batch then waits for the decider.
func holdDecider(t *testing.T, h *harness, p *heldPipeline) uint64 {
	t.Helper()
	<-h.gw.Ready()
	ingress, err := h.js.Stream(context.Background(), StreamIngress)
	must(t, err)
	info, err := ingress.Info(context.Background())
	must(t, err)
	p.hold.Store(info.State.LastSeq + 1)
	held := h.send(h.body(nil))
	if held != info.State.LastSeq+1 {
		t.Fatalf("first message is ingress %d; want %d", held, info.State.LastSeq+1)
	}
	awaitSeq(t, p.started, held, "the decider to take the first batch")
	return held
}

// TestReplayOfWithdrawnOperatorCredentialRefused: the re-submission an
// operator's request made is decided under the standing of the
// operator's credential when it is decided, not only its key's: its jti
// (bare or scoped to its issuer) or its principal revoked after the
// gateway took the request, it is refused replay_refused.
func TestReplayOfWithdrawnOperatorCredentialRefused(t *testing.T) {
	const principal = "https://idp.test#operator-7"
	for name, entry := range map[string]func(c *identity.Credential) string{
		"none": func(*identity.Credential) string { return "jtis: []\nprincipals: []\nkeys: []\n" },
		"jti":  func(c *identity.Credential) string { return "jtis: [" + c.ID + "]\nprincipals: []\nkeys: []\n" },
		"scoped_jti": func(c *identity.Credential) string {
			return "jtis: [\"" + identity.ScopedJTI(c.Issuer, c.ID) + "\"]\nprincipals: []\nkeys: []\n"
		},
		"principal": func(*identity.Credential) string { return "jtis: []\nprincipals: [\"" + principal + "\"]\nkeys: []\n" },
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.start()
			op := newActor(t)
			tok, err := identity.Issue(h.issuer, identity.IssueRequest{
				Subject: op.pub, Audience: testAudience, Tenant: "tenant_a", Service: "ops",
				Scopes: []string{operator.Scope}, XKey: op.xkey, TTL: time.Hour, Principal: principal,
			}, h.clock.Now())
			must(t, err)
			h.secrets = append(h.secrets, tok.Reveal())
			op.token = tok
			cred, err := h.gw.verifier.Verify(tok.Reveal(), h.clock.Now())
			must(t, err)
			body := h.body(nil)
			hdr := h.signed(h.agent, h.agent.token, body)
			h.setReplayAuth(hdr, body, 1, op, h.clock.Now().Add(replayAuthTTL).Unix())

			replaceFile(t, h.cfg.Revocations.File, entry(cred))
			must(t, h.gw.Reload())
			out := h.outputFor(h.publish(h.ingress(h.agent, "tenant_a"), body, hdr))
			got, detail := reason.Code(out.Header.Get(header.Reason)), out.Header.Get(header.Detail)
			switch {
			case name == "none":
				if !strings.HasPrefix(out.Subject, "agentgw.cap.tenant_a.kb.search") {
					t.Fatalf("re-submission of an operator in standing went to %s (%q: %s); want delivered", out.Subject, got, detail)
				}
			case got != reason.ReplayRefused || !strings.Contains(detail, "(revoked)"):
				t.Fatalf("re-submission authorized by an operator whose credential was withdrawn went to %s (%q: %s); want replay_refused, revoked", out.Subject, got, detail)
			}
			h.stop()
			h.scanSecrets()
		})
	}
}

// TestReplayOfRevokedOperatorRefused: a replay authorization names the
// operator's key; a re-submission decided after that key was revoked is
// refused, as the operator's own request would be by then.
// TestReplayOfWithdrawnOperatorCredentialRefused covers its jti, its
// principal and its issuer's trust.
func TestReplayOfRevokedOperatorRefused(t *testing.T) {
	h := newHarness(t)
	h.start()
	body := h.body(nil)
	op := h.replayOperator()
	exp := h.clock.Now().Add(replayAuthTTL).Unix()
	const deniedSeq = 1
	hdr := h.signed(h.agent, h.agent.token, body)
	h.setReplayAuth(hdr, body, deniedSeq, op, exp)

	replaceFile(t, h.cfg.Revocations.File, "jtis: []\nprincipals: []\nkeys: ["+op.pub+"]\n")
	must(t, h.gw.Reload())
	out := h.outputFor(h.publish(h.ingress(h.agent, "tenant_a"), body, hdr))
	if got, detail := reason.Code(out.Header.Get(header.Reason)), out.Header.Get(header.Detail); got != reason.ReplayRefused || !strings.Contains(detail, "(revoked)") {
		t.Fatalf("re-submission authorized by a revoked operator went to %s (%q: %s); want replay_refused, revoked", out.Subject, got, detail)
	}
	h.stop()
	h.scanSecrets()
}

// TestPrincipalRevoked: a revoked principal revokes every credential
// issued for it, whatever its key or jti, and every one that names it
// among its actors; a credential of another principal stands.
func TestPrincipalRevoked(t *testing.T) {
	h := newHarness(t)
	h.start()
	const alice, bob = "https://idp.example.com#alice", "https://idp.example.com#bob"
	issue := func(principal string, actors ...string) (*actor, identity.Token) {
		a := newActor(t)
		tok, err := identity.Issue(h.issuer, identity.IssueRequest{
			Subject: a.pub, Audience: testAudience, Tenant: "tenant_a", Service: "test-agent",
			Scopes: []string{"kb:read"}, XKey: a.xkey, TTL: time.Hour, Principal: principal, Actors: actors,
		}, h.clock.Now())
		must(t, err)
		h.secrets = append(h.secrets, tok.Reveal())
		return a, tok
	}
	send := func(a *actor, tok identity.Token) uint64 {
		body := h.body(nil)
		return h.publish(h.ingress(a, "tenant_a"), body, h.signed(a, tok, body))
	}
	aliceKey, aliceTok := issue(alice)
	bobForAlice, delegated := issue("https://idp.example.com#carol", bob)
	carolKey, carolTok := issue("https://idp.example.com#carol")
	for _, s := range []struct {
		a   *actor
		tok identity.Token
	}{{aliceKey, aliceTok}, {bobForAlice, delegated}, {carolKey, carolTok}} {
		if out := h.outputFor(send(s.a, s.tok)); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
			t.Fatalf("before the revocation: %s (%s)", out.Subject, out.Header.Get(header.Reason))
		}
	}
	replaceFile(t, h.cfg.Revocations.File, "jtis: []\nkeys: []\nprincipals: [\""+alice+"\", \""+bob+"\"]\n")
	must(t, h.gw.Reload())
	h.wantReason(send(aliceKey, aliceTok), reason.Revoked)
	h.wantReason(send(bobForAlice, delegated), reason.Revoked)
	if out := h.outputFor(send(carolKey, carolTok)); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Errorf("another principal's credential after the revocation: %s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
	h.stop()
	h.scanSecrets()
}

// heldResubmission re-submits, as the gateway does for op, a request
// that policy holds, and returns its ingress sequence and the approval
// request it was held with.
func (h *harness) heldResubmission(op *actor) (uint64, approval.Request) {
	h.t.Helper()
	body := h.heldRequest()
	hdr := h.signed(h.agent, h.agent.token, body)
	h.setReplayAuth(hdr, body, 1, op, h.clock.Now().Add(replayAuthTTL).Unix())
	seq := h.publish(h.ingress(h.agent, "tenant_a"), body, hdr)
	out := h.outputFor(seq)
	if !strings.HasPrefix(out.Subject, "agentgw.approval.") {
		h.t.Fatalf("re-submission went to %s (%s); want the approval queue", out.Subject, out.Header.Get(header.Reason))
	}
	var req approval.Request
	must(h.t, json.Unmarshal(out.Data, &req))
	return seq, req
}

// TestHeldReplayOfRevokedOperatorNotReleased: an operator's
// re-submission that policy holds for an approver keeps the operator's
// credential with the hold. The operator revoked while it waits, the
// request is withdrawn when the revocations reload (replay_refused), and
// a grant that comes first (the revocation in force, its sweep not yet
// run) releases nothing: the release judges the operator again.
func TestHeldReplayOfRevokedOperatorNotReleased(t *testing.T) {
	for _, sweep := range []bool{true, false} {
		t.Run(map[bool]string{true: "withdrawn", false: "grant"}[sweep], func(t *testing.T) {
			h := newHarness(t)
			h.start()
			op := h.replayOperator()
			seq, req := h.heldResubmission(op)
			if sweep {
				replaceFile(t, h.cfg.Revocations.File, "jtis: []\nprincipals: []\nkeys: ["+op.pub+"]\n")
				must(t, h.gw.Reload())
				m := h.waitIn(StreamDenied, seq, func(m *jetstream.RawStreamMsg) bool {
					return strings.HasSuffix(m.Header.Get(header.MsgID), ".withdrawn")
				})
				if got, detail := reason.Code(m.Header.Get(header.Reason)), m.Header.Get(header.Detail); got != reason.ReplayRefused || !strings.Contains(detail, "(revoked)") {
					t.Fatalf("withdrawn: %q (%s); want replay_refused, revoked", got, detail)
				}
				h.wantReason(h.grant(req), reason.ApprovalInvalid)
				return
			}
			h.gw.revocations.Replace(nil, []string{op.pub}) // in force, no sweep
			got := h.outputFor(h.grant(req))
			if reason.Code(got.Header.Get(header.Reason)) != reason.ReplayRefused {
				t.Fatalf("grant after the operator's revocation: %s (%s: %s); want the request denied replay_refused", got.Subject, got.Header.Get(header.Reason), got.Header.Get(header.Detail))
			}
		})
	}
}
