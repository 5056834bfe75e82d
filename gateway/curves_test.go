package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	dto "github.com/prometheus/client_model/go"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/operator"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/subjects/reason"
)

// rotateCurve gives the stopped harness gateway a new curve key and, with
// keepOld, the one it replaces as its only keys.accepted_curves entry
// (without, none). It returns the replaced key pair.
func (h *harness) rotateCurve(keepOld bool) nkeys.KeyPair {
	h.t.Helper()
	seed, err := os.ReadFile(h.cfg.Keys.Curve)
	must(h.t, err)
	old, err := nkeys.FromCurveSeed(seed)
	must(h.t, err)
	next, err := identity.NewCurve()
	must(h.t, err)
	writeSeed(h.t, h.cfg.Keys.Curve, next)
	h.gwCurve, _ = next.PublicKey()
	nextSeed, _ := next.Seed()
	h.secrets = append(h.secrets, string(nextSeed))
	h.cfg.Keys.AcceptedCurves = nil
	if keepOld {
		prev := filepath.Join(h.dir, "curve-previous.nk")
		writeSeed(h.t, prev, old)
		h.cfg.Keys.AcceptedCurves = []string{prev}
	}
	return old
}

// acceptedOpens reads agentgw_accepted_curve_opens_total for key.
func (h *harness) acceptedOpens(key string) float64 {
	h.t.Helper()
	var m dto.Metric
	must(h.t, h.gw.metrics.AcceptedCurveOpens.WithLabelValues(key).Write(&m))
	return m.GetCounter().GetValue()
}

// grantReleases answers the held request f.req with the approver's grant
// and fails the test unless the payment is released, audited as granted.
func (f *approvalFlow) grantReleases() {
	f.t.Helper()
	seq := f.answer(f.approver, f.grant(), f.req.HeldMessageID)
	if out := f.outputFor(seq); !strings.HasPrefix(out.Subject, "agentgw.cap.tenant_a.payments.send") {
		f.t.Fatalf("grant of %s went to %s (%s %s); want its release", f.req.HeldMessageID, out.Subject, out.Header.Get(header.Reason), out.Header.Get(header.Detail))
	}
	if ev := f.auditFor(seq); ev.Kind != "approval_granted" {
		f.t.Errorf("audit = %+v; want approval_granted", ev)
	}
}

// rotateThenGrant restarts the flow's gateway with a new curve key, the
// old one accepted, grants the held request f.req (grantReleases), and
// wants at least atLeast opens with the old key counted (of what): then it
// stops the gateway and scans what it emitted.
func (f *approvalFlow) rotateThenGrant(atLeast float64, what string) {
	f.t.Helper()
	f.stop()
	oldKP := f.rotateCurve(true)
	old, _ := oldKP.PublicKey()
	f.start()
	f.grantReleases()
	if n := f.acceptedOpens(old); n < atLeast {
		f.t.Errorf("agentgw_accepted_curve_opens_total{key=old} = %v; want %s opens counted", n, what)
	}
	f.stop()
	f.scanSecrets()
}

// sealedRefundTo is sealedRefund sealed to the gateway curve key to.
func (h *harness) sealedRefundTo(to string, amount int) ([]byte, []byte) {
	h.t.Helper()
	cur := h.gwCurve
	h.gwCurve = to
	defer func() { h.gwCurve = cur }()
	return h.sealedRefund(h.agent, amount, nil)
}

