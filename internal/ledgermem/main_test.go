package main

import (
	"testing"

	"github.com/agentgw/agentgw/store"
)

// TestRunSmall runs the measurement at a tiny size and checks its
// results, never its speed or memory: every written entry is found with
// the values written, no absent key is found, outcomes are pruned below
// the ack floor (or all kept), and Prune deletes the expired generations'
// data, not just their metadata.
func TestRunSmall(t *testing.T) {
	for _, keep := range []bool{false, true} {
		name := "outcomes-pruned"
		if keep {
			name = "outcomes-kept"
		}
		t.Run(name, func(t *testing.T) {
			c := config{
				Dir: t.TempDir(), Messages: 10_000, Batch: 256, OutcomeBytes: 3109,
				KeepOutcomes: keep, Lookups: 2_000, PruneSmall: 1_000,
			}
			r, err := run(c, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			if r.Ledger.FilteredProbes == 0 || r.Ledger.FilterBytes == 0 {
				t.Errorf("key filters: %d bytes, %d probes answered; want the absent keys' probes answered", r.Ledger.FilterBytes, r.Ledger.FilteredProbes)
			}
			if r.ReplayHits != c.Lookups || r.IdemHits != c.Lookups {
				t.Errorf("present keys found with their values: replay %d, idem %d; want %d each", r.ReplayHits, r.IdemHits, c.Lookups)
			}
			if r.ReplayAbsentHits != 0 || r.IdemAbsentHits != 0 {
				t.Errorf("absent keys found: replay %d, idem %d", r.ReplayAbsentHits, r.IdemAbsentHits)
			}
			if r.Ledger.Generations < 1 || r.Ledger.Generations > 3 {
				t.Errorf("%d live generations; want 1–3 (entries span one max TTL)", r.Ledger.Generations)
			}
			if keep && r.OutcomeHits != r.OutcomeChecked {
				t.Errorf("outcomes kept: %d of %d intact", r.OutcomeHits, r.OutcomeChecked)
			}
			// The last ack floor passed to PruneOutcomes is below the newest
			// messages, so some outcomes are left and most are gone.
			if !keep && (r.OutcomeHits == 0 || r.OutcomeHits*2 > r.OutcomeChecked) {
				t.Errorf("outcomes pruned as acked: %d of %d intact; want some, under half", r.OutcomeHits, r.OutcomeChecked)
			}
			if len(r.Prune) != 2 {
				t.Fatalf("%d prune runs; want 2", len(r.Prune))
			}
			for _, p := range r.Prune {
				if p.Stats.Generations < 1 || p.Stats.Held != 0 {
					t.Errorf("%d messages: Prune deleted %d generations, held %d; want ≥ 1, 0", p.Messages, p.Stats.Generations, p.Stats.Held)
				}
				if p.Stats.Entries < 2*uint64(p.Messages) {
					t.Errorf("%d messages: Prune dropped %d entries; want ≥ %d", p.Messages, p.Stats.Entries, 2*p.Messages)
				}
				if !p.Gone {
					t.Errorf("%d messages: expired entries still found after Prune", p.Messages)
				}
			}
			if !r.ok(c) {
				t.Error("run reports failed checks")
			}
			if r.Mem.BlockCacheCapacity != store.DefaultCacheBytes || r.Mem.MemTableBytes == 0 || r.Mem.Tables+int64(r.Mem.MemTables) == 0 {
				t.Errorf("ledger memory stats look empty: %+v", r.Mem)
			}
		})
	}
}
