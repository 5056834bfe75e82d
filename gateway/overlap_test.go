package gateway

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/subjects/reason"
)

// overlapRun is a gateway whose ledger WAL syncs can be held, with an
// original message decided in one batch and its exact copy decided in the
// next while the original's commit syncs.
type overlapRun struct {
	h                *harness
	original, copied uint64
	held, fail       atomic.Bool
	release          func()
}

// startOverlap runs the gateway, sends the original and its copy, and
// returns once the copy's batch has started while the original's fsync
// is held (and still is).
func startOverlap(t *testing.T) *overlapRun {
	h := newHarness(t)
	h.cfg.Consumer.Batch = 1 // the original and its copy in two batches
	o := &overlapRun{h: h}
	syncing := make(chan struct{}, 64) // a WAL sync is held
	let := make(chan struct{})
	var letOnce sync.Once
	o.release = func() { letOnce.Do(func() { close(let) }) }
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if filepath.Ext(op.Path) != ".log" {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if o.held.Load() {
				syncing <- struct{}{}
				<-let
			}
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt:
		default:
			return nil
		}
		if o.fail.Load() {
			return errorfs.ErrInjected
		}
		return nil
	}))
	p := newHeldPipeline() // holds the original's batch
	h.opts = append(h.opts, func(g *Gateway) {
		g.ledgerFS = fs
		g.hooks = p.hooks()
	})
	h.start()
	// Runs before the harness stops the gateway (cleanups run last-in
	// first-out): a failed test must not leave a sync held.
	t.Cleanup(func() {
		o.held.Store(false)
		o.fail.Store(false)
		o.release()
	})
	<-h.gw.Ready()
	o.held.Store(true)

	body := h.body(nil)
	o.original = h.send(body)
	p.hold.Store(o.original)
	awaitSeq(t, p.started, o.original, "the original's batch to start")
	o.copied = h.send(body)
	// The hook runs once the offer is visible to the decider.
	awaitSeq(t, p.waiting, o.copied, "the copy to be verified and offered")
	close(p.gate)
	select {
	case <-syncing:
	case <-time.After(20 * time.Second):
		t.Fatal("the original's commit never synced")
	}
	// The original's fsync is held: the copy's batch must start anyway.
	awaitSeq(t, p.started, o.copied, "the copy's batch to start while the original's commit syncs")
	return o
}

// TestNextBatchDecidedWhileCommitSyncs: when the next batch is verified
// and waiting, it is decided while the previous batch's ledger fsync is
// still in progress, and it sees that batch's writes: an exact copy of a
// message whose commit has not finished is denied replay_detected, and
// the original is delivered, once each.
func TestNextBatchDecidedWhileCommitSyncs(t *testing.T) {
	o := startOverlap(t)
	h := o.h
	o.held.Store(false)
	o.release()

	if out := h.outputFor(o.original); out.Header.Get(header.Route) != "allow" {
		t.Fatalf("original (ingress %d) routed %q; want allow", o.original, out.Header.Get(header.Route))
	}
	h.wantReason(o.copied, reason.ReplayDetected)
	r, err := invariant.Wait(context.Background(), h.js, 20*time.Second)
	must(t, err)
	if err := r.Err(); err != nil || r.Ingress != 2 {
		t.Fatalf("invariant: %v (%s)", err, r)
	}
}

// TestOverlappedBatchesFailTogether: the original's fsync fails while
// the copy's batch, decided on its writes, waits behind it. The copy is
// neither published nor acknowledged while the ledger fails (its batch
// fails with the original's); the original's WAL write reached the file
// before the sync failed, so the reopened ledger may hold its outcome and
// re-emit it. Once the ledger works again both are decided once: one
// delivered, the other denied replay_detected.
func TestOverlappedBatchesFailTogether(t *testing.T) {
	o := startOverlap(t)
	h := o.h
	h.allowErrors = true // the failed commits are logged
	o.fail.Store(true)
	o.held.Store(false)
	o.release()
	time.Sleep(2 * time.Second) // failed commits and retries
	for _, m := range append(h.all(StreamCap), h.all(StreamDenied)...) {
		if m.Header.Get(header.IngressSeq) == fmt.Sprint(o.copied) {
			t.Fatalf("the copy (ingress %d) was published while the ledger could not record it", o.copied)
		}
	}
	o.fail.Store(false)
	routes := map[string]int{}
	for _, seq := range []uint64{o.original, o.copied} {
		out := h.outputFor(seq)
		route := out.Header.Get(header.Route)
		if route == "deny" {
			route += " " + out.Header.Get(header.Reason)
		}
		routes[route]++
	}
	if routes["allow"] != 1 || routes["deny "+string(reason.ReplayDetected)] != 1 {
		t.Fatalf("routes after recovery %v; want one allow and one replay_detected", routes)
	}
	r, err := invariant.Wait(context.Background(), h.js, 20*time.Second)
	must(t, err)
	if err := r.Err(); err != nil || r.Ingress != 2 {
		t.Fatalf("invariant: %v (%s)", err, r)
	}
}