// TestPreviousCurveKeyOpensWhatWasSealedToIt: after a rotation that keeps
// the old curve key in keys.accepted_curves, an agent still sealing to
// the old key is served as before: its payload is opened, passes every
// gate and is re-sealed to the consumer from the current key; the tool's
// response sealed to the old key is opened too, and the reply is sealed
// from the old key, which that agent expects. A key
// that is neither is seal_mismatch, and so is the old key once it is
// dropped from the configuration; a request sealed to it and still
// outstanding then gets its reply from the current key.
func TestPreviousCurveKeyOpensWhatWasSealedToIt(t *testing.T) {
	h := newHarness(t)
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.*"}, time.Hour, "")
	oldKP := h.rotateCurve(true)
	old, _ := oldKP.PublicKey()
	h.start()

	const answer = `{"refund_id":"r1","status":"drafted"}`
	for _, to := range []string{old, h.gwCurve} {
		body, plain := h.sealedRefundTo(to, 1500)
		out := h.outputFor(h.send(body))
		d := h.delivered(out)
		if string(d.Payload) != string(plain) {
			t.Fatalf("sealed to %s: consumer opened %s; want %s", to, d.Payload, plain)
		}
		if from := h.delivery(out).SealedFrom; from != h.gwCurve {
			t.Errorf("sealed to %s: delivery re-sealed from %s; want the current key %s", to, from, h.gwCurve)
		}
		env, err := envelope.Parse(body, envelope.Limits{})
		must(t, err)
		// The tool answers sealed to the same key, as one not yet
		// moved to the new key would.
		cur := h.gwCurve
		h.gwCurve = to
		seq := h.respond(h.consumer, env.MessageID, answer)
		h.gwCurve = cur
		reply := h.outputFor(seq)
		h.wantReply(reply, h.agent, answer)
		if from := reply.Header.Get(header.SealedFrom); from != to {
			t.Errorf("reply to a request sealed to %s is sealed from %s; want the key the request was sealed to", to, from)
		}
	}
	if n := h.acceptedOpens(old); n != 2 {
		t.Errorf("agentgw_accepted_curve_opens_total{key=old} = %v; want 2 (the request and the response sealed to it)", n)
	}

	other, err := identity.NewCurve()
	must(t, err)
	otherPub, _ := other.PublicKey()
	body, _ := h.sealedRefundTo(otherPub, 1600)
	h.wantReason(h.send(body), reason.SealMismatch)
	// A request sealed to the old key, still outstanding when the key is
	// dropped.
	body, _ = h.sealedRefundTo(old, 1650)
	pending, err := envelope.Parse(body, envelope.Limits{})
	must(t, err)
	h.delivered(h.outputFor(h.send(body)))

	h.stop()
	h.cfg.Keys.AcceptedCurves = nil
	h.start()
	body, _ = h.sealedRefundTo(old, 1700)
	h.wantReason(h.send(body), reason.SealMismatch)
	// Its reply comes from the current key: the gateway no longer holds
	// the one the request was sealed to.
	reply := h.outputFor(h.respond(h.consumer, pending.MessageID, answer))
	h.wantReply(reply, h.agent, answer)
	if from := reply.Header.Get(header.SealedFrom); from != h.gwCurve {
		t.Errorf("reply to a request sealed to a dropped key is sealed from %s; want the current key %s", from, h.gwCurve)
	}
	r, err := invariant.Wait(context.Background(), h.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
	h.stop()
	h.scanSecrets()
	h.validateAudit()
}

// TestPreviousCurveKeyKeepsHeldRequests: a held request keeps its
// credential sealed to the curve key of its time. Restarted with a new
// key and the old one in keys.accepted_curves, the gateway still opens it
// and checks its standing: the request is not withdrawn, and a grant
// releases it (TestNewCurveKeyWithdrawsHeldRequests is the same rotation
// without the old key).
func TestPreviousCurveKeyKeepsHeldRequests(t *testing.T) {
	f := newApprovalFlow(t)
	f.rotateThenGrant(1, "the held credential's")
}

// TestPreviousCurveKeyReplaysOlderDenials: a denied record keeps the
// agent's credential sealed to the curve key of its time. After a
// rotation that keeps that key, an operator's replay opens it and the
// message is decided again through every gate; once the key is dropped,
// the replay is refused naming it (TestOperatorReplaySealedCredential).
func TestPreviousCurveKeyReplaysOlderDenials(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx := context.Background()
	op := h.operator("operator:replay")
	must(t, os.WriteFile(h.cfg.Revocations.File, []byte("jtis: []\nprincipals: []\nkeys: ["+h.agent.pub+"]\n"), 0o600))
	must(t, h.gw.Reload())
	in := h.send(h.body(nil))
	h.wantReason(in, reason.Revoked)
	denied := h.deniedSeq(in)
	must(t, os.WriteFile(h.cfg.Revocations.File, []byte("jtis: []\nkeys: []\nprincipals: []\n"), 0o600))
	h.stop()
	h.rotateCurve(true)
	h.start()

	var res *operator.Result
	var err error
	waitFor(t, func() bool { // until the restarted gateway answers
		res, err = op.Replay(ctx, denied, true)
		return !errors.Is(err, client.ErrUnavailable)
	})
	must(t, err)
	if res.Route != "allow" {
		t.Fatalf("dry run of a record sealed to the previous key = %+v; want allow", res)
	}
	res, err = op.Replay(ctx, denied, false)
	must(t, err)
	if out := h.outputFor(res.IngressSeq); out.Header.Get(header.Route) != "allow" {
		t.Fatalf("replayed message went to %s (%s); want its capability", out.Subject, out.Header.Get(header.Reason))
	}
	h.stop()
	h.scanSecrets()
}

// TestOpenCredentialWithAcceptedCurveKey: the gateway opens a credential
// sealed to one of its accepted curve keys, whether the record names the
// key (held requests, denied records) or not (an operator's replay
// authorization), and only for the body it was sealed with; a key it
// never held is refused with the key named.
func TestOpenCredentialWithAcceptedCurveKey(t *testing.T) {
	h := newHarness(t)
	oldKP := h.rotateCurve(true)
	old, _ := oldKP.PublicKey()
	h.start()
	<-h.gw.Ready()
	oldBox, err := identity.NewBox(oldKP)
	must(t, err)
	body := []byte(`{"a":1}`)
	tok := h.agent.token.Reveal()
	sealed, err := oldBox.SealCredential(tok, body)
	must(t, err)

	if got, err := h.gw.openCredential(sealed, old, body); err != nil || got.Reveal() != tok {
		t.Errorf("openCredential(sealed to the accepted key) = %v; want the credential", err)
	}
	if got, err := h.gw.openOwnCredential(sealed, body); err != nil || got.Reveal() != tok {
		t.Errorf("openOwnCredential(sealed to the accepted key) = %v; want the credential", err)
	}
	if _, err := h.gw.openOwnCredential(sealed, []byte(`{"a":2}`)); reason.Of(err) != reason.SealBroken {
		t.Errorf("openOwnCredential(another body) = %v; want seal_broken", err)
	}
	other, err := identity.NewCurve()
	must(t, err)
	otherBox, err := identity.NewBox(other)
	must(t, err)
	foreign, err := otherBox.SealCredential(tok, body)
	must(t, err)
	if _, err := h.gw.openCredential(foreign, otherBox.PublicKey(), body); reason.Of(err) != reason.SealMismatch || !strings.Contains(err.Error(), otherBox.PublicKey()) {
		t.Errorf("openCredential(sealed to a key the gateway never held) = %v; want seal_mismatch naming it", err)
	}
	if _, err := h.gw.openOwnCredential(foreign, body); err == nil {
		t.Error("openOwnCredential(sealed to a key the gateway never held) opened")
	}
	if n := h.acceptedOpens(old); n != 2 {
		t.Errorf("agentgw_accepted_curve_opens_total{key=old} = %v; want 2", n)
	}
}

// TestAcceptedCurvesConfig: keys.accepted_curves holds at most
// MaxAcceptedCurves paths, none empty; the gateway refuses one that is
// not a curve seed, is its current key or is named twice.
func TestAcceptedCurvesConfig(t *testing.T) {
	h := newHarness(t)
	c := h.cfg
	c.Keys.AcceptedCurves = make([]string, MaxAcceptedCurves+1)
	err := c.Validate()
	for _, want := range []string{"at most 4", "keys.accepted_curves[0] is empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%d empty accepted curves) = %v; want %q", len(c.Keys.AcceptedCurves), err, want)
		}
	}

	prev, err := identity.NewCurve()
	must(t, err)
	prevPath := filepath.Join(h.dir, "prev.nk")
	writeSeed(t, prevPath, prev)
	signing := filepath.Join(h.dir, "signing.nk")
	for name, tc := range map[string]struct {
		paths []string
		want  string
	}{
		"current key":  {[]string{h.cfg.Keys.Curve}, "is keys.curve or named twice"},
		"twice":        {[]string{prevPath, prevPath}, "is keys.curve or named twice"},
		"signing seed": {[]string{signing}, "keys.accepted_curves[0]"},
		"missing file": {[]string{filepath.Join(h.dir, "nope.nk")}, "keys.accepted_curves[0]"},
	} {
		c := h.cfg
		c.Keys.AcceptedCurves = tc.paths
		_, err := New(c, WithConn(h.nc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v; want an error with %q", name, err, tc.want)
		}
	}
	c = h.cfg
	c.Keys.AcceptedCurves = []string{prevPath}
	gw, err := New(c, WithConn(h.nc))
	must(t, err)
	must(t, gw.Close())
}

