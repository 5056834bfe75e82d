package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/subjects/reason"
)

// crashHolding leaves n ingress messages of consumer name delivered and
// never acknowledged, the state a gateway killed after fetching them
// leaves behind: it takes delivery on the gateway's own durable consumer
// and drops the messages, fetching at most the consumer's MaxRequestBatch
// at a time.
func crashHolding(t *testing.T, js jetstream.JetStream, name string, n int) {
	t.Helper()
	c, err := js.Consumer(context.Background(), StreamIngress, name)
	must(t, err)
	per := n
	if m := c.CachedInfo().Config.MaxRequestBatch; m > 0 {
		per = min(per, m)
	}
	got := 0
	for got < n {
		b, err := c.Fetch(min(n-got, per), jetstream.FetchMaxWait(5*time.Second))
		must(t, err)
		k := 0
		for range b.Messages() {
			k++
		}
		if k == 0 {
			t.Fatalf("the crashed gateway's fetch took %d of %d messages", got, n)
		}
		got += k
	}
}

// TestInFlightDecidedFirstAfterCrash: messages a gateway had taken
// delivery of when it died are decided by the next gateway before any
// message published after the crash, and as of when they were delivered.
// An exact copy of an in-flight message, published after the crash, is
// its replay (the original is delivered), and a message that expired
// while the gateway was down, but was fresh when it was delivered, is
// delivered. Their dead deliveries are acknowledged by sequence, never
// redelivered: each message has exactly one output. Both
// for a single gateway restarting and for a scaled-out partition taken
// over by another instance (with fair_tenants: the tenant's consumer).
func TestInFlightDecidedFirstAfterCrash(t *testing.T) {
	for _, scaled := range []bool{false, true} {
		name := "single"
		if scaled {
			name = "scale-out"
		}
		t.Run(name, func(t *testing.T) { testInFlightFirst(t, scaled) })
	}
}

func testInFlightFirst(t *testing.T, scaled bool) {
	h := newHarness(t)
	// Real time: the decision time of a recovered message comes from the
	// server's delivery time. ack_wait is long enough that the dead
	// deliveries come back only well after the restart, and a loaded
	// machine's slow takeover stays inside it (a recovery later than
	// ack_wait after the delivery judges at the clock, by design).
	h.opts = append(h.opts, WithClock(time.Now))
	h.cfg.Limits.Skew = 0
	h.cfg.Consumer.AckWait = 15 * time.Second
	var stats func() *Stats
	start := func(name string) {
		h.start()
		<-h.gw.Ready()
		stats = h.gw.Stats
	}
	stop := h.stop
	if scaled {
		h.cfg.Consumer.Partitions = 2
		h.cfg.Consumer.FairTenants = true
		var in *instance
		start = func(name string) {
			in = h.startInstance(name)
			waitFor(t, func() bool { return in.held() == 2 })
			stats = in.gw.Stats
		}
		stop = func() { in.stop(t) }
	}
	start("a")
	stop()

	h.clock.now = time.Now()
	orig := h.body(nil)
	const shortTTL = 3 * time.Second
	short := h.body(func(b *envelope.Builder) { b.TTL = shortTTL })
	seqOrig, seqShort := h.send(orig), h.send(short)
	cons := h.cfg.Consumer.Durable
	if scaled {
		// The agent's partition, from the subject its messages are
		// stored under: agentgw.in.<p>.<tenant>.<agent>.
		var p int
		subj := h.all(StreamIngress)[seqOrig-1].Subject
		if _, err := fmt.Sscanf(strings.TrimPrefix(subj, "agentgw.in."), "%d.", &p); err != nil {
			t.Fatalf("stored subject %q: %v", subj, err)
		}
		cons = tenantConsumerName(h.cfg.Consumer, p, "tenant_a")
	}
	crashHolding(t, h.js, cons, 2)
	// The restarted gateway judges short as of this delivery: it must
	// have been fresh then for the test to mean anything.
	held, err := h.js.Consumer(context.Background(), StreamIngress, cons)
	must(t, err)
	ci, err := held.Info(context.Background())
	must(t, err)
	if expired := h.clock.now.Add(shortTTL); ci.Delivered.Last == nil || !ci.Delivered.Last.Before(expired) {
		t.Fatalf("the short-lived message was delivered at %v, after it expired at %s; the schedule needs a faster machine", ci.Delivered.Last, expired)
	}

	// Down until short has expired, then the copy of orig comes in.
	time.Sleep(time.Until(h.clock.now.Add(shortTTL + 500*time.Millisecond)))
	copyHdr := h.signed(h.agent, h.agent.token, orig)
	seqCopy := h.publish(h.ingress(h.agent, "tenant_a"), orig, copyHdr)

	start("b")
	for _, tc := range []struct {
		name       string
		seq        uint64
		route, why string
	}{
		{"original", seqOrig, "allow", ""},
		{"short-lived", seqShort, "allow", ""},
		{"copy", seqCopy, "deny", string(reason.ReplayDetected)},
	} {
		m := h.outputFor(tc.seq)
		if got, why := m.Header.Get(header.Route), m.Header.Get(header.Reason); got != tc.route || why != tc.why {
			t.Errorf("%s (ingress %d): %s %s; want %s %s", tc.name, tc.seq, got, why, tc.route, tc.why)
		}
	}
	if n := stats().Recovered.Load(); n != 2 {
		t.Errorf("Stats().Recovered = %d; want 2", n)
	}

	// The dead deliveries are acknowledged by sequence once the recovered
	// messages' outputs are stored: they never come back (a redelivery
	// would be answered from the ledger and counted as re-emitted).
	c := held
	deadline := time.Now().Add(h.cfg.Consumer.AckWait + 15*time.Second)
	for {
		info, err := c.Info(context.Background())
		must(t, err)
		if info.NumAckPending == 0 && info.NumPending == 0 && info.AckFloor.Stream >= seqCopy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingress not acknowledged: %d pending, %d unacknowledged, ack floor %d", info.NumPending, info.NumAckPending, info.AckFloor.Stream)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := stats().Reemitted.Load(); n != 0 {
		t.Errorf("Stats().Reemitted = %d; want 0 (the dead deliveries acknowledged, not redelivered)", n)
	}
	if n := stats().Decided.Load(); n != 3 {
		t.Errorf("Stats().Decided = %d; want 3 (each message once)", n)
	}
	r, err := invariant.Wait(context.Background(), h.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
	if n := len(h.all(StreamCap)); n != 2 {
		t.Errorf("capability outputs = %d; want 2", n)
	}
}

// TestRecoveredNow: the decision time of recovered messages is the
// latest last delivery of the partition's consumers, on the gateway's
// clock, at most ack_wait back.
func TestRecoveredNow(t *testing.T) {
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	server := clock.Add(-time.Hour) // the server's clock is an hour behind: it must not matter
	at := func(age time.Duration) *time.Time { d := server.Add(-age); return &d }
	info := func(last *time.Time) *jetstream.ConsumerInfo {
		return &jetstream.ConsumerInfo{TimeStamp: server, Delivered: jetstream.SequenceInfo{Last: last}}
	}
	for _, tc := range []struct {
		name  string
		infos []*jetstream.ConsumerInfo
		want  time.Time
	}{
		{"none", nil, clock},
		{"never-delivered", []*jetstream.ConsumerInfo{info(nil)}, clock},
		{"one", []*jetstream.ConsumerInfo{info(at(3 * time.Second))}, clock.Add(-3 * time.Second)},
		{"latest-wins", []*jetstream.ConsumerInfo{info(at(9 * time.Second)), info(at(2 * time.Second))}, clock.Add(-2 * time.Second)},
		{"capped-at-ack-wait", []*jetstream.ConsumerInfo{info(at(time.Hour))}, clock.Add(-30 * time.Second)},
		{"future-is-now", []*jetstream.ConsumerInfo{info(at(-time.Second))}, clock},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := recoveredNow(clock, tc.infos, 30*time.Second); !got.Equal(tc.want) {
				t.Errorf("recoveredNow = %s; want %s", got, tc.want)
			}
		})
	}
}

