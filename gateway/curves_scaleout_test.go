package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects"
)

// midRotation runs two scaled-out instances sharing two partitions,
// midway through a curve-key rotation: a seals with the harness's key and
// accepts a new one, b seals with the new key and accepts the old. It
// returns them and the new key.
func (h *harness) midRotation() (a, b *instance, next string) {
	h.t.Helper()
	h.cfg.Consumer.Partitions = 2
	oldPath := h.cfg.Keys.Curve
	kp, err := identity.NewCurve()
	must(h.t, err)
	nextPath := filepath.Join(h.dir, "curve-next.nk")
	writeSeed(h.t, nextPath, kp)
	next, _ = kp.PublicKey()
	seed, _ := kp.Seed()
	h.secrets = append(h.secrets, string(seed))

	h.cfg.Keys.Curve, h.cfg.Keys.AcceptedCurves = oldPath, []string{nextPath}
	a = h.startInstance("a")
	h.cfg.Keys.Curve, h.cfg.Keys.AcceptedCurves = nextPath, []string{oldPath}
	b = h.startInstance("b")
	waitFor(h.t, func() bool { return a.held() == 1 && b.held() == 1 })
	return a, b, next
}

// TestScaleOutRollingCurveRotation: scaled out, instances share the held
// requests and each sweeps all of them. Midway through a rolling
// curve-key rotation one instance still seals with the old key and
// accepts the new one (the first restart of the README's two), the other
// seals with the new key and accepts the old one. Each holds a request
// whose credential is sealed to its own key; a sweep of the shared holds
// by each withdraws neither, and an approver's grant releases both,
// whichever instance decides it.
func TestScaleOutRollingCurveRotation(t *testing.T) {
	h := newHarness(t)
	a, b, _ := h.midRotation()

	f := &approvalFlow{harness: h, approver: newActor(t)}
	f.approver.token = h.credential(h.issuer, f.approver, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
	// One held request on each partition, so one of each instance.
	ingress, err := h.js.Stream(context.Background(), StreamIngress)
	must(t, err)
	held := map[int]uint64{} // partition → ingress sequence
	var reqs []*approvalFlow
	for i := 0; len(held) < 2; i++ {
		if i == 32 {
			t.Fatalf("32 agents all hashed to partitions %v", held)
		}
		ag := newActor(t)
		ag.token = h.credential(h.issuer, ag, "tenant_a", []string{"pay:send"}, time.Hour, "")
		seq := f.sendCritical(ag)
		m, err := ingress.GetMsg(context.Background(), seq)
		must(t, err)
		ref, err := subjects.ParseIngress(m.Subject)
		must(t, err)
		if _, ok := held[ref.Partition]; ok {
			continue
		}
		held[ref.Partition] = seq
		out := f.outputFor(seq)
		if !strings.HasPrefix(out.Subject, "agentgw.approval.tenant_a.payments.send") {
			t.Fatalf("critical request went to %s (%s)", out.Subject, out.Header.Get(header.Reason))
		}
		r := &approvalFlow{harness: h, approver: f.approver}
		must(t, json.Unmarshal(out.Data, &r.req))
		reqs = append(reqs, r)
	}

	// Each instance sweeps every shared hold with its own keys, as it
	// does when it takes a partition or its revocations change.
	must(t, a.gw.sweepHolds(context.Background()))
	must(t, b.gw.sweepHolds(context.Background()))
	for p, seq := range held {
		if m := h.find(StreamDenied, header.IngressSeq, fmt.Sprint(seq)); m != nil {
			t.Fatalf("the held request of partition %d was withdrawn: %s %s", p, m.Header.Get(header.Reason), m.Header.Get(header.Detail))
		}
	}
	for _, r := range reqs {
		r.grantReleases()
	}
	h.endScaleOut(t, b, a)
}

// TestScaleOutReplySealedFromTheRequestsKey: scaled out, the record of a
// delivered request that awaits its answer lives in the shared bucket,
// and the answer may be decided by another instance than the request.
// Midway through a rotation (one instance on each key, each accepting
// the other), the reply to a request sealed to either key comes from
// that key, whichever instance decides the answer.
func TestScaleOutReplySealedFromTheRequestsKey(t *testing.T) {
	h := newHarness(t)
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.*"}, time.Hour, "")
	old := h.gwCurve
	a, b, nextPub := h.midRotation()

	const answer = `{"refund_id":"r1","status":"drafted"}`
	for i, to := range []string{old, nextPub} {
		body, _ := h.sealedRefundTo(to, 1500+i)
		env, err := envelope.Parse(body, envelope.Limits{})
		must(t, err)
		h.delivered(h.outputFor(h.send(body)))
		h.gwCurve = to // the consumer answers sealed to the same key
		reply := h.outputFor(h.respond(h.consumer, env.MessageID, answer))
		h.gwCurve = old
		h.wantReply(reply, h.agent, answer)
		if from := reply.Header.Get(header.SealedFrom); from != to {
			t.Errorf("reply to a request sealed to %s is sealed from %s; want the key the request was sealed to", to, from)
		}
	}
	h.endScaleOut(t, b, a)
}
