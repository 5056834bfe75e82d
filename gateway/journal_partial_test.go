package gateway

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/store/journal"
	"github.com/agentgw/agentgw/subjects/reason"
)

// cutJournal makes in's next batch whose records hold one that pick
// accepts land only its first k records in the journal before its append
// fails (journalCut), once fire has been called. The records it cuts
// must all come before the batch's first outcome.
func cutJournal(t *testing.T, in *instance, k int, pick func(journal.Record) bool) (fire func(), cut *atomic.Bool) {
	var armed atomic.Bool
	cut = new(atomic.Bool)
	in.gw.journalCut = func(recs []journal.Record) int {
		if !slices.ContainsFunc(recs, pick) || !armed.CompareAndSwap(true, false) {
			return len(recs)
		}
		first := slices.IndexFunc(recs, func(r journal.Record) bool { return r.Op == journal.OpOutcome })
		if first < 0 || k > first {
			t.Errorf("the batch journals %d records before its first outcome; cannot cut after %d", first, k)
			return len(recs)
		}
		cut.Store(true)
		return k
	}
	return func() { armed.Store(true) }, cut
}

// TestScaleOutOperatorReplayAfterPartialJournal: an operator replays a
// denied message; the batch deciding the replay journals only a prefix
// of its records (its connection drops between two journal messages),
// so nothing is published and the partition rebuilds its ledger from
// the journal, which holds the replay's single-use marker or its replay
// entry, or both and its idempotency entry, but not its outcome. Its
// decision was never published: the redelivery of the same ingress
// message decides it as the replay it is (delivered, under the fixed
// policy), neither "already replayed" by its own marker nor "was not
// denied" by its own entry. For every prefix that lacks the outcome.
func TestScaleOutOperatorReplayAfterPartialJournal(t *testing.T) {
	for k := 1; k <= 3; k++ {
		t.Run(fmt.Sprintf("prefix-%d", k), func(t *testing.T) {
			ctx := context.Background()
			h := newHarness(t)
			h.allowErrors = true // the cut append ends the tenure, logged as an error
			h.cfg.Consumer.Partitions = 1
			h.cfg.ReloadInterval = 50 * time.Millisecond
			var fire func()
			var cut *atomic.Bool
			in := h.startInstance("a", func(in *instance) {
				fire, cut = cutJournal(t, in, k, func(r journal.Record) bool { return r.Op == journal.OpMarker })
			})
			waitFor(t, func() bool { return in.held() == 1 })
			forbidden := h.send(h.body(func(b *envelope.Builder) { b.Capability, b.Target = envelope.ToolCall, "ops.forbidden" }))
			h.wantReason(forbidden, reason.PolicyDenied)
			denied := h.deniedSeq(forbidden)
			v1 := in.gw.Policy().Version()
			replaceFile(t, h.cfg.Policies[0], strings.Replace(testPolicy, "@id(\"forbid-ops\")\nforbid (principal, action, resource == Target::\"ops.forbidden\");", "", 1))
			waitFor(t, func() bool { return in.gw.Policy().Version() != v1 })

			fire()
			res, err := h.operator("operator:replay").Replay(ctx, denied, false)
			must(t, err)
			out := h.outputFor(res.IngressSeq)
			if !cut.Load() {
				t.Fatal("the replay's batch was journaled whole")
			}
			if !strings.HasPrefix(out.Subject, "agentgw.cap.tenant_a.ops.forbidden") {
				t.Fatalf("replay whose first decision was never published: %s %s (%s); want delivered",
					out.Subject, out.Header.Get(header.Reason), out.Header.Get(header.Detail))
			}
			for _, seq := range []uint64{forbidden, res.IngressSeq} {
				if outs := h.outputsFor(seq); len(outs) != 1 {
					t.Errorf("ingress %d ends %d times: %v; want once", seq, len(outs), outs)
				}
			}
			h.endScaleOut(t, in)
		})
	}
}

// TestScaleOutIdempotencyAfterPartialJournal: the batch deciding a
// request journals its replay and idempotency entries but not its
// outcome. Its redelivery decides it (delivered once: its own entries
// are not a prior decision), and a retry with a new message id and the
// same idempotency key is then its duplicate.
func TestScaleOutIdempotencyAfterPartialJournal(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true // the cut append ends the tenure, logged as an error
	h.cfg.Consumer.Partitions = 1
	var fire func()
	var cut *atomic.Bool
	in := h.startInstance("a", func(in *instance) {
		fire, cut = cutJournal(t, in, 2, func(r journal.Record) bool { return r.Op == journal.OpIdem })
	})
	waitFor(t, func() bool { return in.held() == 1 })
	key := func(b *envelope.Builder) { b.IdempotencyKey = "refund-42" }
	fire()
	first := h.send(h.body(key))
	if out := h.outputFor(first); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("request whose first decision was never published: %s %s (%s); want delivered",
			out.Subject, out.Header.Get(header.Reason), out.Header.Get(header.Detail))
	}
	if !cut.Load() {
		t.Fatal("the request's batch was journaled whole")
	}
	retry := h.send(h.body(key))
	h.wantReason(retry, reason.DuplicateRequest)
	for _, seq := range []uint64{first, retry} {
		if outs := h.outputsFor(seq); len(outs) != 1 {
			t.Errorf("ingress %d ends %d times: %v; want once", seq, len(outs), outs)
		}
	}
	h.endScaleOut(t, in)
}
