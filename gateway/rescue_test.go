package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/subjects/reason"
)

// statusShapedPoison publishes, as any user allowed on an ingress
// subject may (no credential, no signature), an empty body with the
// headers of a server status message.
func (h *harness) statusShapedPoison(status, descr string) uint64 {
	m := nats.NewMsg(h.ingress(h.agent, "tenant_a"))
	m.Header.Set("Status", status)
	m.Header.Set("Description", descr)
	ack, err := h.js.PublishMsg(context.Background(), m)
	must(h.t, err)
	return ack.Sequence
}

// TestStatusShapedMessagesDecided: nats.go takes a delivered message with
// no data and a Status header for a server status. "409 Consumer Deleted"
// stopped the partition's iterator, so nothing more was decided; "404",
// "408" or "100" ones were swallowed on every delivery and held their
// MaxAckPending slots for ever. Each is now read by sequence and denied,
// and the messages after it are decided.
func TestStatusShapedMessagesDecided(t *testing.T) {
	for _, tc := range []struct {
		name, status, descr string
		n                   int
	}{
		{"409 consumer deleted", "409", "Consumer Deleted", 1},
		{"400 bad request", "400", "Bad Request", 1},
		{"404 and friends filling MaxAckPending", "404", "No Messages", 20},
		{"heartbeats", "100", "Idle Heartbeat", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.allowErrors = true     // the stopped iterator is logged
			h.cfg.Consumer.Batch = 4 // MaxAckPending 20
			h.cfg.Consumer.AckWait = 2 * time.Second
			h.start()
			h.outputFor(h.send(h.body(nil)))
			var poisons []uint64
			for range tc.n {
				poisons = append(poisons, h.statusShapedPoison(tc.status, tc.descr))
			}
			h.outputFor(h.send(h.body(nil)))
			for _, seq := range poisons {
				out := h.outputFor(seq)
				if got := reason.Code(out.Header.Get("Agentgw-Reason")); got == "" {
					t.Errorf("status-shaped message %d went to %s; want a denial", seq, out.Subject)
				}
			}
			h.invariantHolds()
			h.stop()
		})
	}
}

// TestRescuedMessageNotQueuedAgain: a status-shaped message above an ack
// floor that an earlier pending message holds stays in the range rescue
// reads once it was decided and acknowledged by sequence. It was read
// and queued again every ack_wait, its outcome re-emitted each time
// (and, past the duplicate window, stored again). Once acknowledged it
// is left alone.
func TestRescuedMessageNotQueuedAgain(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true // the full capability stream is logged
	h.cfg.NotifySenders = false
	h.cfg.Streams.MaxMsgsPerOutput = 3
	h.cfg.Consumer.AckWait = 2 * time.Second
	h.start()
	ctx := context.Background()
	// A full capability stream: an allowed message cannot be published,
	// is not acknowledged, and holds the ack floor.
	for i := range 3 {
		_, err := h.js.Publish(ctx, fmt.Sprintf("agentgw.cap.tenant_a.filler.%d", i), []byte("x"))
		must(t, err)
	}
	h.send(h.body(nil))
	poison := h.statusShapedPoison("404", "No Messages")
	if out := h.outputFor(poison); !strings.HasPrefix(out.Subject, "agentgw.denied.") {
		t.Fatalf("status-shaped message went to %s", out.Subject)
	}
	time.Sleep(7 * time.Second) // three ack_waits, six looks
	c, err := h.js.Consumer(ctx, StreamIngress, h.cfg.Consumer.Durable)
	must(t, err)
	info, err := c.Info(ctx)
	must(t, err)
	if info.NumAckPending != 1 {
		t.Fatalf("%d messages pending; want only the one the full stream holds", info.NumAckPending)
	}
	if n := strings.Count(h.logs.String(), fmt.Sprintf(`"ingress_seq":%d,"consumer"`, poison)); n != 1 {
		t.Errorf("the status-shaped message was read by sequence and queued %d times; want once", n)
	}
	h.stop()
}

// TestStatusShapedBehindOtherTenantsRescued: with fair tenants, a
// tenant's status-shaped message sits behind other tenants' traffic in
// the ingress stream's sequences. Rescue reads the tenant consumer's
// own messages above its ack floor, not a window of stream sequences:
// one behind 40 of another tenant's (twice MaxAckPending here) is
// decided, and 20 of them (MaxAckPending) do not stop the tenant's
// queue: a valid message after them is decided.
func TestStatusShapedBehindOtherTenantsRescued(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true
	h.cfg.Consumer.FairTenants = true
	h.cfg.Consumer.Batch = 4 // MaxAckPending 20
	h.cfg.Consumer.AckWait = 2 * time.Second
	h.start()
	h.outputFor(h.send(h.body(nil)))
	ctx := context.Background()
	c, err := h.js.Consumer(ctx, StreamIngress, tenantConsumerName(h.cfg.Consumer, 0, "tenant_a"))
	must(t, err)
	waitFor(t, func() bool { i, err := c.Info(ctx); return err == nil && i.NumAckPending == 0 })
	badSig := h.tenantBBadSignatures()
	var last uint64
	for range 40 {
		last = badSig()
	}
	h.outputFor(last)
	if out := h.outputFor(h.statusShapedPoison("404", "No Messages")); out.Header.Get("Agentgw-Reason") == "" {
		t.Fatalf("the status-shaped message went to %s; want a denial", out.Subject)
	}
	for range 20 {
		h.statusShapedPoison("404", "No Messages")
	}
	valid, start := h.send(h.body(nil)), time.Now()
	for h.find(StreamCap, "Agentgw-Ingress-Seq", fmt.Sprint(valid)) == nil {
		if time.Since(start) > time.Minute {
			t.Fatalf("valid message %d not decided in a minute: tenant_a's queue is stopped", valid)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("the valid message was decided %s after it was sent", time.Since(start).Round(time.Millisecond))
}