// TestAcceptedCurveKeyLogged: the gateway names its accepted curve keys
// by their public keys when it starts, warns of one whose file is open
// to others, and never logs a seed.
func TestAcceptedCurveKeyLogged(t *testing.T) {
	h := newHarness(t)
	oldKP := h.rotateCurve(true)
	old, _ := oldKP.PublicKey()
	must(t, os.Chmod(h.cfg.Keys.AcceptedCurves[0], 0o644))
	h.start()
	<-h.gw.Ready()
	h.stop()
	logs := h.logs.String()
	var warned, running []string
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "a secret key file is open to its group or others") {
			warned = append(warned, line)
		}
		if strings.Contains(line, "gateway running") {
			running = append(running, line)
		}
	}
	if len(warned) != 1 || !strings.Contains(warned[0], `"key":"keys.accepted_curves[0]"`) || !strings.Contains(warned[0], `"mode":"0644"`) {
		t.Errorf("warnings %q; want one, of keys.accepted_curves[0] at 0644", warned)
	}
	if len(running) != 1 || !strings.Contains(running[0], `"accepted_curves":["`+old+`"]`) {
		t.Errorf("start lines %q; want one naming the accepted curve key %s", running, old)
	}
	seed, err := oldKP.Seed()
	must(t, err)
	if strings.Contains(logs, string(seed)) {
		t.Error("the log holds the accepted curve seed")
	}
}

