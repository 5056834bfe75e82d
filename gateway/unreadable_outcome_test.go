package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/internal/invariant"
)

// TestUnreadableOutcomeSetAside: a message whose recorded outcome no
// longer decodes is handed back alone, undecided, every time it is
// delivered (its outputs may be stored already: a new decision could end
// it twice), and says so in the log and in agentgw_ledger_errors_total;
// the messages delivered with it are decided without it.
func TestUnreadableOutcomeSetAside(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true // the unreadable record is logged as an error
	ctx := context.Background()
	must(t, EnsureStreams(ctx, h.js, h.cfg.Streams, h.cfg.Consumer.Partitions))
	bad := h.send(h.body(nil))
	var healthy []uint64
	for range 5 {
		healthy = append(healthy, h.send(h.body(nil)))
	}
	h.beforeRun = func(gw *Gateway) {
		b := gw.ledger.NewBatch()
		defer b.Close()
		must(t, b.PutOutcome(bad, []byte{outcomeV1, 2})) // two outputs, none there
		must(t, b.Commit())
	}
	h.start()
	for _, seq := range healthy {
		if out := h.outputFor(seq); out.Header.Get(header.Route) != "allow" {
			t.Fatalf("ingress %d: route %q; want allow", seq, out.Header.Get(header.Route))
		}
	}
	// Handed back, redelivered and set aside again.
	mark := fmt.Sprintf(`"ingress_seq":%d`, bad)
	waitFor(t, func() bool {
		n := 0
		for _, l := range strings.Split(h.logs.String(), "\n") {
			if strings.Contains(l, mark) && strings.Contains(l, "ledger record cannot be read") && strings.Contains(l, `"level":"error"`) {
				n++
			}
		}
		return n >= 2
	})
	if n := counterValue(t, h.gw.Metrics().LedgerErrors); n < 2 {
		t.Errorf("agentgw_ledger_errors_total = %v; want each unreadable lookup counted", n)
	}
	r, err := invariant.Collect(ctx, h.js)
	must(t, err)
	if len(r.Lost) != 1 || r.Lost[0] != bad || len(r.Duplicated) != 0 || len(r.Orphans) != 0 {
		t.Fatalf("want only ingress %d without an output: %s, lost %v", bad, r, r.Lost)
	}
	for _, ev := range h.auditEvents() {
		if ev.IngressSeq == bad {
			t.Fatalf("ingress %d has an audit event: it was decided again", bad)
		}
	}
	c, err := h.js.Consumer(ctx, StreamIngress, h.cfg.Consumer.Durable)
	must(t, err)
	info, err := c.Info(ctx)
	must(t, err)
	if info.AckFloor.Stream >= bad || info.NumAckPending == 0 {
		t.Errorf("consumer ack floor %d, %d pending; want ingress %d unacknowledged", info.AckFloor.Stream, info.NumAckPending, bad)
	}
	if strings.Contains(h.logs.String(), "batch failed") {
		t.Errorf("a batch failed; want the unreadable message handed back alone")
	}
}
