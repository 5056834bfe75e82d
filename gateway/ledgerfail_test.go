package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/agentgw/agentgw/internal/invariant"
)

// TestLedgerWriteFailureFailsClosed: while the ledger's disk refuses
// writes (WAL write and sync fail, as on a full disk), the gateway acks
// nothing and publishes no decision it could not record; when writes
// work again every message is decided exactly once.
func TestLedgerWriteFailureFailsClosed(t *testing.T) {
	h := newHarness(t)
	inj := h.startFailingLedger()
	inj.On()
	var seqs []uint64
	for range 5 {
		seqs = append(seqs, h.send(h.body(nil)))
	}
	time.Sleep(2 * time.Second) // several failed batches
	if n := len(h.all(StreamCap)) + len(h.all(StreamDenied)); n != 0 {
		t.Fatalf("%d outputs published while the ledger could not record them", n)
	}
	c, err := h.js.Consumer(context.Background(), StreamIngress, h.cfg.Consumer.Durable)
	must(t, err)
	info, err := c.Info(context.Background())
	must(t, err)
	if info.AckFloor.Stream != 0 {
		t.Fatalf("ack floor %d while the ledger failed; want nothing acked", info.AckFloor.Stream)
	}
	inj.Off()
	for _, s := range seqs {
		h.outputFor(s)
	}
	r, err := invariant.Wait(context.Background(), h.js, 20*time.Second)
	must(t, err)
	if err := r.Err(); err != nil || r.Ingress != 5 || r.ByRoute["allow"] != 5 {
		t.Fatalf("invariant after recovery: %v (%s)", err, r)
	}
}
