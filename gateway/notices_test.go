package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/subjects/reason"
)

// noticesTo returns the decision notices on a's reply subject that
// report on the envelope messageID.
func (h *harness) noticesTo(a *actor, messageID string) []*jetstream.RawStreamMsg {
	var out []*jetstream.RawStreamMsg
	for _, m := range h.all(StreamReply) {
		if m.Subject == "agentgw.reply.tenant_a."+a.pub && m.Header.Get(notice.Header) == notice.Kind && m.Header.Get(header.MessageID) == messageID {
			out = append(out, m)
		}
	}
	return out
}

// noticeFor waits for the one notice to a about messageID, verifies its
// token as an agent would and returns it.
func (h *harness) noticeFor(a *actor, messageID string) *notice.Notice {
	h.t.Helper()
	var ms []*jetstream.RawStreamMsg
	waitFor(h.t, func() bool { ms = h.noticesTo(a, messageID); return len(ms) > 0 })
	if len(ms) != 1 {
		h.t.Fatalf("notices to %s about %s = %d; want 1", a.pub, messageID, len(ms))
	}
	m := ms[0]
	if m.Header.Get(header.Decision) != "" {
		h.t.Errorf("notice carries its token in a header too")
	}
	token, data, err := notice.ParseDoc(m.Data)
	must(h.t, err)
	claims, err := decision.Verify(token, decision.VerifyOptions{
		TrustedGateways: []string{h.gwSigning}, Audience: a.pub, Now: h.clock.Now(), Skew: 30 * time.Second,
	})
	must(h.t, err)
	if claims.Route != decision.RouteNotice || claims.PayloadDigest != decision.Digest(data) || claims.Subject != a.pub {
		h.t.Fatalf("notice token %+v does not bind this notice to %s", claims, a.pub)
	}
	if len(claims.PolicyIDs) > 0 || claims.PolicyVersion != "" {
		h.t.Errorf("notice token names policies %v %q", claims.PolicyIDs, claims.PolicyVersion)
	}
	n, err := notice.Parse(data)
	must(h.t, err)
	return n
}

func messageID(t *testing.T, body []byte) string {
	env, err := envelope.Parse(body, envelope.Limits{})
	must(t, err)
	return env.MessageID
}

// ingressID is the message id of the envelope at an ingress sequence.
func (h *harness) ingressID(seq uint64) string {
	h.t.Helper()
	s, err := h.js.Stream(context.Background(), StreamIngress)
	must(h.t, err)
	m, err := s.GetMsg(context.Background(), seq)
	must(h.t, err)
	env, err := envelope.Parse(m.Data, envelope.Limits{})
	must(h.t, err)
	return env.MessageID
}

