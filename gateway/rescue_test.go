package gateway

import (
	"context"
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