// TestPayloadFromGatewayKeyRefused: a credential a tenant's issuer
// writes may name any curve key, the gateway's own included (the
// exchange refuses that; an issuer need not). A sealed payload from the
// gateway's current or accepted curve key is refused seal_mismatch
// before anything opens it, so the boxes the gateway makes itself
// (replies sealed from the key a request was sealed to, credentials it
// keeps sealed) never pass as an agent's payload.
func TestPayloadFromGatewayKeyRefused(t *testing.T) {
	h := newHarness(t)
	oldKP := h.rotateCurve(true)
	seed, err := os.ReadFile(h.cfg.Keys.Curve)
	must(t, err)
	curKP, err := nkeys.FromCurveSeed(seed)
	must(t, err)
	h.start()
	for _, spelling := range []string{"", ", the other spelling"} {
		for key, kp := range map[string]nkeys.KeyPair{"current": curKP, "accepted": oldKP} {
			name := key + spelling
			a := newActor(t)
			a.curve = kp
			a.xkey, _ = kp.PublicKey()
			if spelling != "" {
				var ok bool
				if a.xkey, ok = identity.OtherSpelling(a.xkey); !ok {
					t.Fatal("no other spelling of a curve key")
				}
			}
			a.box, err = identity.NewBox(kp)
			must(t, err)
			a.token = h.credential(h.issuer, a, "tenant_a", []string{"refund:draft"}, time.Hour, "")
			body, _ := h.sealedRefund(a, 1500, nil)
			out := h.outputFor(h.publish(h.ingress(a, "tenant_a"), body, h.signed(a, a.token, body)))
			if got, detail := reason.Code(out.Header.Get(header.Reason)), out.Header.Get(header.Detail); got != reason.SealMismatch || !strings.Contains(detail, "no agent's") {
				t.Errorf("payload sealed from the gateway's %s curve key: reason %q (%s); want seal_mismatch, from a gateway key", name, got, detail)
			}
		}
	}
	h.stop()
	h.scanSecrets()
}

