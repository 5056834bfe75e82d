package gateway

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/store/journal"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestScaleOutFailedCommitJournaled: scaled out, one WAL sync of a
// partition ledger fails. The batch's commit reports an error and the
// batch is naked, but its writes may be in the ledger after the reopen:
// the redelivery found the recorded outcome and re-emitted it, and
// nothing was ever journaled for it, so the partition's next owner,
// rebuilding from the journal, accepted an exact copy of the message.
// The tenure now restarts from the journal, as after a failed append.
func TestScaleOutFailedCommitJournaled(t *testing.T) {
	h, a, armed, fired := syncFailInstance(t)

	body := h.body(func(b *envelope.Builder) { b.IdempotencyKey = "refund-77" })
	hdr := h.signed(h.agent, h.agent.token, body)
	subj := h.ingress(h.agent, "tenant_a")
	armed.Store(true)
	first := h.publish(subj, body, hdr)
	if out := h.outputFor(first); out.Header.Get(header.Route) != "allow" || !fired.Load() {
		t.Fatalf("first: sync failure injected %v, route %s (%s)", fired.Load(), out.Header.Get(header.Route), out.Header.Get(header.Reason))
	}
	var ops []string
	waitFor(t, func() bool {
		ops = ops[:0]
		must(t, journal.Replay(context.Background(), h.js, 0, time.Time{}, func(r journal.Record) error {
			ops = append(ops, r.Op.String())
			return nil
		}))
		return len(ops) > 0
	})

	// Hand the partition over: the next owner rebuilds from the journal.
	a.stop(t)
	b := h.startInstance("b")
	waitFor(t, func() bool { return b.held() == 1 })
	copySeq := h.publish(subj, body, hdr)
	out := h.outputFor(copySeq)
	if reason.Code(out.Header.Get(header.Reason)) != reason.ReplayDetected {
		t.Errorf("exact copy of an allowed message after takeover: route %s reason %q; want replay_detected",
			out.Header.Get(header.Route), out.Header.Get(header.Reason))
	}
	b.stop(t)
}

// TestScaleOutTenureRestartSweepsHolds: a partition's new tenure (here
// after a failed commit) sweeps the held requests: one written before a
// tenure ended may have been judged under revocations whose own sweep
// ran before it was written. The agent's key is revoked in place (no
// sweep of its own), and the next tenure withdraws its held request.
func TestScaleOutTenureRestartSweepsHolds(t *testing.T) {
	h, a, armed, fired := syncFailInstance(t)
	heldSeq := h.send(h.heldRequest())
	if out := h.outputFor(heldSeq); out.Header.Get(header.Route) != "approval" {
		t.Fatalf("critical request: route %s (%s); want approval", out.Header.Get(header.Route), out.Header.Get(header.Reason))
	}
	a.gw.revocations.Replace(nil, []string{h.agent.pub})
	armed.Store(true)
	other := newActor(t)
	other.token = h.credential(h.issuer, other, "tenant_a", []string{"kb:read"}, time.Hour, "")
	body := h.body(nil)
	h.outputFor(h.publish(h.ingress(other, "tenant_a"), body, h.signed(other, other.token, body)))
	if !fired.Load() {
		t.Fatal("no commit failed: the tenure did not restart")
	}
	m := h.waitIn(StreamDenied, heldSeq, func(m *jetstream.RawStreamMsg) bool {
		return strings.HasSuffix(m.Header.Get(header.MsgID), ".withdrawn")
	})
	if got := reason.Code(m.Header.Get(header.Reason)); got != reason.Revoked {
		t.Fatalf("withdrawn held request: %q (%s); want revoked", got, m.Header.Get(header.Detail))
	}
	a.stop(t)
}

// syncFailInstance starts instance "a" scaled out over one partition,
// its ledger's next WAL sync failing once armed is set (fired tells it
// did).
func syncFailInstance(t *testing.T) (h *harness, a *instance, armed, fired *atomic.Bool) {
	h = newHarness(t)
	h.allowErrors = true
	h.cfg.Consumer.Partitions = 1
	syncFS, armed, fired := oneLogSyncFailure()
	h.opts = append(h.opts, func(g *Gateway) { g.ledgerFS = syncFS })
	a = h.startInstance("a")
	waitFor(t, func() bool { return a.held() == 1 })
	return h, a, armed, fired
}
