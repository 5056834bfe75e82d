package faults

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestKill9InFlightDecidedFirst kills the gateway with SIGKILL while it
// holds delivered, unacknowledged messages, under load, with the
// production ack_wait (30 s): the messages in flight then come back by
// redelivery only long after the restart. The restarted gateway must
// decide them first, in stream order, as of when they were delivered:
//
//   - an exact copy of an in-flight message, published after the crash,
//     is denied replay_detected and its original is delivered;
//   - an in-flight message whose expires_at passed while the gateway was
//     down (skew 1 s) is still delivered: the restarted gateway judges it
//     as of the consumer's last delivery before the restart;
//   - every message ends in exactly one output (the checker), the dead
//     deliveries answered from the ledger when they come back.
//
// Besides what the gateway itself held at the kill (pauseHolding), the
// test takes delivery of the two watched messages on the gateway's own
// consumer and drops them, as a gateway killed a moment later would have:
// that is what makes them certainly in flight. The time from the restart
// (the process started) to the output of the last in-flight message is
// recorded in the fault summary.
func TestKill9InFlightDecidedFirst(t *testing.T) {
	t.Parallel()
	start := time.Now()
	rng := newRand(t)
	e := newEnv(t, envOptions{ackWait: 30 * time.Second, skew: time.Second})
	e.startGateway()
	l := newLoad(t, e, 150)
	l.start()
	defer l.stop()
	l.waitSent(100, 30*time.Second)
	faults := map[string]int{}
	type watched struct{ orig, short, copy uint64 }
	var rounds []watched
	for range 2 {
		time.Sleep(jitter(rng, 300*time.Millisecond, 1500*time.Millisecond))
		// The gateway must have caught up with the load (after the first
		// round, with what was published while it was down): the
		// messages it has not yet taken would otherwise lie between its
		// last delivery and the watched ones, and takeDelivery, which
		// leaves what it takes unacknowledged, would run into
		// MaxAckPending before it reached them.
		caughtUp(t, e, 60*time.Second)
		pauseHolding(t, e, rng)
		must(t, e.gw.Kill())
		faults["kill9_gateway_holding"]++

		// The watched messages, then the crashed gateway's deliveries.
		now := time.Now()
		const shortTTL = 3 * time.Second
		orig := l.sendWatched(t, now, 0, rng)
		short := l.sendWatched(t, now, shortTTL, rng)
		lastDelivery := takeDelivery(t, e, short.seq)
		// The restarted gateway judges short as of the consumer's last
		// delivery: it must have been fresh then for the test to mean
		// anything (a machine slow enough to break this fails here, not
		// as a wrong decision).
		if expired := now.Add(shortTTL + e.opts.skew); !lastDelivery.Before(expired) {
			t.Fatalf("round %d: the short-lived message was delivered %s after it expired; the schedule needs a faster machine", len(rounds), lastDelivery.Sub(expired))
		}
		inFlight := e.inFlight(t)

		// Down until short has expired past the skew; then the copy.
		time.Sleep(time.Until(now.Add(shortTTL + e.opts.skew + 500*time.Millisecond)))
		cp := nats.NewMsg(orig.msg.Subject)
		cp.Data = orig.msg.Data
		for k, v := range orig.msg.Header {
			if k != header.MsgID {
				cp.Header[k] = v
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		seq, ok := l.publish(ctx, cp, false)
		cancel()
		if !ok {
			t.Fatal("the copy of the in-flight message was not stored")
		}
		l.record(true, sent{seq: seq, msgID: orig.id, kind: kReplay})

		restart := time.Now()
		e.startGateway()
		took := e.awaitDecided(t, inFlight, restart, 60*time.Second)
		e.recoveries = append(e.recoveries, recovery{inFlight: len(inFlight), took: took, since: "the restart"})
		t.Logf("restart: %d messages in flight at the kill, the last decided %s after the restart", len(inFlight), took.Round(time.Millisecond))
		rounds = append(rounds, watched{orig.seq, short.seq, seq})
	}
	time.Sleep(time.Second)
	l.stop()
	settle(t, e, 120*time.Second)

	outs := e.firstOutputs(t)
	for i, w := range rounds {
		for _, c := range []struct {
			name       string
			seq        uint64
			route, why string
		}{
			{"in-flight original", w.orig, "allow", ""},
			{"in-flight message expired while down", w.short, "allow", ""},
			{"copy published after the crash", w.copy, "deny", string(reason.ReplayDetected)},
		} {
			o, ok := outs[c.seq]
			if !ok {
				t.Errorf("round %d: %s (ingress %d): no output", i, c.name, c.seq)
				continue
			}
			if o.route != c.route || o.reason != c.why {
				t.Errorf("round %d: %s (ingress %d): %s %s; want %s %s", i, c.name, c.seq, o.route, o.reason, c.route, c.why)
			}
		}
	}
	r := check(t, e, l)
	report(t, r, faults, start)
}

// watchedMsg is a message the test follows through a crash.
type watchedMsg struct {
	msg *nats.Msg
	id  string
	seq uint64
}

// sendWatched publishes a valid plain read issued at now, living ttl (0:
// the maximum), and records it as the load does.
func (l *load) sendWatched(t *testing.T, now time.Time, ttl time.Duration, rng *mrand.Rand) watchedMsg {
	t.Helper()
	m, id, err := l.build(kPlain, now, ttl, rng)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seq, ok := l.publish(ctx, m, true)
	if !ok {
		t.Fatalf("watched message %s not stored", id)
	}
	l.record(true, sent{seq: seq, msgID: id, kind: kPlain})
	return watchedMsg{msg: m, id: id, seq: seq}
}

// takeDelivery pulls from the gateway's durable consumer, without
// acknowledging, exactly the messages up to seq: the state a gateway
// killed right after fetching them leaves. It asks for no message past
// seq (one partition: every ingress sequence is the consumer's), so the
// consumer's last delivery is that of seq, and returns its time.
func takeDelivery(t *testing.T, e *env, seq uint64) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, gateway.StreamIngress, gateway.DefaultConfig().Consumer.Durable)
	must(t, err)
	for {
		info, err := c.Info(ctx)
		must(t, err)
		if info.Delivered.Stream >= seq {
			if info.Delivered.Last == nil {
				t.Fatal("the gateway's consumer reports no delivery time")
			}
			return *info.Delivered.Last
		}
		b, err := c.FetchNoWait(min(e.opts.batch, int(seq-info.Delivered.Stream)))
		must(t, err)
		for range b.Messages() {
		}
		if ctx.Err() != nil {
			t.Fatalf("could not take delivery up to ingress %d (delivered %d, %d unacknowledged)", seq, info.Delivered.Stream, info.NumAckPending)
		}
	}
}