// TestReplayHeldAcrossCurveRotation: an operator's replay of a denied
// critical payment is held for an approver, its authorization (the
// operator's credential) sealed to the curve key of its time. After a
// rotation that keeps that key accepted, the held replay still stands
// at the restart's sweep and at the grant, both of which re-check the
// operator, and the grant releases it.
func TestReplayHeldAcrossCurveRotation(t *testing.T) {
	f := newApprovalFlow(t)
	ctx := context.Background()
	op := f.operator("operator:replay")
	must(t, os.WriteFile(f.cfg.Revocations.File, []byte("jtis: []\nprincipals: []\nkeys: ["+f.agent.pub+"]\n"), 0o600))
	must(t, f.gw.Reload())
	in := f.sendCritical(f.agent)
	f.wantReason(in, reason.Revoked)
	denied := f.deniedSeq(in)
	must(t, os.WriteFile(f.cfg.Revocations.File, []byte("jtis: []\nkeys: []\nprincipals: []\n"), 0o600))
	must(t, f.gw.Reload())
	res, err := op.Replay(ctx, denied, false)
	must(t, err)
	out := f.outputFor(res.IngressSeq)
	if !strings.HasPrefix(out.Subject, "agentgw.approval.tenant_a.payments.send") {
		t.Fatalf("replayed critical payment went to %s (%s); want the approval queue", out.Subject, out.Header.Get(header.Reason))
	}
	must(t, json.Unmarshal(out.Data, &f.req))

	f.rotateThenGrant(2, "the agent's and the operator's credentials'")
}

// TestReplyToPlainRequestAcrossCurveRotation: a reply to a plain request
// is sealed from the gateway's current key. An SDK agent still
// configured with the old key (GatewayXKey) takes it once the new key is
// among its ReplyXKeys; without, it refuses it seal_mismatch, reported
// to OnReject, and its wait ends with no reply.
func TestReplyToPlainRequestAcrossCurveRotation(t *testing.T) {
	h := newHarness(t)
	cat, err := os.ReadFile(h.cfg.Catalog)
	must(t, err)
	cat = fmt.Appendf(cat, `  - name: kb.answer
    kind: tool_call
    scope: kb:read
    tenants: [tenant_a]
    plain: true
    consumer_xkey: %s
    response_deadline: 1m
    response_schema: '{"type":"object"}'
`, h.consumer.xkey)
	must(t, os.WriteFile(h.cfg.Catalog, cat, 0o600))
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:kb.answer"}, time.Hour, "")
	oldKP := h.rotateCurve(true)
	old, _ := oldKP.PublicKey()
	h.start()
	<-h.gw.Ready()

	const answer = `{"answer":"refunds take 5 days"}`
	ask := func(replyXKeys []string, wait time.Duration) (*client.Reply, []error, error) {
		t.Helper()
		c := client.DefaultAgentConfig()
		c.Credential, c.Key, c.Curve, c.GatewayXKey, c.ReplyXKeys = h.agent.token, h.agent.kp, h.agent.curve, old, replyXKeys
		ag, err := client.NewAgent(h.nc, c, client.WithClock(h.clock.Now))
		must(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		type result struct {
			reply *client.Reply
			err   error
		}
		var mu sync.Mutex
		var rejected []error
		done := make(chan result, 1)
		before := len(h.all(StreamCap))
		go func() {
			_, r, err := ag.SendAndWait(ctx, client.Request{Capability: envelope.ToolCall, Target: "kb.answer", Plain: map[string]any{"q": "refunds"}},
				client.WaitOptions{TrustedGateways: []string{h.gwSigning}, OnReject: func(err error) {
					mu.Lock()
					rejected = append(rejected, err)
					mu.Unlock()
				}})
			done <- result{r, err}
		}()
		var id string
		waitFor(t, func() bool {
			if all := h.all(StreamCap); len(all) > before {
				id = all[before].Header.Get(header.MessageID)
			}
			return id != ""
		})
		h.respond(h.consumer, id, answer)
		res := <-done
		mu.Lock()
		defer mu.Unlock()
		return res.reply, rejected, res.err
	}

	reply, _, err := ask([]string{h.gwCurve}, 20*time.Second)
	must(t, err)
	if string(reply.Payload) != answer {
		t.Fatalf("reply = %s; want %s", reply.Payload, answer)
	}
	if m := h.find(StreamReply, RequestIDHeader, reply.RequestID); m == nil || m.Header.Get(header.SealedFrom) != h.gwCurve {
		t.Errorf("reply to a plain request: %v; want it sealed from the current key %s", m, h.gwCurve)
	}

	_, rejected, err := ask(nil, 3*time.Second)
	if !errors.Is(err, client.ErrNoReply) {
		t.Fatalf("wait without the new key among ReplyXKeys = %v; want ErrNoReply", err)
	}
	if len(rejected) != 1 || reason.Of(rejected[0]) != reason.SealMismatch {
		t.Errorf("OnReject saw %v; want one seal_mismatch", rejected)
	}
	h.stop()
	h.scanSecrets()
}
