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
	var original atomic.Uint64
	prepared := make(chan uint64, 16)
	started := make(chan uint64, 16)
	gate := make(chan struct{}) // lets the original's batch be decided
	h.opts = append(h.opts, func(g *Gateway) {
		g.ledgerFS = fs
		g.hooks = &pipelineHooks{
			prepared: func(seqs []uint64) {
				for _, s := range seqs {
					prepared <- s
				}
			},
			batchStart: func(seqs []uint64) {
				for _, s := range seqs {
					started <- s
					if s == original.Load() {
						<-gate
					}
				}
			},
		}
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
	original.Store(o.original)
	awaitSeq(t, started, o.original, "the original's batch to start")
	o.copied = h.send(body)
	awaitSeq(t, prepared, o.copied, "the copy to be verified")
	// The prefetcher holds the copy's batch ready once it waits for the
	// decider; give it the moment to get there.
	time.Sleep(200 * time.Millisecond)
	close(gate)
	select {
	case <-syncing:
	case <-time.After(20 * time.Second):
		t.Fatal("the original's commit never synced")
	}
	// The original's fsync is held: the copy's batch must start anyway.
	awaitSeq(t, started, o.copied, "the copy's batch to start while the original's commit syncs")
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