// heldPipeline reports the ingress sequences the prefetcher verified
// (prepared) and the decider took (started), and holds the decider on
// the batch of sequence hold until gate is closed.
type heldPipeline struct {
	prepared, waiting, started chan uint64
	hold                       atomic.Uint64
	gate                       chan struct{}
}

func newHeldPipeline() *heldPipeline {
	return &heldPipeline{prepared: make(chan uint64, 16), waiting: make(chan uint64, 16), started: make(chan uint64, 16), gate: make(chan struct{})}
}

func (p *heldPipeline) hooks() *pipelineHooks {
	return &pipelineHooks{
		prepared: func(seqs []uint64) {
			for _, s := range seqs {
				p.prepared <- s
			}
		},
		waiting: func(seqs []uint64) {
			for _, s := range seqs {
				p.waiting <- s
			}
			// Return late, as a prefetcher the scheduler set aside would:
			// what the test does on seeing the hook must not depend on
			// the prefetcher running on.
			time.Sleep(300 * time.Millisecond)
		},
		batchStart: func(seqs []uint64) {
			for _, s := range seqs {
				p.started <- s
				if s == p.hold.Load() {
					<-p.gate
				}
			}
		},
	}
}

// awaitSeq reads ch until want arrives, failing after a bound that only
// guards against a hang.
func awaitSeq(t *testing.T, ch <-chan uint64, want uint64, what string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case s := <-ch:
			if s == want {
				return
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s (ingress %d)", what, want)
		}
	}
}

// TestDeciderNeverWaitsHoldingTheLedger: the acker may need the ledger's
// batch lock (to narrow the outcome of a message whose outputs were
// partly stored) while the completer waits to hand it the next batch. A
// batch decided without overlap while an overlapped batch is still with
// the completer must therefore not hold that lock while it waits for
// that batch. The test builds the cycle step by step, every notice
// refused by the reply stream so that every outcome is partly stored:
// the acker is held as it is about to narrow A's outcome; B is published
// and queued for the acker; C is overlapped (D is verified and waiting
// when C is decided), so its completer blocks handing it over; D is
// decided without overlap (nothing waits behind it) and waits for C.
// Released, the acker takes the ledger's batch lock, and every message
// must still be decided.
func TestDeciderNeverWaitsHoldingTheLedger(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true     // the refused notices are logged
	h.cfg.Consumer.Batch = 1 // one message per batch: every batch is a step
	ctx := context.Background()
	p := newHeldPipeline() // holds C's batch until D is verified and waiting
	narrowing := make(chan struct{})
	releaseAcker := make(chan struct{})
	var releaseOnce, heldOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(releaseAcker) }) }
	t.Cleanup(release)
	h.opts = append(h.opts, func(g *Gateway) {
		g.hooks = p.hooks()
		g.hooks.narrowing = func([]uint64) {
			heldOnce.Do(func() {
				close(narrowing)
				<-releaseAcker
			})
		}
	})
	reply := func(update func(*jetstream.StreamConfig)) {
		s, err := h.js.Stream(ctx, StreamReply)
		must(t, err)
		cfg := s.CachedInfo().Config
		update(&cfg)
		_, err = h.js.UpdateStream(ctx, cfg)
		must(t, err)
	}
	h.start()
	<-h.gw.Ready()
	// The reply stream is filled to its limit by the first message's
	// notice (a limit of 0 would mean none).
	first := h.send(h.body(nil))
	h.outputFor(first)
	waitFor(t, func() bool { return len(h.all(StreamReply)) == 1 })
	reply(func(c *jetstream.StreamConfig) { c.MaxMsgs, c.Discard = 1, jetstream.DiscardNew })

	a := h.send(h.body(nil))
	select {
	case <-narrowing:
	case <-time.After(20 * time.Second):
		t.Fatal("A's partly stored outcome never reached the acker")
	}
	b := h.send(h.body(nil))
	h.outputFor(b)      // published: queued for the held acker
	p.hold.Store(b + 1) // C: nothing else publishes to ingress
	c := h.send(h.body(nil))
	if c != b+1 {
		t.Fatalf("C is ingress %d; want %d", c, b+1)
	}
	awaitSeq(t, p.started, c, "C's batch to start")
	d := h.send(h.body(nil))
	awaitSeq(t, p.waiting, d, "D to be verified and offered") // so C is overlapped
	close(p.gate)
	awaitSeq(t, p.started, d, "D's batch to start")
	// D's decider opens its ledger batch and waits for C, which the
	// completer cannot hand to the held acker.
	time.Sleep(300 * time.Millisecond)
	reply(func(c *jetstream.StreamConfig) { c.MaxMsgs, c.Discard = -1, jetstream.DiscardOld })
	release()

	for _, seq := range []uint64{first, a, b, c, d} {
		if out := h.outputFor(seq); out.Header.Get(header.Route) != "allow" {
			t.Errorf("ingress %d routed %q; want allow", seq, out.Header.Get(header.Route))
		}
	}
	r, err := invariant.Wait(ctx, h.js, 20*time.Second)
	must(t, err)
	if err := r.Err(); err != nil || r.Ingress != 5 {
		t.Fatalf("invariant: %v (%s)", err, r)
	}
}
