// Command ledgermem measures the replay/idempotency ledger (package store)
// against a memory budget: peak RSS ≤ 256 MiB with 1 million live
// entries, and a prune cost independent of how many entries expired.
//
// It opens a real Pebble ledger in a temp dir with the gateway's options,
// writes -messages ingress messages the way the gateway records them (per
// message: outcome, replay and idempotency lookups of absent keys, then a
// PutOutcome, a PutReplay and a PutIdem, each entry staged twice as the
// ledger gate and finish do; one synced commit per -batch messages), with
// simulated time such that every entry is live at the end, runs lookups
// of present and absent keys, and reports the peak RSS (VmHWM) of this
// process, Go heap statistics and Pebble's memory. Then it lets every
// entry expire and times Prune, against a second ledger of -prune-small
// messages.
//
//	go run ./internal/ledgermem                  # outcomes pruned as acked
//	go run ./internal/ledgermem -keep-outcomes   # ack floor never moves
//
// RSS is only meaningful for a fresh process: run it, don't benchmark it.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/agentgw/agentgw/gateway"
)

const mib = 1 << 20

func main() {
	c := config{}
	flag.IntVar(&c.Messages, "messages", 1_000_000, "ingress messages (each a replay and an idempotency entry and an outcome)")
	flag.IntVar(&c.Batch, "batch", 256, "messages per ledger batch (gateway consumer batch); one synced commit each")
	flag.IntVar(&c.OutcomeBytes, "outcome-bytes", 3109, "bytes of recorded outputs per message (a plain allow's encodeOutputs record)")
	flag.BoolVar(&c.KeepOutcomes, "keep-outcomes", false, "never prune outcomes (as if no ingress message were ever acked)")
	flag.IntVar(&c.Lookups, "lookups", 100_000, "lookups of each kind: replay and idempotency, of present and of absent keys")
	flag.IntVar(&c.PruneSmall, "prune-small", 10_000, "messages in the comparison ledger for the prune timing (0: none)")
	flag.Int64Var(&c.CacheBytes, "cache-bytes", 0, "store.Options.CacheBytes (0: the store default)")
	flag.Uint64Var(&c.MemTable, "memtable-bytes", gateway.LedgerMemTable, "store.Options.MemTableBytes (default: the gateway's)")
	flag.StringVar(&c.Dir, "dir", "", "parent directory of the temporary ledgers (default: $TMPDIR)")
	flag.Parse()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "ledgermem: "+format+"\n", args...)
	}
	r, err := run(c, logf)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ledgermem:", err)
		os.Exit(1)
	}
	report(c, r)
	if !r.ok(c) {
		fmt.Fprintln(os.Stderr, "ledgermem: lookups or pruning returned wrong results")
		os.Exit(1)
	}
}

// ok reports whether every check of the run passed.
func (r *result) ok(c config) bool {
	if r.ReplayHits != c.Lookups || r.IdemHits != c.Lookups || r.ReplayAbsentHits != 0 || r.IdemAbsentHits != 0 {
		return false
	}
	if c.KeepOutcomes && r.OutcomeHits != r.OutcomeChecked {
		return false
	}
	for _, p := range r.Prune {
		if !p.Gone || p.Stats.Generations == 0 {
			return false
		}
	}
	return true
}

func report(c config, r *result) {
	outcomes := "pruned below the ack floor every 30 s (steady state)"
	if c.KeepOutcomes {
		outcomes = "kept (ack floor never moves)"
	}
	fmt.Printf("ledger: %d messages live (%d replay + %d idempotency entries) in %d generations; outcomes %d B each, %s\n",
		r.Messages, r.Messages, r.Messages, r.Ledger.Generations, c.OutcomeBytes, outcomes)
	fmt.Printf("go %s, GOMAXPROCS %d, GOGC %s, cache %s\n", runtime.Version(), runtime.GOMAXPROCS(0), envOr("GOGC", "100"), mibs(r.Mem.BlockCacheCapacity))
	fmt.Printf("write:   %v (%v/message, %.0f messages/s; %d synced commits)\n",
		r.Write.Took.Round(time.Millisecond), r.Write.per(), float64(r.Write.N)/r.Write.Took.Seconds(), (r.Messages+c.Batch-1)/c.Batch)
	fmt.Printf("lookups: %d in %v (%v each); replay hits %d/%d, idem hits %d/%d, absent found %d+%d; outcomes intact %d/%d\n",
		r.Lookup.N, r.Lookup.Took.Round(time.Millisecond), r.Lookup.per(), r.ReplayHits, c.Lookups, r.IdemHits, c.Lookups,
		r.ReplayAbsentHits, r.IdemAbsentHits, r.OutcomeHits, r.OutcomeChecked)
	fmt.Printf("peak RSS (VmHWM): %s   RSS now: %s (anon %s, files %s)   target ≤ 256 MiB\n",
		mibs(int64(r.PeakRSS)), mibs(int64(r.RSS)), mibs(int64(r.RSSAnon)), mibs(int64(r.RSSFile)))
	g := r.Go
	fmt.Printf("go heap: alloc %s, in use %s, sys %s (all Go runtime: %s); %d GCs\n",
		mibs(int64(g.HeapAlloc)), mibs(int64(g.HeapInuse)), mibs(int64(g.HeapSys)), mibs(int64(g.Sys)), g.NumGC)
	m := r.Mem
	fmt.Printf("pebble: block cache %s of %s, memtables %s (%d), table readers %s, %d tables (%d in L0), disk %s\n",
		mibs(m.BlockCacheBytes), mibs(m.BlockCacheCapacity), mibs(int64(m.MemTableBytes)), m.MemTables,
		mibs(m.FileCacheBytes), m.Tables, m.L0Tables, mibs(int64(r.Ledger.DiskBytes)))
	fmt.Printf("key filters: %s; generation probes answered by a filter %d, read from Pebble %d\n",
		mibs(int64(r.Ledger.FilterBytes)), r.Ledger.FilteredProbes, r.Ledger.PebbleProbes)
	for _, p := range r.Prune {
		extra := ""
		if c.KeepOutcomes {
			extra = fmt.Sprintf(", PruneOutcomes %v", p.Outcomes)
		}
		fmt.Printf("prune:   %7d messages expired: Prune %v (%d generations, %d entries by the store's count)%s; old entries gone: %v\n",
			p.Messages, p.Took, p.Stats.Generations, p.Stats.Entries, extra, p.Gone)
	}
	fmt.Printf("peak RSS at exit: %s (includes the prune phase and the second ledger's own cache)\n", mibs(int64(r.EndPeakRSS)))
}

func mibs(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/mib) }

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
