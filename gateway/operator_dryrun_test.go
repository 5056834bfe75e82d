package gateway

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/operator"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestDryRunSeesReplayMarker: two denied records of one message (the
// second a copy, denied replay_detected). The first record's replay is
// denied again and uses up the message's one replay (its single-use
// marker). Once the policy allows the message, a dry run of the second
// record must predict what its real replay gets, replay_refused, not
// allow.
func TestDryRunSeesReplayMarker(t *testing.T) {
	h := newHarness(t)
	h.cfg.ReloadInterval = 50 * time.Millisecond
	h.start()
	ctx := context.Background()
	body := h.forbiddenBody()
	first := h.send(body)
	h.wantReason(first, reason.PolicyDenied)
	cp := h.send(body)
	h.wantReason(cp, reason.ReplayDetected)
	op := h.operator(operator.Scope)
	res, err := op.Replay(ctx, h.deniedSeq(first), false)
	must(t, err)
	h.wantReason(res.IngressSeq, reason.PolicyDenied)
	h.allowOps(t)
	dry, err := op.Replay(ctx, h.deniedSeq(cp), true)
	must(t, err)
	if dry.Route != "deny" || dry.Reason != string(reason.ReplayRefused) {
		t.Errorf("dry run of the second record = %+v; want deny replay_refused", dry)
	}
	real, err := op.Replay(ctx, h.deniedSeq(cp), false)
	must(t, err)
	if out := h.outputFor(real.IngressSeq); out.Header.Get(header.Reason) != dry.Reason {
		t.Errorf("dry run predicted %s %s; the replay went to %s (%s)", dry.Route, dry.Reason, out.Subject, out.Header.Get(header.Reason))
	}
	h.stop()
}

// TestDryRunReadStopsAtLastSequence: a dry run reads the agent's ingress
// up to the stream's last sequence when the read starts, so an agent
// publishing on its own subject cannot keep the operator service (one
// subscription, every tenant's) reading. Here a message the agent
// published after the sequence noted carries the re-submission's
// Nats-Msg-Id: a read that went past the sequence would find it.
func TestDryRunReadStopsAtLastSequence(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx := context.Background()
	denied := h.deniedSeq(h.send(h.forbiddenBody()))
	it, err := h.gw.deniedMessage(ctx, denied, "tenant_a")
	must(t, err)
	s, err := h.js.Stream(ctx, StreamIngress)
	must(t, err)
	last := s.CachedInfo().State.LastSeq
	var after uint64
	for i := range 4 {
		m := nats.NewMsg(h.ingress(h.agent, "tenant_a"))
		m.Data = []byte("{}")
		if i == 3 {
			m.Header.Set(header.MsgID, h.gw.replayMsgID(it.body, denied))
		}
		ack, err := h.js.PublishMsg(ctx, m)
		must(t, err)
		h.outputFor(ack.Sequence)
		after = ack.Sequence
	}
	if seq, found, err := h.gw.resubmittedUpTo(ctx, it, denied, last); err != nil || found {
		t.Errorf("read up to ingress %d = %d, %v, %v; want nothing found past it", last, seq, found, err)
	}
	if seq, found, err := h.gw.resubmittedUpTo(ctx, it, denied, after); err != nil || !found || seq != after {
		t.Errorf("read up to ingress %d = %d, %v, %v; want the message at %d", after, seq, found, err, after)
	}
	h.stop()
}

// TestDryRunReadDeadline: the dry run's read of the ingress stream has a
// deadline; a read that runs out of it is answered internal_error, and
// the operator service goes on answering. The deadline is made one that
// has passed by the time the read starts.
func TestDryRunReadDeadline(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx := context.Background()
	denied := h.deniedSeq(h.send(h.forbiddenBody()))
	it, err := h.gw.deniedMessage(ctx, denied, "tenant_a")
	must(t, err)
	saved := dryRunReadTimeout
	t.Cleanup(func() { dryRunReadTimeout = saved })
	dryRunReadTimeout = time.Nanosecond
	_, _, err = h.gw.resubmitted(ctx, it, denied)
	var d *reason.Denial
	if !errors.As(err, &d) || d.Code != reason.Internal {
		t.Errorf("read past its deadline = %v; want an internal_error denial", err)
	}
	op := newActor(t)
	tok := h.credential(h.issuer, op, "tenant_a", []string{operator.Scope}, time.Hour, "").Reveal()
	sign := func(d []byte) []byte { return op.signr.Sign(operator.SigningInput(d)) }
	if res := h.rawOperatorRequest(tok, operatorRequestData("tenant_a", denied, true, h.clock.Now()), sign); res.Code != string(reason.Internal) {
		t.Errorf("dry run whose read ran out of time = %+v; want internal_error", res)
	}
	dryRunReadTimeout = saved
	if res := h.rawOperatorRequest(tok, operatorRequestData("tenant_a", denied, true, h.clock.Now()), sign); res.Code != "" || res.Route != "deny" {
		t.Errorf("dry run after it = %+v; want deny policy_denied", res)
	}
	h.stop()
}