// caughtUp waits until the gateway's consumers have fewer than a batch of
// messages not yet delivered.
func caughtUp(t *testing.T, e *env, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		info, err := e.consumerInfo(ctx)
		cancel()
		must(t, err)
		if info.NumPending < uint64(e.opts.batch) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not catch up with the load within %s (%d messages not yet delivered)", within, info.NumPending)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inFlight returns the ingress sequences in the gateway consumer's
// unacknowledged range, (ack floor, last delivered], that have no output
// yet: the messages a restarted gateway has to recover.
func (e *env) inFlight(t *testing.T) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := e.consumerInfo(ctx)
	must(t, err)
	outs := e.firstOutputs(t)
	var seqs []uint64
	for s := info.AckFloor.Stream + 1; s <= info.Delivered.Stream; s++ {
		if _, done := outs[s]; !done {
			seqs = append(seqs, s)
		}
	}
	return seqs
}

// awaitDecided waits until every sequence of seqs has an output and
// returns the time from restart to the last of them stored.
func (e *env) awaitDecided(t *testing.T, seqs []uint64, restart time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		outs := e.firstOutputs(t)
		var last time.Time
		missing := 0
		for _, s := range seqs {
			o, ok := outs[s]
			if !ok {
				missing++
				continue
			}
			if o.at.After(last) {
				last = o.at
			}
		}
		if missing == 0 {
			return max(last.Sub(restart), 0)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d in-flight messages without an output %s after the restart", missing, len(seqs), timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// firstOut is the first terminal output of an ingress message.
type firstOut struct {
	route, reason string
	at            time.Time // when the output stream stored it
}

// firstOutputs maps ingress sequences to their first terminal output
// (decision notices and expiries of held requests are not one).
func (e *env) firstOutputs(t *testing.T) map[uint64]firstOut {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[uint64]firstOut{}
	for _, name := range invariant.Terminal {
		msgs, err := readStream(ctx, e.js, name)
		must(t, err)
		for _, m := range msgs {
			if m.hdr.Get(notice.Header) != "" || strings.HasSuffix(m.hdr.Get(header.MsgID), ".expired") {
				continue
			}
			seq, err := strconv.ParseUint(m.hdr.Get(header.IngressSeq), 10, 64)
			if err != nil {
				continue
			}
			if o, ok := out[seq]; !ok || m.at.Before(o.at) {
				out[seq] = firstOut{route: m.hdr.Get(header.Route), reason: m.hdr.Get(header.Reason), at: m.at}
			}
		}
	}
	return out
}

// recovery is one fault's in-flight recovery, for the summary: how many
// messages were in flight and how long after since (the restart, or the
// kill of a scaled-out instance) the last of them was decided.
type recovery struct {
	inFlight int
	took     time.Duration
	since    string
}

func (r recovery) String() string {
	return fmt.Sprintf("%d in flight, last decided %s after %s", r.inFlight, r.took.Round(time.Millisecond), r.since)
}

// inFlightAll returns the ingress sequences without an output yet in the
// unacknowledged range of every ingress consumer, each read with its own
// filter; a partition's catch-all leaves out what its tenant consumers
// own (fair_tenants).
func (e *env) inFlightAll(t *testing.T) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := e.js.Stream(ctx, gateway.StreamIngress)
	must(t, err)
	var infos []*jetstream.ConsumerInfo
	lister := st.ListConsumers(ctx)
	for info := range lister.Info() {
		infos = append(infos, info)
	}
	must(t, lister.Err())
	// Read by sequence: a consumer on the ingress stream, even an
	// ordered one, would count in settle's view of the gateway's.
	subj := map[uint64]string{}
	subject := func(seq uint64) (string, bool) {
		if s, ok := subj[seq]; ok {
			return s, s != ""
		}
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			subj[seq] = ""
			return "", false
		}
		subj[seq] = m.Subject
		return m.Subject, true
	}
	outs := e.firstOutputs(t)
	seen := map[uint64]bool{}
	var seqs []uint64
	for _, info := range infos {
		if info.NumAckPending == 0 {
			continue
		}
		filter := info.Config.FilterSubject
		var others []string // the tenant consumers' filters, for a catch-all
		for _, o := range infos {
			f := o.Config.FilterSubject
			if o.Name != info.Name && strings.Contains(o.Name, "-t-") && subjects.Matches(filter, f) {
				others = append(others, f)
			}
		}
		for s := info.AckFloor.Stream + 1; s <= info.Delivered.Stream; s++ {
			if seen[s] {
				continue
			}
			sub, ok := subject(s)
			if !ok || !subjects.Matches(filter, sub) {
				continue
			}
			owned := false
			for _, f := range others {
				owned = owned || subjects.Matches(f, sub)
			}
			if _, done := outs[s]; done || owned {
				continue
			}
			seen[s] = true
			seqs = append(seqs, s)
		}
	}
	return seqs
}
