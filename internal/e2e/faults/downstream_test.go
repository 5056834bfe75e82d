package faults

import (
	"context"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/header"
)

// TestFullDownstream fills the capability and audit streams, which the
// gateway creates with max_msgs_per_output and discard new: a full stream
// refuses the publish instead of dropping old messages. The gateway must
// push back: keep the ingress messages whose outputs were refused
// unacknowledged (redelivering them), drop nothing, and — once an
// operator raises the limit — deliver each exactly once. The held-back
// messages expire while they wait; their recorded decision (allow) is
// re-emitted, never re-decided into message_expired.
func TestFullDownstream(t *testing.T) {
	t.Parallel()
	start := time.Now()
	const limit = 20
	e := newEnv(t, envOptions{maxMsgsPerOutput: limit, skew: time.Second})
	e.startGateway()
	l := newLoad(t, e, 1)
	rng := mrand.New(mrand.NewPCG(1, 2))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Fill: limit plain requests, each one capability message, and the
	// audit stream topped up to its limit.
	var first []uint64
	for range limit {
		m, id, err := l.build(kPlain, time.Now(), 0, rng)
		must(t, err)
		seq, ok := l.publish(ctx, m, true)
		if !ok {
			t.Fatal("publish failed")
		}
		l.record(true, sent{seq: seq, msgID: id, kind: kPlain})
		first = append(first, seq)
	}
	waitOutputs(t, e, first, 30*time.Second)
	fillAudit(ctx, t, e, first[len(first)-1], limit)

	// Overflow: sealed refunds that expire (3 s TTL + 1 s skew) while
	// they wait.
	var held []uint64
	for range 10 {
		m, id, err := l.build(kSealed, time.Now(), 3*time.Second, rng)
		must(t, err)
		seq, ok := l.publish(ctx, m, true)
		if !ok {
			t.Fatal("publish failed")
		}
		l.record(true, sent{seq: seq, msgID: id, kind: kSealed})
		held = append(held, seq)
	}
	heldAt := time.Now()

	// While full: nothing of the overflow is stored or acknowledged, and
	// JetStream keeps redelivering it.
	time.Sleep(5 * time.Second)
	info, err := e.consumerInfo(ctx)
	must(t, err)
	if info.AckFloor.Stream != first[len(first)-1] {
		t.Errorf("ingress ack floor = %d while the capability stream is full; want %d (nothing after it acknowledged)", info.AckFloor.Stream, first[len(first)-1])
	}
	if got := info.NumAckPending + int(info.NumPending); got != len(held) {
		t.Errorf("unacknowledged ingress messages = %d (%s); want the %d held back", got, describe(info), len(held))
	}
	if info.NumRedelivered == 0 {
		t.Errorf("no redelivery while the downstream is full (%s): the gateway is not retrying", describe(info))
	}
	for _, name := range []string{gateway.StreamCap, gateway.StreamAudit} {
		if n := streamMsgs(ctx, t, e, name); n != limit {
			t.Errorf("%s holds %d messages; want %d (full, discard new)", name, n, limit)
		}
	}
	if n := streamMsgs(ctx, t, e, gateway.StreamDenied); n != 0 {
		t.Errorf("%s holds %d messages; want 0 (nothing was denied)", gateway.StreamDenied, n)
	}
	t.Logf("while full: %s", describe(info))

	// Let the held-back envelopes expire, then raise the limit as an
	// operator would (nats stream edit), without restarting the gateway.
	time.Sleep(time.Until(heldAt.Add(5 * time.Second)))
	// The reply stream is full too: it holds the first requests' decision
	// notices, and the overflow's are outputs like the deliveries.
	for _, name := range []string{gateway.StreamCap, gateway.StreamAudit, gateway.StreamReply} {
		raiseLimit(ctx, t, e.js, name)
	}
	outs := waitOutputs(t, e, held, 60*time.Second)
	for _, seq := range held {
		o := outs[seq]
		if o.hdr.Get(header.Route) != "allow" {
			t.Errorf("ingress %d: %s %s after the limit was raised; want the recorded allow", seq, o.hdr.Get(header.Route), o.hdr.Get(header.Reason))
		}
	}
	settle(t, e, 60*time.Second)
	r := check(t, e, l)
	if n := streamMsgs(ctx, t, e, gateway.StreamCap); n != uint64(limit+len(held)) {
		t.Errorf("%s holds %d messages; want %d, each once", gateway.StreamCap, n, limit+len(held))
	}
	report(t, r, map[string]int{"full_downstream": 1}, start)
}

func streamMsgs(ctx context.Context, t testing.TB, e *env, name string) uint64 {
	t.Helper()
	s, err := e.js.Stream(ctx, name)
	must(t, err)
	info, err := s.Info(ctx)
	must(t, err)
	return info.State.Msgs
}

// fillAudit waits until every ingress message up to seq is acknowledged,
// then tops the audit stream up to limit messages with events for no
// ingress message. The gateway writes the events of a batch and tenant as
// one message, so its own traffic does not fill the stream at a point the
// test knows.
func fillAudit(ctx context.Context, t testing.TB, e *env, seq, limit uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := e.consumerInfo(ctx)
		must(t, err)
		if info.AckFloor.Stream >= seq {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingress %d not acknowledged in 30 s (%s)", seq, describe(info))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for streamMsgs(ctx, t, e, gateway.StreamAudit) < limit {
		ev := audit.Event{Time: time.Now().UTC(), Kind: audit.KindDecision, Tenant: "filler", Detail: "test filler"}
		if _, err := e.js.Publish(ctx, "agentgw.audit.filler", ev.AppendJSON(nil)); err != nil {
			t.Fatalf("filling the audit stream: %v", err)
		}
	}
}

// raiseLimit lifts a stream's message limit in place.
func raiseLimit(ctx context.Context, t testing.TB, js jetstream.JetStream, name string) {
	t.Helper()
	s, err := js.Stream(ctx, name)
	must(t, err)
	info, err := s.Info(ctx)
	must(t, err)
	cfg := info.Config
	cfg.MaxMsgs = -1
	_, err = js.UpdateStream(ctx, cfg)
	must(t, err)
}
