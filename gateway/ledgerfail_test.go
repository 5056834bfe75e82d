package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/header"
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

// decisionLines counts the "decision" log lines of ingress seq.
func (h *harness) decisionLines(seq uint64) int {
	n := 0
	for _, line := range strings.Split(h.logs.String(), "\n") {
		var l struct {
			Message string `json:"message"`
			Seq     uint64 `json:"ingress_seq"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Message == "decision" && l.Seq == seq {
			n++
		}
	}
	return n
}

// wantDecidedOnce checks that ingress seq, allowed, was logged and
// counted once.
func (h *harness) wantDecidedOnce(t *testing.T, seq uint64) {
	t.Helper()
	waitFor(t, func() bool { return h.decisionLines(seq) > 0 })
	if n, c := h.decisionLines(seq), counterValue(t, h.gw.Metrics().Decisions.WithLabelValues("tenant_a", "allow", "")); n != 1 || c != 1 {
		t.Fatalf("one message decided once: %d decision log lines, agentgw_decisions_total{allow} = %v; want 1 and 1", n, c)
	}
}

// TestFailedCommitLogsNoDecision: a batch whose ledger commit fails is
// handed back undecided, and its redelivery decided again. Only the
// decision that took effect is logged and counted: one "decision" log
// line and one agentgw_decisions_total for the message, however many
// commits failed before.
func TestFailedCommitLogsNoDecision(t *testing.T) {
	h := newHarness(t)
	inj := h.startFailingLedger()
	inj.On()
	seq := h.send(h.body(nil))
	h.waitLedgerErrors(t, 3, "no failed commits")
	inj.Off()
	h.outputFor(seq)
	h.wantDecidedOnce(t, seq)
}

// TestDurableFailedCommitLogsItsDecision: a commit that reports failure
// may have reached the disk all the same (its log written, the sync
// failed). The redelivery then re-emits the recorded outcome instead of
// deciding again, and the decision recorded, which took effect, is
// logged and counted once: when its outputs are re-emitted.
func TestDurableFailedCommitLogsItsDecision(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true
	syncFS, armed, fired := oneLogSyncFailure()
	h.opts = append(h.opts, func(g *Gateway) { g.ledgerFS = syncFS })
	h.start()
	<-h.gw.Ready()
	armed.Store(true)
	seq := h.send(h.body(nil))
	if out := h.outputFor(seq); out.Header.Get(header.Route) != "allow" || !fired.Load() {
		t.Fatalf("sync failure injected %v, route %s", fired.Load(), out.Header.Get(header.Route))
	}
	if h.gw.stats.Reemitted.Load() == 0 {
		t.Fatal("the redelivery decided again: the failed commit did not reach the disk")
	}
	h.wantDecidedOnce(t, seq)
}
