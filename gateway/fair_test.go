package gateway

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/internal/invariant"
)

// floodThenValid starts and stops the gateway once (so its consumers
// exist), then queues a flood of badly signed messages from tenant_b
// followed by a few valid ones from tenant_a, restarts the gateway and
// returns the tenants of the audit events in decision order.
func floodThenValid(t *testing.T, fair bool) []string {
	const flood, valid = 1200, 10
	h := newHarness(t)
	h.cfg.Consumer.FairTenants = fair
	h.cfg.Consumer.Batch = 16
	h.start()
	<-h.gw.Ready()
	h.stop()

	badSig := h.tenantBBadSignatures()
	for range flood {
		badSig()
	}
	for range valid {
		h.send(h.body(nil))
	}
	h.start()
	r, err := invariant.Wait(context.Background(), h.js, 60*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
	var order []string
	for _, ev := range h.auditEvents() {
		order = append(order, ev.Tenant)
	}
	if len(order) != flood+valid {
		t.Fatalf("%d audit events; want %d", len(order), flood+valid)
	}
	return order
}

// tenantBBadSignatures returns a function that queues one message from a
// tenant_b agent whose signature does not match its body (denied).
func (h *harness) tenantBBadSignatures() func() uint64 {
	a := newActor(h.t)
	a.token = h.credential(h.issuerB, a, "tenant_b", []string{"kb:read"}, time.Hour, "")
	subj := h.ingress(a, "tenant_b")
	return func() uint64 {
		body := h.body(func(b *envelope.Builder) { b.Tenant = "tenant_b" })
		return h.publish(subj, body, h.signed(a, a.token, []byte("not the body")))
	}
}

// lastOf is the position of tenant's last decision in order.
func lastOf(order []string, tenant string) int {
	last := -1
	for i, tn := range order {
		if tn == tenant {
			last = i
		}
	}
	return last
}

// TestTenantFairness: a tenant flooding the ingress stream does not
// starve another. Without fair_tenants the valid tenant's messages, queued
// behind 1,200 flood messages, are decided after all of them (stream
// order); with it, each batch takes an equal share from each tenant's
// queue, and they are decided within the first batches.
func TestTenantFairness(t *testing.T) {
	t.Run("fifo-without", func(t *testing.T) {
		order := floodThenValid(t, false)
		got := lastOf(order, "tenant_a")
		t.Logf("without fairness: tenant_a's last decision #%d of %d", got, len(order))
		if got < len(order)-10 {
			t.Fatalf("without fairness tenant_a's last decision is #%d of %d; the control expects stream order", got, len(order))
		}
	})
	t.Run("fair", func(t *testing.T) {
		order := floodThenValid(t, true)
		got := lastOf(order, "tenant_a")
		t.Logf("with fairness: tenant_a's last decision #%d of %d", got, len(order))
		if got > len(order)/10 {
			t.Fatalf("tenant_a's last decision is #%d of %d: starved behind tenant_b's flood", got, len(order))
		}
	})
}

// TestFloodVictimJoinsNextBatch: a valid message from one tenant that
// arrives while another tenant's flood fills the pipeline waits behind at
// most the batch being decided. The test holds the decider on the first
// flood batch until the next one is verified and waiting, then sends a
// message from tenant_a and lets the decider go once that message is in
// its tenant's queue: it must be decided in the very next batch, beside
// the flood batch that was waiting, not in the one after.
func TestFloodVictimJoinsNextBatch(t *testing.T) {
	const flood, batch = 400, 16
	h := newHarness(t)
	h.cfg.Consumer.FairTenants = true
	h.cfg.Consumer.Batch = batch
	h.start()
	<-h.gw.Ready()
	h.stop()
	badSig := h.tenantBBadSignatures()
	for range flood {
		badSig()
	}

	started := make(chan []uint64, flood)
	prepared := make(chan []uint64, flood)
	release := make(chan struct{})
	var mu sync.Mutex
	queued := map[uint64]bool{}
	queuedNow := make(chan struct{}, 1)
	first, firstPrepared := true, true
	h.opts = append(h.opts, func(g *Gateway) {
		g.hooks = &pipelineHooks{
			prepared: func(seqs []uint64) {
				if firstPrepared {
					// The next batch is taken once the flood's queue is
					// full: a whole batch of the flood, formed while the
					// other tenant is idle.
					firstPrepared = false
					for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
						mu.Lock()
						n := len(queued)
						mu.Unlock()
						if n >= len(seqs)+batch {
							break
						}
					}
				}
				prepared <- seqs
			},
			batchStart: func(seqs []uint64) {
				started <- seqs
				if first {
					first = false
					<-release
				}
			},
			queued: func(seq uint64) {
				mu.Lock()
				queued[seq] = true
				mu.Unlock()
				select {
				case queuedNow <- struct{}{}:
				default:
				}
			},
		}
	})
	h.start()
	<-started  // the decider holds the first flood batch
	<-prepared // that batch
	<-prepared // the next one, verified and waiting
	victim := h.send(h.body(nil))
	for {
		<-queuedNow
		mu.Lock()
		in := queued[victim]
		mu.Unlock()
		if in {
			break
		}
	}
	close(release)
	next := <-started
	if !slices.Contains(next, victim) {
		after := <-started
		t.Fatalf("tenant_a's message (seq %d) was not in the batch after the one in hand (%d flood messages); in the next one: %v",
			victim, len(next), slices.Contains(after, victim))
	}
	// The waiting batch was the flood's alone; joined, it keeps the
	// flood's equal share and the rest is the batch after it.
	if n := len(next) - 1; n > batch/2 {
		t.Errorf("the victim's batch holds %d flood messages; want at most an equal share (%d)", n, batch/2)
	}
	r, err := invariant.Wait(context.Background(), h.js, 60*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
	// Nothing of the flood was skipped or reordered: its messages were
	// decided in stream order.
	var last uint64
	for _, b := range append([][]uint64{next}, drainBatches(started)...) {
		for _, seq := range b {
			if seq == victim {
				continue
			}
			if seq < last {
				t.Fatalf("flood message %d decided after %d", seq, last)
			}
			last = seq
		}
	}
}

// drainBatches returns the batches a batchStart hook has queued.
func drainBatches(c chan []uint64) [][]uint64 {
	var out [][]uint64
	for {
		select {
		case b := <-c:
			out = append(out, b)
		default:
			return out
		}
	}
}

// TestFloodSharesBatchWhenContested: while another tenant sends (it has
// messages queued, or had in the last few batches), a flooding tenant
// gives a batch at most an equal share of it (batch / active queues), so
// the batch the next message of a tenant sending at a steady low rate
// waits behind holds a fraction of the flood; alone, the flood takes more
// than that share. The first batch is held until the flood and the other
// tenant's message are both queued.
func TestFloodSharesBatchWhenContested(t *testing.T) {
	const flood, batch = 200, 16
	h := newHarness(t)
	h.cfg.Consumer.FairTenants = true
	h.cfg.Consumer.Batch = batch
	h.start()
	<-h.gw.Ready()
	h.stop()
	badSig := h.tenantBBadSignatures()
	for range flood {
		badSig()
	}
	var mu sync.Mutex
	var batches [][]uint64
	queued := map[uint64]bool{}
	firstPrepared := make(chan []uint64, 1)
	release := make(chan struct{})
	first := true
	var victim uint64
	victimAt, started, held := -1, 0, false
	h.opts = append(h.opts, func(g *Gateway) {
		g.hooks = &pipelineHooks{
			prepared: func(seqs []uint64) {
				if first {
					first = false
					firstPrepared <- seqs
					<-release
				}
			},
			batchStart: func(seqs []uint64) {
				mu.Lock()
				defer mu.Unlock()
				batches = append(batches, seqs)
				started += len(seqs)
				if slices.Contains(seqs, victim) {
					victimAt = len(batches) - 1
				}
				if held || victimAt < 0 || len(batches) <= victimAt+recentRounds+1 {
					return
				}
				// The victim's tenant is inactive by now. Hold the decider
				// until the flood's queue holds more than an equal share
				// (beyond the one batch the prefetcher may have taken), so
				// that a batch taken next can show the flood alone taking
				// more; a decider faster than the deliveries would
				// otherwise only ever find a few messages queued.
				held = true
				for deadline := time.Now().Add(10 * time.Second); len(queued)-started < 2*batch+1 && time.Now().Before(deadline); {
					mu.Unlock()
					time.Sleep(time.Millisecond)
					mu.Lock()
				}
			},
			queued: func(seq uint64) {
				mu.Lock()
				queued[seq] = true
				mu.Unlock()
			},
		}
	})
	h.start()
	inFirst := len(<-firstPrepared)
	mu.Lock()
	victim = h.send(h.body(nil))
	mu.Unlock()
	for {
		mu.Lock()
		// The victim queued, and the flood's queue (room for a batch) full.
		ready := queued[victim] && len(queued)-inFirst >= batch
		mu.Unlock()
		if ready {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	r, err := invariant.Wait(context.Background(), h.js, 60*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
	h.stop()
	i := slices.IndexFunc(batches, func(b []uint64) bool { return slices.Contains(b, victim) })
	if i < 0 || i+1 >= len(batches) {
		t.Fatalf("the victim's batch is #%d of %d; want one before the flood's end", i, len(batches))
	}
	if n := len(batches[i+1]); n > batch/2 {
		t.Errorf("the batch after the victim's holds %d flood messages; want at most %d (an equal share of %d between two active tenants)", n, batch/2, batch)
	}
	// Once the victim's tenant is inactive, the flood alone may take more
	// than the equal share (the hook above lets its queue fill once).
	most := 0
	for _, b := range batches[i+1:] {
		most = max(most, len(b))
	}
	if most <= batch/2 {
		t.Errorf("no batch after the victim's holds more than %d (the equal share) in %d batches; want the flood alone to take more", batch/2, len(batches))
	}
}

// TestShortestFetchWaitDecides: the shortest fetch_wait the config
// accepts still makes a valid pull (jetstream refuses a pull expiry under
// a second), for one queue and for a queue per tenant.
func TestShortestFetchWaitDecides(t *testing.T) {
	for _, fair := range []bool{false, true} {
		t.Run(fmt.Sprintf("fair_tenants=%v", fair), func(t *testing.T) {
			h := newHarness(t)
			h.cfg.Consumer.FetchWait = 100 * time.Millisecond
			h.cfg.Consumer.FairTenants = fair
			must(t, h.cfg.Validate())
			h.start()
			h.outputFor(h.send(h.body(nil)))
			h.stop()
		})
	}
}

// TestFairTenantsOwnSubjectWithNoAgentKey: with fair_tenants, a message
// on a configured tenant's subject whose agent token is no key matches
// the tenant consumer's filter; the catch-all must leave it to that
// consumer, or it goes through the pipeline twice (and past the
// duplicate window, is stored twice). It is decided once.
func TestFairTenantsOwnSubjectWithNoAgentKey(t *testing.T) {
	h := newHarness(t)
	h.cfg.Consumer.FairTenants = true
	h.start()
	<-h.gw.Ready()
	h.stop() // the tenant consumers exist; the message waits for both
	seq := h.publish("agentgw.in.tenant_a.NOTAUSERKEY", []byte(`{}`), nil)
	h.start()
	h.outputFor(seq)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && h.gw.stats.Reemitted.Load() == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	if n := h.gw.stats.Reemitted.Load(); n != 0 {
		t.Errorf("ingress %d went through the pipeline %d more time(s): two consumers took it", seq, n)
	}
}

func TestTenantToken(t *testing.T) {
	for subj, want := range map[string]string{
		"agentgw.in.0.tenant_a.UAGENT": "tenant_a", "agentgw.in.3.t.NOTAKEY": "t",
		"agentgw.in.0.tenant_a": "", "agentgw.in.0.t.a.b": "", "agentgw.cap.0.t.a": "", "agentgw.in.0..a": "",
	} {
		if got, ok := tenantToken(subj); got != want || ok != (want != "") {
			t.Errorf("tenantToken(%q) = %q, %v; want %q", subj, got, ok, want)
		}
	}
}
