package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestApprovalReleaseRechecksCredential: a grant re-runs the credential
// gate on the held request against today's revocations and trust. Each
// case withdraws the requester's standing after the request was held,
// directly on the gateway's revocation set or verifier (as a reload does
// an instant before the held requests are swept), so the grant is what
// meets the change: the held request goes to the denied stream with the
// credential gate's reason, never to its capability subject.
func TestApprovalReleaseRechecksCredential(t *testing.T) {
	cases := []struct {
		name     string
		withdraw func(f *approvalFlow)
		want     reason.Code
	}{
		{"deny/revoked-key", func(f *approvalFlow) { f.gw.revocations.RevokeKey(f.agent.pub) }, reason.Revoked},
		{"deny/revoked-jti", func(f *approvalFlow) { f.gw.revocations.RevokeJTI(f.agent.token.JTI()) }, reason.Revoked},
		{"deny/issuer-untrusted", func(f *approvalFlow) {
			// tenant_a now trusts another issuer only; the approver holds
			// a credential from it, so its own answer is still accepted.
			other, _ := identity.NewIssuer()
			pub, _ := other.PublicKey()
			f.gw.verifier.SetTrust(map[string][]string{"tenant_a": {pub}})
			f.approver.token = f.credential(other, f.approver, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
		}, reason.UntrustedIssuer},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newApprovalFlow(t)
			tc.withdraw(f)
			f.grantRefused(tc.want)
		})
	}
}

// TestApprovalReleaseRechecksCatalog: a grant re-runs the catalog gate on
// the held request with the catalog in force now. Each case reloads a
// catalog in which the held request's target no longer admits it: the
// held request goes to the denied stream with the catalog gate's reason
// as the answer's output, the hold is consumed, nothing is delivered.
func TestApprovalReleaseRechecksCatalog(t *testing.T) {
	cases := []struct {
		name     string
		from, to string // in payments.send's entry
		want     reason.Code
	}{
		{"deny/tenant-removed", "    tenants: [tenant_a]\n", "    tenants: [tenant_b]\n", reason.TenantNotAllowed},
		{"deny/scope-changed", "    scope: pay:send\n", "    scope: pay:admin\n", reason.MissingScope},
		{"deny/kind-changed", "    kind: tool_call\n", "    kind: read\n", reason.CapabilityMismatch},
		{"deny/sealed-only", "    plain: true\n", "    plain: false\n", reason.PlainNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newApprovalFlow(t)
			path := f.cfg.Catalog
			raw, err := os.ReadFile(path)
			must(t, err)
			s := string(raw)
			i := strings.Index(s, "  - name: payments.send\n")
			j := i + len("  - name: payments.send\n")
			end := j + strings.Index(s[j:], "  - name: ")
			entry := strings.Replace(s[i:end], tc.from, tc.to, 1)
			if entry == s[i:end] {
				t.Fatalf("catalog edit %q did not apply", tc.from)
			}
			replaceFile(t, path, s[:i]+entry+s[end:])
			must(t, f.gw.Reload())

			f.grantRefused(tc.want)
		})
	}
}

// grantRefused grants the held request and checks that the release was
// refused with want: the held request on the denied stream, nothing
// delivered, the hold consumed, the invariant kept.
func (f *approvalFlow) grantRefused(want reason.Code) {
	f.t.Helper()
	out := f.outputFor(f.answer(f.approver, f.grant(), f.req.HeldMessageID))
	if got := reason.Code(out.Header.Get(header.Reason)); got != want || !strings.HasPrefix(out.Subject, "agentgw.denied.") {
		f.t.Fatalf("grant whose release must be refused: %s reason %q (%s); want the denied stream, %q",
			out.Subject, got, out.Header.Get(header.Detail), want)
	}
	if out.Header.Get(header.MessageID) != f.req.HeldMessageID {
		f.t.Error("the denied record does not carry the held message")
	}
	if n := len(f.all(StreamCap)); n != 0 {
		f.t.Errorf("capability deliveries = %d; want 0", n)
	}
	if n, _ := f.gw.pendingApprovals(); n != 0 {
		f.t.Errorf("pending approvals after the refused release = %d; want 0", n)
	}
	f.endApproval(0)
}

