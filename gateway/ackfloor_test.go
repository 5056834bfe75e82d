package gateway

import (
	"testing"

	"github.com/agentgw/agentgw/subjects/reason"
)

// TestDeliveryAboveItsConsumersFloorIsDecided: a delivery with no
// recorded outcome is taken for a stale copy of an acknowledged message
// only at or below the ack floor of the consumer that delivered it, not
// below the floor the outcomes were pruned to. In a cluster an idle
// consumer answers from its own replica of the stream, which may not
// hold yet a message the stream leader already counted: the prune floor
// (the stream's last sequence for an idle consumer) then passes a
// message its consumer has still to deliver, and taking that delivery
// for a stale one acknowledged it with no output and no decision.
func TestDeliveryAboveItsConsumersFloorIsDecided(t *testing.T) {
	h := newHarness(t)
	g, err := New(h.cfg, WithClock(h.clock.Now))
	must(t, err)
	defer g.Close()
	ps := &partState{ledger: g.ledger}
	const consumer, floor, prune = "agentgw", 90, 100
	// The prune loop read the consumer idle at ack floor 90 while the
	// stream leader reported 100, and pruned outcomes to 100.
	g.noteAckFloor(consumer, floor)
	must(t, g.ledger.PruneOutcomes(prune))
	for _, tc := range []struct {
		name  string
		seq   uint64
		stale bool
	}{
		{"acknowledged", floor, true},
		{"not-yet-delivered", floor + 9, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := g.newBatch(ps)
			defer b.Close()
			it := &item{seq: tc.seq, consumer: consumer}
			it.deny(reason.Deny(reason.BadSignature, "decided by a stateless gate"))
			must(t, g.ledgerGate(b, g.rules.Load().cat, it, h.clock.Now()))
			if it.reemit != tc.stale {
				t.Errorf("ledgerGate(seq %d, consumer floor %d, pruned to %d): taken for a stale delivery = %v; want %v", tc.seq, floor, prune, it.reemit, tc.stale)
			}
		})
	}
}
