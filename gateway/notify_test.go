package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/subjects/reason"
)

// invariantHolds waits for the outputs to settle and fails the test
// unless every ingress message ended once, with its audit event.
func (h *harness) invariantHolds() *invariant.Report {
	h.t.Helper()
	r, err := invariant.Wait(context.Background(), h.js, 10*time.Second)
	must(h.t, err)
	if err := r.Err(); err != nil {
		h.t.Fatalf("invariant: %v", err)
	}
	return r
}

// sendNotify publishes body from the harness agent with Agentgw-Notify
// set to notify.
func (h *harness) sendNotify(body []byte, notify string) uint64 {
	hdr := h.signed(h.agent, h.agent.token, body)
	hdr.Set(header.Notify, notify)
	return h.publish(h.ingress(h.agent, "tenant_a"), body, hdr)
}

// TestNotifyNoneSendsNoNotice: a sender that asks for no notice gets none
// on any route, and its message still ends in exactly one output with
// its audit event; any other value of the header is not the ask, and
// the sender is told.
func TestNotifyNoneSendsNoNotice(t *testing.T) {
	h := newHarness(t)
	h.start()

	allowed := h.body(nil)
	h.outputFor(h.sendNotify(allowed, notice.NotifyNone))
	unknown := h.body(func(b *envelope.Builder) { b.Target = "kb.nowhere" })
	h.wantReason(h.sendNotify(unknown, notice.NotifyNone), reason.UnknownTarget)
	// Read exactly: these are not "none".
	var told []string
	for _, v := range []string{"None", "NONE", "no", ""} {
		b := h.body(nil)
		h.outputFor(h.sendNotify(b, v))
		told = append(told, messageID(t, b))
	}
	// Decided after the others, so their notices would be stored by now.
	last := h.body(nil)
	h.outputFor(h.send(last))
	h.noticeFor(h.agent, messageID(t, last))
	for _, id := range told {
		h.noticeFor(h.agent, id)
	}
	for _, body := range [][]byte{allowed, unknown} {
		if n := h.noticesTo(h.agent, messageID(t, body)); len(n) != 0 {
			t.Errorf("a sender that asked for none got %d notices of %s", len(n), messageID(t, body))
		}
	}

	r := h.invariantHolds()
	if want := len(told) + 1; len(r.Notices) != want {
		t.Errorf("invariant counted %d notices; want %d", len(r.Notices), want)
	}
	h.stop()
	h.scanSecrets()
	h.validateAudit()
}

