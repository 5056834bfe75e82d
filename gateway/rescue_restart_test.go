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
	"github.com/agentgw/agentgw/store"
)

// TestRescuedMessageEndsOnceAcrossRestart: a status-shaped message
// above an ack floor that a stuck message holds (its output stream is
// full) is decided, denied and acknowledged by sequence. After a
// restart it is still in the range rescue reads, with its outcome in the
// ledger; re-emitted past streams.duplicate_window, its denied record
// and audit event were stored a second time. Its acknowledgement is
// recorded in the ledger, so it ends once.
func TestRescuedMessageEndsOnceAcrossRestart(t *testing.T) {
	h := shortWindowHarness(t) // the full capability stream is logged
	h.start()
	ctx := context.Background()
	poison := h.poisonAboveStuckFloor(ctx)
	denials := func() int { return h.deniedRecordsOf(poison) }
	if n := denials(); n != 1 {
		t.Fatalf("before the restart: %d denied records of ingress %d; want 1", n, poison)
	}
	h.stop()
	h.start()
	time.Sleep(6 * time.Second) // three ack_waits: recovery, then six looks of rescue
	if n := denials(); n != 1 {
		t.Errorf("after the restart: %d denied records of ingress %d; want 1", n, poison)
	}
	if n := h.ackPending(ctx); n != 1 {
		t.Errorf("%d messages pending; want only the one the full stream holds", n)
	}
	h.stop()
}

// TestRescuedMessageRetriedAcrossRestart: a status-shaped message whose
// denied record cannot be stored (its stream is full) is not
// acknowledged, and is re-emitted, across a restart and past the
// duplicate window, until the record is stored: then it ends, once.
func TestRescuedMessageRetriedAcrossRestart(t *testing.T) {
	h := shortWindowHarness(t) // the full denied stream is logged
	h.start()
	ctx := context.Background()
	const filler = "agentgw.denied.tenant_a.filler"
	for range 3 {
		_, err := h.js.Publish(ctx, filler, []byte("x"))
		must(t, err)
	}
	poison := h.statusShapedPoison("404", "No Messages")
	denials := func() int { return h.deniedRecordsOf(poison) }
	time.Sleep(4 * time.Second) // re-emitted, past the duplicate window
	if n := denials(); n != 0 {
		t.Fatalf("%d denied records of ingress %d stored in a full stream", n, poison)
	}
	h.stop()
	h.start()
	time.Sleep(3 * time.Second)
	denied, err := h.js.Stream(ctx, StreamDenied)
	must(t, err)
	must(t, denied.Purge(ctx, jetstream.WithPurgeSubject(filler)))
	h.outputFor(poison)
	time.Sleep(3 * time.Second)
	if n := denials(); n != 1 {
		t.Errorf("%d denied records of ingress %d; want 1", n, poison)
	}
	if n := h.ackPending(ctx); n != 0 {
		t.Errorf("%d messages pending; want none", n)
	}
	h.stop()
}

// TestRescuedMessageEndsOnceAcrossOwners: scaled out, the record of a
// rescued message's acknowledgement is journaled: the partition's next
// owner, its ledger rebuilt from the journal, does not re-emit it.
func TestRescuedMessageEndsOnceAcrossOwners(t *testing.T) {
	h := shortWindowHarness(t) // the full capability stream is logged
	a := h.startInstance("a")
	ctx := context.Background()
	poison := h.poisonAboveStuckFloor(ctx)
	denials := func() int { return h.deniedRecordsOf(poison) }
	a.stop(t)
	b := h.startInstance("b")
	time.Sleep(6 * time.Second)
	if n := denials(); n != 1 {
		t.Errorf("after the partition moved: %d denied records of ingress %d; want 1", n, poison)
		for _, l := range strings.Split(h.logs.String(), "\n") {
			if strings.Contains(l, "status") || strings.Contains(l, "sequence") || strings.Contains(l, "re-emit") || strings.Contains(l, "journal") {
				t.Log(l)
			}
		}
	}
	b.stop(t)
}

