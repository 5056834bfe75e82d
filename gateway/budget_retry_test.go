package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/budget"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestBudgetRefundedWhenBatchFails: a batch whose ledger commit fails is
// handed back undecided, and its redelivery takes budget tokens again;
// the failed attempts' tokens are refunded, so three messages within an
// agent burst of five are all allowed however often their batch failed,
// and they spend three tokens in all.
func TestBudgetRefundedWhenBatchFails(t *testing.T) {
	h := newHarness(t)
	h.cfg.Budgets.Agent = budget.Limit{Rate: 0.0001, Burst: 5}
	inj := h.startFailingLedger()
	inj.On()
	var seqs []uint64
	for range 3 {
		seqs = append(seqs, h.send(h.body(nil)))
	}
	// Three failed batches: without refunds the three messages would
	// have spent nine tokens of five before a batch of them commits.
	h.waitLedgerErrors(t, 3, "fewer than three batches failed while the ledger refused writes")
	inj.Off()
	for i, s := range seqs {
		if out := h.outputFor(s); out.Header.Get(header.Route) != "allow" {
			t.Errorf("message %d: route %s (%s); want allow", i, out.Header.Get(header.Route), out.Header.Get(header.Reason))
		}
	}
	r, err := invariant.Wait(context.Background(), h.js, 20*time.Second)
	must(t, err)
	if r.ByRoute["allow"] != 3 {
		t.Errorf("routes %v; want 3 allowed", r.ByRoute)
	}
	if st := h.gw.budgets.Peek("tenant_a", h.agent.pub, "kb.search", h.clock.Now(), nil); st.Agent != 2 {
		t.Errorf("agent tokens left after three messages = %d; want 2 (burst 5)", st.Agent)
	}
}

// TestScaleOutBudgetRefundedOnRestart: scaled out, a batch whose commit
// fails restarts the partition's tenure (errRestart) and is handed back;
// its redelivery is decided again, on the refunded token. With an agent
// burst of two, the message and one more are allowed, and a third is
// denied.
func TestScaleOutBudgetRefundedOnRestart(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true
	h.cfg.Consumer.Partitions = 1
	h.cfg.Budgets.Agent = budget.Limit{Rate: 0.0001, Burst: 2}
	syncFS, armed, fired := oneLogSyncFailure()
	h.opts = append(h.opts, func(g *Gateway) { g.ledgerFS = syncFS })
	a := h.startInstance("a")
	waitFor(t, func() bool { return a.held() == 1 })
	armed.Store(true)
	first := h.send(h.body(nil))
	if out := h.outputFor(first); out.Header.Get(header.Route) != "allow" || !fired.Load() {
		t.Fatalf("first: sync failure injected %v, route %s (%s)", fired.Load(), out.Header.Get(header.Route), out.Header.Get(header.Reason))
	}
	waitFor(t, func() bool { return a.held() == 1 })
	if out := h.outputFor(h.send(h.body(nil))); out.Header.Get(header.Route) != "allow" {
		t.Errorf("second: route %s (%s); want allow (burst 2, the first message's failed attempt refunded)", out.Header.Get(header.Route), out.Header.Get(header.Reason))
	}
	h.wantReason(h.send(h.body(nil)), reason.BudgetExceeded)
	a.stop(t)
}