// TestApprovalReleaseAfterCredentialExpiry pins a choice: a credential
// that expires while its request is held does not stop the release. It
// was valid when the request was signed and held, the held request
// cannot be submitted again, and the hold's own deadline bounds the wait;
// withdrawing authority is what revocation is for (above).
func TestApprovalReleaseAfterCredentialExpiry(t *testing.T) {
	f := newApprovalFlow(t, func(f *approvalFlow) {
		f.agent.token = f.credential(f.issuer, f.agent, "tenant_a", []string{"pay:send"}, 2*time.Minute, "")
	})
	f.clock.Advance(5 * time.Minute) // the credential expired; the hold has 10 minutes left
	f.approver.token = f.credential(f.issuer, f.approver, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
	out := f.outputFor(f.answer(f.approver, f.grant(), f.req.HeldMessageID))
	if !strings.HasPrefix(out.Subject, "agentgw.cap.tenant_a.payments.send") {
		t.Fatalf("granted request went to %s (%s); want its capability subject", out.Subject, out.Header.Get(header.Reason))
	}
	f.endApproval(0)
}

// TestRevocationDeniesHeldRequests: a revocation that takes effect (a
// reload of the revocations file) denies the held requests of the revoked
// key at once, each with its own denied record and audit event, without
// waiting for an approver; another agent's held request stays pending
// and can still be granted. A grant that comes later finds nothing.
func TestRevocationDeniesHeldRequests(t *testing.T) {
	f := newApprovalFlow(t)
	// A second agent's request, held too.
	other := newActor(t)
	other.token = f.credential(f.issuer, other, "tenant_a", []string{"pay:send"}, time.Hour, "")
	otherReq := f.holdFrom(other)
	if n, _ := f.gw.pendingApprovals(); n != 2 {
		t.Fatalf("pending approvals = %d; want 2", n)
	}

	replaceFile(t, f.cfg.Revocations.File, "jtis: []\nprincipals: []\nkeys: ["+f.agent.pub+"]\n")
	must(t, f.gw.Reload())
	m := f.waitWithdrawn(f.heldSeq)
	if got := reason.Code(m.Header.Get(header.Reason)); got != reason.Revoked {
		t.Fatalf("withdrawn held request: reason %q (%s); want revoked", got, m.Header.Get(header.Detail))
	}
	if m.Header.Get(header.MessageID) != f.req.HeldMessageID || string(m.Data) == "" {
		t.Error("the denied record does not carry the held message")
	}
	ev := f.auditKind(f.heldSeq, "approval_withdrawn")
	if ev.Reason != string(reason.Revoked) || ev.MessageID != f.req.HeldMessageID || ev.Route != "deny" {
		t.Errorf("withdrawal audit event = %+v; want route deny, reason revoked, the held message id", ev)
	}
	if n, _ := f.gw.pendingApprovals(); n != 1 {
		t.Errorf("pending approvals after the revocation = %d; want 1 (the other agent's)", n)
	}
	// Nothing left to grant.
	f.wantReason(f.answer(f.approver, f.grant(), f.req.HeldMessageID), reason.ApprovalInvalid)
	// The other agent's request is untouched.
	ans := approval.Answer{Decision: approval.Grant, BodyDigest: otherReq.BodyDigest, PolicyVersion: otherReq.PolicyVersion}
	out := f.outputFor(f.answer(f.approver, ans, otherReq.HeldMessageID))
	if !strings.HasPrefix(out.Subject, "agentgw.cap.tenant_a.payments.send") {
		t.Fatalf("the other agent's granted request went to %s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
	// A second reload sweeps again and finds nothing more to deny.
	must(t, f.gw.Reload())
	f.endApproval(1)
}

// TestRevocationDuringHeldBatchWithdraws: a revocation that lands after
// a batch judged its requester's standing, and whose sweep reads the
// holds before that batch writes its hold, still withdraws the request
// at once: the batch sees the revocations changed while it was decided
// and asks for a sweep of its own once its hold is written.
func TestRevocationDuringHeldBatchWithdraws(t *testing.T) {
	var (
		other *actor
		from  atomic.Uint64 // 0: disarmed; else the first sequence whose batch it is
		swept = make(chan error, 1)
	)
	f := newApprovalFlow(t, func(f *approvalFlow) {
		f.opts = append(f.opts, func(g *Gateway) {
			g.hooks = &pipelineHooks{judged: func(seqs []uint64) {
				first := from.Load()
				// Only the batch of the request sent below: another
				// batch judged meanwhile (a redelivery under load) would
				// revoke the key before that request is judged.
				if first == 0 || !slices.ContainsFunc(seqs, func(s uint64) bool { return s >= first }) || !from.CompareAndSwap(first, 0) {
					return
				}
				// As a reload between this batch's judgment and its
				// commit: the key revoked, its sweep run, and finding
				// no hold of that key yet.
				g.revocations.Replace(nil, []string{other.pub})
				swept <- g.sweepHolds(context.Background())
			}}
		})
	})
	other = newActor(t)
	other.token = f.credential(f.issuer, other, "tenant_a", []string{"pay:send"}, time.Hour, "")
	in, err := f.js.Stream(context.Background(), StreamIngress)
	must(t, err)
	from.Store(in.CachedInfo().State.LastSeq + 1)
	// Judged before the revocation: held. Its withdrawal follows at once,
	// so its approval request is looked for where it goes, not as its
	// first output found.
	seq := f.sendCritical(other)
	must(t, <-swept)
	var held *jetstream.RawStreamMsg
	waitFor(t, func() bool {
		held = f.find(StreamApproval, header.IngressSeq, fmt.Sprint(seq))
		return held != nil
	})
	if !strings.HasPrefix(held.Subject, "agentgw.approval.tenant_a.payments.send") {
		t.Fatalf("held request on %s; want the approval queue", held.Subject)
	}
	m := f.waitWithdrawn(seq)
	if got := reason.Code(m.Header.Get(header.Reason)); got != reason.Revoked {
		t.Fatalf("withdrawn held request: reason %q (%s); want revoked", got, m.Header.Get(header.Detail))
	}
	f.auditKind(seq, "approval_withdrawn")
	if n, _ := f.gw.pendingApprovals(); n != 1 {
		t.Errorf("pending approvals = %d; want 1 (the first agent's)", n)
	}
	f.endApproval(1)
}

// TestIssuerTrustLostDeniesHeldRequestsAtStart: trust is configuration,
// changed by a restart. A request held under an issuer the restarted
// gateway no longer trusts for the tenant is denied untrusted_issuer when
// the gateway starts, not left for an approver.
func TestIssuerTrustLostDeniesHeldRequestsAtStart(t *testing.T) {
	f := newApprovalFlow(t)
	f.stop()
	next, _ := identity.NewIssuer()
	pub, _ := next.PublicKey()
	f.cfg.Tenants = map[string]TenantConfig{"tenant_a": {Issuers: []string{pub}}, "tenant_b": f.cfg.Tenants["tenant_b"]}
	f.start()
	m := f.waitWithdrawn(f.heldSeq)
	if got := reason.Code(m.Header.Get(header.Reason)); got != reason.UntrustedIssuer {
		t.Fatalf("withdrawn held request: reason %q (%s); want untrusted_issuer", got, m.Header.Get(header.Detail))
	}
	f.auditKind(f.heldSeq, "approval_withdrawn")
	f.approver.token = f.credential(next, f.approver, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
	f.wantReason(f.answer(f.approver, f.grant(), f.req.HeldMessageID), reason.ApprovalInvalid)
	f.endApproval(1)
}

// TestNewCurveKeyWithdrawsHeldRequests: a held request keeps its
// credential sealed to the gateway's curve key. Restarted with a new one,
// the gateway can no longer check the requester's standing, and
// withdraws the request at its start (seal_mismatch) rather than leave
// it for an approver whose grant it could not judge.
func TestNewCurveKeyWithdrawsHeldRequests(t *testing.T) {
	f := newApprovalFlow(t)
	f.stop()
	next, err := identity.NewCurve()
	must(t, err)
	writeSeed(t, filepath.Join(f.dir, "curve.nk"), next)
	f.gwCurve, _ = next.PublicKey()
	f.start()
	m := f.waitWithdrawn(f.heldSeq)
	if got := reason.Code(m.Header.Get(header.Reason)); got != reason.SealMismatch {
		t.Fatalf("withdrawn held request: reason %q (%s); want seal_mismatch", got, m.Header.Get(header.Detail))
	}
	f.auditKind(f.heldSeq, "approval_withdrawn")
	f.wantReason(f.answer(f.approver, f.grant(), f.req.HeldMessageID), reason.ApprovalInvalid)
	f.endApproval(1)
}

// TestHeldStandingChecksTheRecordsCredential: the credential a hold
// keeps sealed must be the one its record names (jti and agent): a record
// whose sealed credential is another's does not stand, whatever that
// credential's own standing (internal_error, fail closed).
func TestHeldStandingChecksTheRecordsCredential(t *testing.T) {
	f := newApprovalFlow(t)
	var h held
	must(t, f.gw.ledger.ScanHolds(func(hd store.Hold) error {
		if approvalHoldID(hd.ID) {
			return json.Unmarshal(hd.Value, &h)
		}
		return nil
	}))
	if err := f.gw.heldStanding(&h); err != nil {
		t.Fatalf("heldStanding(the record as held) = %v; want it to stand", err)
	}
	for name, edit := range map[string]func(*held){
		"jti":   func(h *held) { h.CredentialID = "another-credential" },
		"agent": func(h *held) { h.Agent = f.approver.pub },
	} {
		c := h
		edit(&c)
		if err := f.gw.heldStanding(&c); reason.Of(err) != reason.Internal {
			t.Errorf("heldStanding(record naming another %s) = %v; want internal_error", name, err)
		}
	}
}

// TestScaleOutRevocationDeniesHeldRequestOnce: scaled out, the holds are
// in the shared bucket and every instance sweeps them when its
// revocations change; the revision-checked update lets exactly one
// instance deny the held request.
func TestScaleOutRevocationDeniesHeldRequestOnce(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true
	h.cfg.Consumer.Partitions = 2
	a, b := h.startInstance("a"), h.startInstance("b")
	waitFor(t, func() bool { return a.held() == 1 && b.held() == 1 })
	f := &approvalFlow{harness: h}
	f.req = f.holdFrom(h.agent)
	f.heldSeq = f.seqOf(f.req.HeldMessageID)

	replaceFile(t, h.cfg.Revocations.File, "keys: []\nprincipals: []\njtis: ["+h.agent.token.JTI()+"]\n")
	must(t, a.gw.Reload())
	must(t, b.gw.Reload())
	m := f.waitWithdrawn(f.heldSeq)
	if got := reason.Code(m.Header.Get(header.Reason)); got != reason.Revoked {
		t.Fatalf("withdrawn held request: reason %q; want revoked", got)
	}
	must(t, a.gw.Reload()) // sweeps again: nothing left
	r, err := invariant.Wait(context.Background(), h.js, 15*time.Second)
	must(t, err)
	if err := r.Err(); err != nil || len(r.FollowUps) != 1 {
		t.Fatalf("invariant: %v; follow-ups %d want 1", err, len(r.FollowUps))
	}
	n := 0
	for _, m := range h.all(StreamDenied) {
		if m.Header.Get(header.IngressSeq) == fmt.Sprint(f.heldSeq) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("withdrawal published %d times; want 1", n)
	}
	h.endScaleOut(t, b, a)
}

// holdFrom sends a's critical payment and returns the approval request.
func (f *approvalFlow) holdFrom(a *actor) approval.Request {
	f.t.Helper()
	out := f.outputFor(f.sendCritical(a))
	if !strings.HasPrefix(out.Subject, "agentgw.approval.tenant_a.payments.send") {
		f.t.Fatalf("critical request went to %s (%s); want the approval queue", out.Subject, out.Header.Get(header.Reason))
	}
	var req approval.Request
	must(f.t, json.Unmarshal(out.Data, &req))
	return req
}

// sendCritical publishes a critical payment of a's, one the policy
// holds for an approver, and returns its ingress sequence.
func (f *approvalFlow) sendCritical(a *actor) uint64 {
	f.t.Helper()
	body := f.body(func(b *envelope.Builder) {
		b.Capability, b.Target = envelope.ToolCall, "payments.send"
		b.Payload = envelope.Payload{Plain: json.RawMessage(`{"amount_cents":990000,"iban":"DE00123"}`)}
	})
	return f.publish(f.ingress(a, "tenant_a"), body, f.signed(a, a.token, body))
}

// seqOf is the ingress sequence of the held request with message id id.
func (f *approvalFlow) seqOf(id string) uint64 {
	f.t.Helper()
	m := f.find(StreamApproval, header.MessageID, id)
	if m == nil {
		f.t.Fatalf("no approval request for %s", id)
	}
	var seq uint64
	_, err := fmt.Sscan(m.Header.Get(header.IngressSeq), &seq)
	must(f.t, err)
	return seq
}

// waitWithdrawn waits for the held request of ingress sequence seq to
// reach the denied stream as its second, final output.
func (f *approvalFlow) waitWithdrawn(seq uint64) *jetstream.RawStreamMsg {
	f.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if m := f.find(StreamDenied, header.IngressSeq, fmt.Sprint(seq)); m != nil {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Fatalf("held request %d did not reach the denied stream", seq)
	return nil
}

// auditKind waits for the audit event of kind for ingress sequence seq.
func (f *approvalFlow) auditKind(seq uint64, kind string) audit.Event {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, ev := range f.auditEvents() {
			if ev.IngressSeq == seq && ev.Kind == kind {
				return ev
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Fatalf("no %s audit event for ingress sequence %d", kind, seq)
	return audit.Event{}
}

// endApproval checks the invariant (every ingress message has its one
// output, followUps held requests a second, final one), then stops the
// gateway and checks emitted secrets and the audit schema.
func (f *approvalFlow) endApproval(followUps int) {
	f.t.Helper()
	r, err := invariant.Wait(context.Background(), f.js, 10*time.Second)
	must(f.t, err)
	if err := r.Err(); err != nil || len(r.FollowUps) != followUps {
		f.t.Fatalf("invariant: %v; follow-ups %d want %d", err, len(r.FollowUps), followUps)
	}
	f.stop()
	f.scanSecrets()
	f.validateAudit()
}
