package gateway

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestNextBatchDecidedWhileCommitSyncs: when the next batch is verified
// and waiting, it is decided while the previous batch's ledger fsync is
// still in progress, and it sees that batch's writes: an exact copy of a
// message whose commit has not finished is denied replay_detected, and
// the original is delivered, once each.
func TestNextBatchDecidedWhileCommitSyncs(t *testing.T) {
	h := newHarness(t)
	h.cfg.Consumer.Batch = 1 // the original and its copy in two batches
	var held atomic.Bool
	syncing := make(chan struct{}, 64) // a WAL sync is held
	let := make(chan struct{})
	var letOnce sync.Once
	release := func() { letOnce.Do(func() { close(let) }) }
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if filepath.Ext(op.Path) != ".log" || !held.Load() {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			syncing <- struct{}{}
			<-let
		}
		return nil
	}))
	body := h.body(nil)
	var original, copied atomic.Uint64
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
		held.Store(false)
		release()
	})
	<-h.gw.Ready()
	held.Store(true)

	original.Store(h.send(body))
	awaitSeq(t, started, original.Load(), "the original's batch to start")
	copied.Store(h.send(body))
	awaitSeq(t, prepared, copied.Load(), "the copy to be verified")
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
	awaitSeq(t, started, copied.Load(), "the copy's batch to start while the original's commit syncs")
	held.Store(false)
	release()

	if out := h.outputFor(original.Load()); out.Header.Get("Agentgw-Route") != "allow" {
		t.Fatalf("original (ingress %d) routed %q; want allow", original.Load(), out.Header.Get("Agentgw-Route"))
	}
	h.wantReason(copied.Load(), reason.ReplayDetected)
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