// TestNotifyNoneHeldAndReleased: a held request whose sender asked for no
// notice is not told that it is held, nor of its release; the approver,
// who did not ask so, is told of its answer.
func TestNotifyNoneHeldAndReleased(t *testing.T) {
	h := newHarness(t)
	f := &approvalFlow{harness: h, approver: newActor(t)}
	f.approver.token = h.credential(h.issuer, f.approver, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
	h.start()
	body := h.body(func(b *envelope.Builder) {
		b.Capability, b.Target = envelope.ToolCall, "payments.send"
		b.Payload = envelope.Payload{Plain: json.RawMessage(`{"amount_cents":990000,"iban":"DE00123"}`)}
	})
	f.heldSeq = h.sendNotify(body, notice.NotifyNone)
	out := h.outputFor(f.heldSeq)
	if !strings.HasPrefix(out.Subject, "agentgw.approval.") {
		t.Fatalf("critical request went to %s; want the approval queue", out.Subject)
	}
	must(t, json.Unmarshal(out.Data, &f.req))

	seq := f.answer(f.approver, f.grant(), f.req.HeldMessageID)
	if d := f.outputFor(seq); !strings.HasPrefix(d.Subject, "agentgw.cap.tenant_a.payments.send") {
		t.Fatalf("granted request went to %s (%s)", d.Subject, d.Header.Get(header.Reason))
	}
	if n := f.noticeFor(f.approver, f.ingressID(seq)); n.Answers != f.req.HeldMessageID || n.Route != notice.RouteAllow {
		t.Errorf("approver's notice = %+v; want its grant of %s, delivered", n, f.req.HeldMessageID)
	}
	if n := f.noticesTo(f.agent, f.req.HeldMessageID); len(n) != 0 {
		t.Errorf("a requester that asked for none got %d notices (held, released)", len(n))
	}
	f.invariantHolds()
	f.stop()
	f.scanSecrets()
}

// TestNotifyNoneKeptByOperatorReplay: the denied record keeps the
// sender's ask, so an operator's replay of it tells the sender nothing;
// a record of a sender that did not ask so is replayed with a notice.
func TestNotifyNoneKeptByOperatorReplay(t *testing.T) {
	h := newHarness(t)
	h.cfg.ReloadInterval = 50 * time.Millisecond
	h.start()
	ctx := context.Background()
	forbid := func(b *envelope.Builder) { b.Capability, b.Target = envelope.ToolCall, "ops.forbidden" }
	quiet, told := h.body(forbid), h.body(forbid)
	quietDenied := h.deniedSeq(h.sendNotify(quiet, notice.NotifyNone))
	toldDenied := h.deniedSeq(h.send(told))
	s, err := h.js.Stream(ctx, StreamDenied)
	must(t, err)
	rec, err := s.GetMsg(ctx, quietDenied)
	must(t, err)
	if got := rec.Header.Get(header.Notify); got != notice.NotifyNone {
		t.Fatalf("denied record keeps %s %q; want %q", header.Notify, got, notice.NotifyNone)
	}
	rec, err = s.GetMsg(ctx, toldDenied)
	must(t, err)
	if got, ok := rec.Header[header.Notify]; ok {
		t.Fatalf("denied record of a sender that asked nothing has %s %q", header.Notify, got)
	}

	v1 := h.gw.Policy().Version()
	replaceFile(t, h.cfg.Policies[0], strings.Replace(testPolicy, "@id(\"forbid-ops\")\nforbid (principal, action, resource == Target::\"ops.forbidden\");", "", 1))
	waitFor(t, func() bool { return h.gw.Policy().Version() != v1 })
	op := h.operator("operator:replay")
	for _, seq := range []uint64{quietDenied, toldDenied} {
		res, err := op.Replay(ctx, seq, false)
		must(t, err)
		if out := h.outputFor(res.IngressSeq); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
			t.Fatalf("replay of %d went to %s (%s)", seq, out.Subject, out.Header.Get(header.Reason))
		}
	}
	// The replay of the other record is told, to its sender, after the
	// first replay: by then a notice of the first would be stored.
	waitFor(t, func() bool { return len(h.noticesTo(h.agent, messageID(t, told))) == 2 })
	if n := h.noticesTo(h.agent, messageID(t, quiet)); len(n) != 0 {
		t.Errorf("a sender that asked for none got %d notices (denial, replay)", len(n))
	}
	h.invariantHolds()
	h.stop()
	h.scanSecrets()
}

// TestSDKNoNotice: the Go SDK's Request.NoNotice reaches the gateway as
// the ask, and the waits that read a notice refuse it.
func TestSDKNoNotice(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	agent := h.sdkAgent(h.agent)
	trust := client.WaitOptions{TrustedGateways: []string{h.gwSigning}}
	read := func(noNotice bool) client.Request {
		return client.Request{Capability: envelope.Read, Target: "kb.search", Plain: json.RawMessage(`{"q":"x"}`), NoNotice: noNotice}
	}

	quiet, err := agent.Send(ctx, read(true))
	must(t, err)
	h.outputFor(quiet.Seq)
	told, err := agent.Send(ctx, read(false))
	must(t, err)
	h.outputFor(told.Seq)
	h.noticeFor(h.agent, told.MessageID)
	if n := h.noticesTo(h.agent, quiet.MessageID); len(n) != 0 {
		t.Errorf("Send with NoNotice got %d notices", len(n))
	}
	if _, _, err := agent.SendAndDecide(ctx, read(true), trust); !errors.Is(err, client.ErrRequest) {
		t.Errorf("SendAndDecide with NoNotice = %v; want ErrRequest", err)
	}
	if _, _, err := agent.SendAndWait(ctx, read(true), trust); !errors.Is(err, client.ErrRequest) {
		t.Errorf("SendAndWait with NoNotice = %v; want ErrRequest", err)
	}
	h.stop()
	h.scanSecrets()
}
