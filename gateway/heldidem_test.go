package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestHeldRequestKeepsItsIdempotencyKey: a request held for approval
// outlives its idempotency entry's freshness (expires_at + skew) while
// it waits. A retry under the same idempotency key with a new message id,
// sent then, must be the same request (duplicate_request) or a conflict
// (idempotency_conflict), not a second request an approver can grant
// beside the first; once the hold's deadline has passed, the key is free.
func TestHeldRequestKeepsItsIdempotencyKey(t *testing.T) {
	h := newHarness(t)
	h.start()
	const key = "pay:inv_7:send"
	payment := func(amount int) []byte {
		return h.body(func(b *envelope.Builder) {
			b.Capability, b.Target, b.IdempotencyKey, b.TTL = envelope.ToolCall, "payments.send", key, time.Minute
			b.Payload = envelope.Payload{Plain: json.RawMessage(`{"amount_cents":` + strings.Repeat("9", amount) + `,"iban":"DE00123"}`)}
		})
	}
	first := h.send(payment(6))
	if out := h.outputFor(first); !strings.HasPrefix(out.Subject, "agentgw.approval.") {
		t.Fatalf("first request went to %s (%q); want the approval queue", out.Subject, out.Header.Get(header.Reason))
	}
	// Past the first request's freshness, within its hold (15 minutes).
	h.clock.Advance(time.Minute + 2*h.cfg.Limits.Skew + time.Second)
	h.wantReason(h.send(payment(6)), reason.DuplicateRequest)
	h.wantReason(h.send(payment(7)), reason.IdempotencyConflict)
	// Past the hold's deadline: a new request.
	h.clock.Advance(h.cfg.Limits.ApprovalTTL)
	if out := h.outputFor(h.send(payment(6))); !strings.HasPrefix(out.Subject, "agentgw.approval.") {
		t.Errorf("a request after the hold's deadline went to %s (%q); want the approval queue", out.Subject, out.Header.Get(header.Reason))
	}
	h.stop()
}

// TestHeldIdempotencyCopiesBounded: with a day to wait for approval,
// each held request's copy of its idempotency entry still expires within
// three ledger generations of its decision, so the copies of requests
// held over time share the generations later messages write, and every
// lookup probes a bounded number of them. Copies kept to each day-long
// deadline would leave one more generation per request held in another
// generation's span.
func TestHeldIdempotencyCopiesBounded(t *testing.T) {
	h := newHarness(t)
	h.cfg.Limits.ApprovalTTL = 24 * time.Hour
	h.cfg.Streams.MaxAge = 48 * time.Hour
	h.start()
	const held = 10
	for range held {
		seq := h.send(h.heldRequest())
		if out := h.outputFor(seq); !strings.HasPrefix(out.Subject, "agentgw.approval.") {
			t.Fatalf("request went to %s (%q); want the approval queue", out.Subject, out.Header.Get(header.Reason))
		}
		h.clock.Advance(h.cfg.genWidth())
	}
	if n := h.gw.ledger.Stats().Generations; n > held+4 {
		t.Errorf("%d ledger generations after %d requests held a generation apart; want at most %d", n, held, held+4)
	}
	h.stop()
}