// TestCrashWithEverySlotInFlight: a gateway that died holding as many
// deliveries as the consumer allows unacknowledged (MaxAckPending) leaves
// the consumer unable to deliver anything until they are answered. The
// restarted gateway decides them and acknowledges their dead deliveries,
// so a message published after the restart is decided without waiting
// for ack_wait (an hour here: the test would time out first).
func TestCrashWithEverySlotInFlight(t *testing.T) {
	h := newHarness(t)
	h.opts = append(h.opts, WithClock(time.Now))
	h.cfg.Consumer.Batch = 4
	h.cfg.Consumer.AckWait = time.Hour
	h.start()
	<-h.gw.Ready()
	h.stop()

	h.clock.now = time.Now()
	cons, err := h.js.Consumer(context.Background(), "AGENTGW_IN", h.cfg.Consumer.Durable)
	if err != nil {
		t.Fatal(err)
	}
	slots := cons.CachedInfo().Config.MaxAckPending
	if slots < 2*h.cfg.Consumer.Batch {
		t.Fatalf("MaxAckPending = %d; want a few batches", slots)
	}
	var held []uint64
	for range slots {
		held = append(held, h.send(h.body(nil)))
	}
	crashHolding(t, h.js, h.cfg.Consumer.Durable, slots)

	h.start()
	<-h.gw.Ready()
	for _, seq := range held {
		if got := h.outputFor(seq).Header.Get(header.Route); got != "allow" {
			t.Errorf("in-flight ingress %d: %s; want allow", seq, got)
		}
	}
	after := h.send(h.body(nil))
	if got := h.outputFor(after).Header.Get(header.Route); got != "allow" {
		t.Errorf("message published after the restart (ingress %d): %s; want allow", after, got)
	}
	if n := h.gw.Stats().Decided.Load(); n != uint64(slots+1) {
		t.Errorf("Stats().Decided = %d; want %d (each message once)", n, slots+1)
	}
	r, err := invariant.Wait(context.Background(), h.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
}