// TestDecisionNoticeTellsTheSender: an authenticated sender learns,
// on its own reply subject, where its message went or the reason code it
// was denied for, and nothing of the policy; an unauthenticated one
// learns nothing.
func TestDecisionNoticeTellsTheSender(t *testing.T) {
	h := newHarness(t)
	h.start()

	allowed, _ := h.sealedRefund(h.agent, 700, nil)
	h.outputFor(h.send(allowed))
	if n := h.noticeFor(h.agent, messageID(t, allowed)); n.Route != notice.RouteAllow || n.Target != "refunds.draft_refund" || n.Reason != "" {
		t.Errorf("notice of a delivery = %+v; want allow to refunds.draft_refund", n)
	}

	unknown := h.body(func(b *envelope.Builder) { b.Target = "kb.nowhere" })
	h.wantReason(h.send(unknown), reason.UnknownTarget)
	if n := h.noticeFor(h.agent, messageID(t, unknown)); n.Route != notice.RouteDeny || n.Reason != string(reason.UnknownTarget) || n.Target != "" {
		t.Errorf("notice of a denial = %+v; want deny unknown_target", n)
	}

	denied := h.body(func(b *envelope.Builder) { b.Target = "kb.search"; b.Capability = envelope.ToolCall })
	seq := h.send(denied)
	out := h.outputFor(seq)
	if !strings.HasPrefix(out.Subject, "agentgw.denied.") {
		t.Fatalf("tool_call on kb.search went to %s", out.Subject)
	}
	m := h.noticesTo(h.agent, messageID(t, denied))
	waitFor(t, func() bool { m = h.noticesTo(h.agent, messageID(t, denied)); return len(m) == 1 })
	for _, leak := range []string{out.Header.Get(header.Policy), out.Header.Get(header.PolicyVersion), out.Header.Get(header.Detail)} {
		if leak != "" && (strings.Contains(string(m[0].Data), leak) || strings.Contains(fmt.Sprint(m[0].Header), leak)) {
			t.Errorf("notice %s %v shows the operator's %q", m[0].Data, m[0].Header, leak)
		}
	}

	// A message whose signature does not verify names nobody: no notice,
	// though its subject and credential are the agent's.
	other := newActor(t)
	forged := h.body(nil)
	h.wantReason(h.publish(h.ingress(h.agent, "tenant_a"), forged, h.signed(other, h.agent.token, forged)), reason.BadSignature)
	// One more authenticated message, decided after the forged one, so
	// that a notice of the forged one would be stored by now.
	after := h.body(nil)
	h.outputFor(h.send(after))
	h.noticeFor(h.agent, messageID(t, after))
	if n := h.noticesTo(h.agent, messageID(t, forged)); len(n) != 0 {
		t.Errorf("an unauthenticated message got %d notices", len(n))
	}

	r, err := invariant.Wait(context.Background(), h.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
	if len(r.Notices) != 4 {
		t.Errorf("invariant counted %d notices; want 4", len(r.Notices))
	}
	h.stop()
	h.scanSecrets()
}

// TestDecisionNoticeOff: notify_senders false sends none.
func TestDecisionNoticeOff(t *testing.T) {
	h := newHarness(t)
	h.cfg.NotifySenders = false
	h.start()
	body := h.body(nil)
	h.outputFor(h.send(body))
	h.stop()
	if n := h.noticesTo(h.agent, messageID(t, body)); len(n) != 0 {
		t.Errorf("notices with notify_senders off = %d; want 0", len(n))
	}
}

// TestDecisionNoticeOfHeldRequest: a held request's sender learns the
// approval id and deadline; the approver whose grant the gateway took
// learns that and the release's outcome; the requester learns the
// delivery. A refused answer is an ordinary denial of the answer.
func TestDecisionNoticeOfHeldRequest(t *testing.T) {
	f := newApprovalFlow(t)
	n := f.noticeFor(f.agent, f.req.HeldMessageID)
	if n.Route != notice.RouteApproval || n.ApprovalID != f.req.HeldMessageID || n.Deadline == nil || !n.Deadline.Equal(f.req.Deadline) {
		t.Errorf("notice of a held request = %+v; want approval %s until %s", n, f.req.HeldMessageID, f.req.Deadline)
	}
	wrong := f.grant()
	wrong.BodyDigest = "sha256:" + strings.Repeat("0", 64)
	refused := f.answer(f.approver, wrong, f.req.HeldMessageID)
	f.wantReason(refused, reason.ApprovalInvalid)
	if n := f.noticeFor(f.approver, f.ingressID(refused)); n.Route != notice.RouteDeny || n.Reason != string(reason.ApprovalInvalid) || n.Answers != "" {
		t.Errorf("notice of a refused answer = %+v; want deny approval_invalid, answering nothing", n)
	}

	seq := f.answer(f.approver, f.grant(), f.req.HeldMessageID)
	f.outputFor(seq)
	n = f.noticeFor(f.approver, f.ingressID(seq))
	if n.Answers != f.req.HeldMessageID || n.Answer != notice.AnswerGrant || n.Route != notice.RouteAllow || n.Target != "payments.send" {
		t.Errorf("approver's notice = %+v; want grant of %s taken, delivered to payments.send", n, f.req.HeldMessageID)
	}
	waitFor(t, func() bool { return len(f.noticesTo(f.agent, f.req.HeldMessageID)) == 2 })
	var released *notice.Notice
	for _, m := range f.noticesTo(f.agent, f.req.HeldMessageID) {
		if m.Header.Get(header.IngressSeq) == fmt.Sprint(seq) {
			_, data, err := notice.ParseDoc(m.Data)
			must(t, err)
			released, err = notice.Parse(data)
			must(t, err)
		}
	}
	if released == nil || released.Route != notice.RouteAllow || released.Target != "payments.send" {
		t.Errorf("requester's notice of the release = %+v; want allow to payments.send", released)
	}
	r, err := invariant.Wait(context.Background(), f.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
	f.stop()
	f.scanSecrets()
}

// TestRedeliveryReemitsNotice: the notice is an output recorded in the
// outcome, so a crash before the ack re-emits it with the same
// Nats-Msg-Id and the sender is told once.
func TestRedeliveryReemitsNotice(t *testing.T) {
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
	h.send(body)
	<-crashed
	h.stop()
	id := messageID(t, body)
	before := h.noticesTo(h.agent, id)
	if len(before) != 1 {
		t.Fatalf("notices before restart = %d; want 1", len(before))
	}
	h.start()
	waitFor(t, func() bool { return h.gw.Stats().Reemitted.Load() > 0 })
	r, err := invariant.Wait(context.Background(), h.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
	after := h.noticesTo(h.agent, id)
	if len(after) != 1 || string(after[0].Data) != string(before[0].Data) || after[0].Header.Get(header.MsgID) != before[0].Header.Get(header.MsgID) {
		t.Errorf("notices after redelivery = %d; want the same one", len(after))
	}
}

// replies are the responses on the reply stream, without the decision
// notices beside them.
func (h *harness) replies() []*jetstream.RawStreamMsg {
	var out []*jetstream.RawStreamMsg
	for _, m := range h.all(StreamReply) {
		if m.Header.Get(notice.Header) == "" {
			out = append(out, m)
		}
	}
	return out
}