// TestRescuedMessageEndsOnceScaledOut: scaled out, the journal keeps a
// marker at most scale_out.journal_max_age, but the owner's own ledger
// keeps it for the message's life in the stream: past journal_max_age,
// pruned, the same owner does not re-emit the message.
func TestRescuedMessageEndsOnceScaledOut(t *testing.T) {
	h := shortWindowHarness(t)             // the full capability stream is logged
	h.cfg.Limits.ApprovalTTL = time.Second // journal_max_age then comes to about a minute
	a := h.startInstance("a")
	ctx := context.Background()
	poison := h.poisonAboveStuckFloor(ctx)
	if n := h.deniedRecordsOf(poison); n != 1 {
		t.Fatalf("before: %d denied records of ingress %d; want 1", n, poison)
	}
	h.clock.Advance(3 * time.Minute) // past journal_max_age and the lookback, far from ingress_max_age
	a.gw.scale.mu.Lock()
	var leds []*store.Ledger
	for _, ps := range a.gw.scale.live {
		leds = append(leds, ps.ledger)
	}
	a.gw.scale.mu.Unlock()
	if len(leds) == 0 {
		t.Fatal("instance a holds no partition")
	}
	for _, led := range leds {
		if _, err := led.Prune(h.clock.Now(), 0); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(4 * time.Second) // rescue looks every second
	if n := h.deniedRecordsOf(poison); n != 1 {
		t.Errorf("the same owner, past journal_max_age: %d denied records of ingress %d; want 1", n, poison)
	}
	a.stop(t)
}

// shortWindowHarness is a harness whose duplicate window, freshness and
// ack wait are seconds, so that a test can outlast them, whose output
// streams hold 3 messages, and which sends no decision notices. A full
// output stream is logged as an error, which it allows.
func shortWindowHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.allowErrors = true
	h.cfg.NotifySenders = false
	h.cfg.Limits.MaxTTL = time.Second
	h.cfg.Limits.Skew = time.Second
	h.cfg.Limits.DecisionTTL = time.Second
	h.cfg.Streams.DuplicateWindow = 2 * time.Second
	h.cfg.Streams.MaxMsgsPerOutput = 3
	h.cfg.Consumer.AckWait = 2 * time.Second
	return h
}

// fillCapabilityStream stores 3 messages in the capability stream, as
// many as shortWindowHarness lets it hold.
func (h *harness) fillCapabilityStream(ctx context.Context) {
	for i := range 3 {
		_, err := h.js.Publish(ctx, fmt.Sprintf("agentgw.cap.tenant_a.filler.%d", i), []byte("x"))
		must(h.t, err)
	}
}

// poisonAboveStuckFloor fills the capability stream, sends an allowed
// message that does not fit it (it holds the ack floor), then a
// status-shaped message above it, and waits for that one's output and
// then past the duplicate window. It returns the status-shaped
// message's ingress sequence.
func (h *harness) poisonAboveStuckFloor(ctx context.Context) uint64 {
	h.fillCapabilityStream(ctx)
	h.send(h.body(func(b *envelope.Builder) { b.TTL = time.Second }))
	poison := h.statusShapedPoison("404", "No Messages")
	h.outputFor(poison)
	time.Sleep(4 * time.Second) // past the duplicate window
	return poison
}

// ackPending is the number of ingress messages the gateway's consumer
// has delivered and not had acknowledged.
func (h *harness) ackPending(ctx context.Context) int {
	c, err := h.js.Consumer(ctx, StreamIngress, h.cfg.Consumer.Durable)
	must(h.t, err)
	info, err := c.Info(ctx)
	must(h.t, err)
	return info.NumAckPending
}

// deniedRecordsOf counts the denied records of ingress sequence seq.
func (h *harness) deniedRecordsOf(seq uint64) (n int) {
	for _, m := range h.all(StreamDenied) {
		if m.Header.Get(header.IngressSeq) == fmt.Sprint(seq) {
			n++
		}
	}
	return n
}
