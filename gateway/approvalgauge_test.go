package gateway

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/store"
)

// heldPayment sends a payment the policy holds for an approver, with a
// plain payload of about pad bytes, and returns its hold.
func heldPaymentHold(t *testing.T, h *harness, pad int) store.Hold {
	t.Helper()
	filler := strings.Repeat("A", pad)
	body := h.body(func(b *envelope.Builder) {
		b.Capability, b.Target = envelope.ToolCall, "payments.send"
		b.Payload = envelope.Payload{Plain: json.RawMessage(`{"amount_cents":990000,"iban":"` + filler + `"}`)}
	})
	if out := h.outputFor(h.send(body)); !strings.HasPrefix(out.Subject, "agentgw.approval.") {
		t.Fatalf("the payment went to %s; want the approval queue", out.Subject)
	}
	holds, err := h.gw.ledger.DueHolds(time.Date(2199, 1, 1, 0, 0, 0, 0, time.UTC), 10)
	must(t, err)
	if len(holds) != 1 {
		t.Fatalf("%d holds; want the one held request", len(holds))
	}
	return holds[0]
}

// putHolds writes n holds named by id(i), due at deadline, holding value.
func putHolds(t *testing.T, h *harness, n int, id func(int) string, deadline time.Time, value []byte) {
	t.Helper()
	for i := 0; i < n; i += 1000 {
		b := h.gw.ledger.NewBatch()
		for j := i; j < min(n, i+1000); j++ {
			must(t, b.PutHold(id(j), deadline, value))
		}
		must(t, b.Commit())
		b.Close()
	}
}

// A held request's hold carries its body, and how many requests a tenant
// keeps held is its agents' to choose: reading the approval-queue gauges
// reads the holds in place, so a scrape allocates nothing like their
// size (it copied and decoded every one, each gauge on its own).
func TestApprovalGaugesReadHoldsInPlace(t *testing.T) {
	h := newHarness(t)
	h.start()
	held := heldPaymentHold(t, h, 16000)
	const n = 200
	putHolds(t, h, n, func(i int) string { return fmt.Sprintf("tenant_a/copy%05d", i) }, held.Deadline, held.Value)
	total := uint64((n + 1) * len(held.Value))
	// A first reading brings the holds into the ledger's block cache:
	// reading a block from its table allocates its buffer (on the Go heap
	// in some builds), which is the store's cost, not the gauges'. Built
	// with -race, a reading from the cache still allocates about the
	// holds' size in the store (measured: 1.05 times). Copying each value
	// and decoding each held body, as the gauges did, allocated 1.86
	// times their size, with -race or without.
	h.gw.pendingApprovals()
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	got, age := h.gw.approvalGauges()
	runtime.ReadMemStats(&m1)
	if got != n+1 || age < 0 {
		t.Errorf("approval gauges = %d, %s; want %d requests", got, age, n+1)
	}
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > total*3/2 {
		t.Errorf("reading the gauges allocated %d bytes for %d bytes of holds; want them read in place", alloc, total)
	}
}

// Holds of other kinds (an outstanding response per delivered request
// to a target with a response_deadline, due before any held request
// when response_deadline < approval_ttl) do not crowd the held requests
// out of the count: it read only the first 100,000 holds of any kind.
func TestApprovalGaugesCountPastOtherHolds(t *testing.T) {
	h := newHarness(t)
	h.start()
	heldPaymentHold(t, h, 10)
	putHolds(t, h, 100000, func(i int) string { return fmt.Sprintf("%stenant_a/U%06d/m", respPrefix, i) }, h.clock.Now().Add(time.Minute), []byte(`{}`))
	if n, age := h.gw.pendingApprovals(); n != 1 || age < 0 {
		t.Errorf("pending approvals = %d (%s) behind 100,000 outstanding responses; want the 1 held request", n, age)
	}
}
