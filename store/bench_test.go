package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// big is a ledger with 1M replay entries spread over three generations
// and compacted to the bottom level, built once per `go test -bench` run
// and removed by TestMain.
var big struct {
	once sync.Once
	dir  string
	l    *Ledger
	err  error
}

const bigN = 1_000_000

func TestMain(m *testing.M) {
	code := m.Run()
	if big.l != nil {
		_ = big.l.Close()
	}
	if big.dir != "" {
		_ = os.RemoveAll(big.dir)
	}
	os.Exit(code)
}

func bigLedger(b *testing.B) *Ledger {
	big.once.Do(func() {
		big.dir, big.err = os.MkdirTemp("", "store-bench-")
		if big.err != nil {
			return
		}
		big.l, big.err = Open(filepath.Join(big.dir, "ledger"), Options{})
		if big.err != nil {
			return
		}
		for start := 0; start < bigN && big.err == nil; start += 10_000 {
			bt := big.l.NewBatch()
			for i := start; i < start+10_000 && big.err == nil; i++ {
				// Expiries over 10 minutes: three generations.
				exp := t0.Add(time.Duration(i%600) * time.Second)
				big.err = bt.PutReplay(rkey(fmt.Sprintf("present-%08d-%024d", i, i)), rentry(uint64(i+1), exp))
			}
			if big.err == nil {
				big.err = bt.Commit()
			}
			bt.Close()
		}
		if big.err == nil {
			big.err = big.l.db.Compact(context.Background(), []byte{0}, []byte{0xff}, true)
		}
	})
	if big.err != nil {
		b.Fatal(big.err)
	}
	return big.l
}

func missKeys(n int) []ReplayKey {
	keys := make([]ReplayKey, n)
	for i := range keys {
		keys[i] = rkey(fmt.Sprintf("absent-%08d-%024d", i, i))
	}
	return keys
}

// BenchmarkLookupMiss: Replay of an absent id against 1M entries (64 MiB
// block cache, bloom filters, compacted), the common case for fresh
// traffic. "batch" reuses the Batch's iterator as the gateway does;
// "ledger" is the read-only convenience that opens one per call.
func BenchmarkLookupMiss(b *testing.B) {
	l := bigLedger(b)
	keys := missKeys(1 << 16)
	now := t0.Add(time.Minute)
	if g, _ := l.searchGens(now, nil); len(g) != 3 {
		b.Fatalf("lookups probe %d generations; want 3", len(g))
	}
	b.Run("batch", func(b *testing.B) {
		bt := l.NewBatch()
		defer func() { bt.Close() }()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if i%4096 == 0 { // a fetch batch's worth, then a fresh Batch
				bt.Close()
				bt = l.NewBatch()
			}
			if _, ok, err := bt.Replay(keys[i%len(keys)], now); ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("ledger", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, ok, err := l.Replay(keys[i%len(keys)], now); ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
}

// BenchmarkLookupHit: Replay of a present id against 1M entries.
func BenchmarkLookupHit(b *testing.B) {
	l := bigLedger(b)
	now := t0.Add(time.Minute)
	keys := make([]ReplayKey, 1<<16)
	for i := range keys {
		j := (i * 7919) % bigN
		keys[i] = rkey(fmt.Sprintf("present-%08d-%024d", j, j))
	}
	bt := l.NewBatch()
	defer bt.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok, err := bt.Replay(keys[i%len(keys)], now); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkBatchCommit256: one fetch batch on a real disk. "put" is 256
// PutReplay and one synced commit; "gateway" adds the lookups the gateway
// makes for each message (Replay, Idem) and the PutIdem.
func BenchmarkBatchCommit256(b *testing.B) {
	for _, withLookups := range []bool{false, true} {
		name := map[bool]string{false: "put", true: "gateway"}[withLookups]
		b.Run(name, func(b *testing.B) {
			l := openTest(b, Options{})
			now := t0
			exp := now.Add(5 * time.Minute)
			b.ReportAllocs()
			b.ResetTimer()
			seq := uint64(0)
			for i := 0; i < b.N; i++ {
				bt := l.NewBatch()
				for j := 0; j < 256; j++ {
					seq++
					k := rkey(fmt.Sprintf("msg-%016d-%016d", seq, seq))
					if withLookups {
						if _, ok, err := bt.Replay(k, now); ok || err != nil {
							b.Fatal(ok, err)
						}
						if _, ok, err := bt.Idem(IdemKey{k.Tenant, k.Agent, k.MessageID}, now); ok || err != nil {
							b.Fatal(ok, err)
						}
					}
					if err := bt.PutReplay(k, rentry(seq, exp)); err != nil {
						b.Fatal(err)
					}
					if withLookups {
						if err := bt.PutIdem(IdemKey{k.Tenant, k.Agent, k.MessageID}, IdemEntry{MessageID: k.MessageID, Expires: exp}); err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := bt.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*256), "ns/msg")
		})
	}
}

// BenchmarkBatchCommit8: the batch a gateway decides below saturation
// (8 messages at 6,000 msgs/s on two cores): a replay lookup, a
// PutReplay and an outcome of the given size per message, one synced
// commit. What one commit costs the decider there, and how much of it the
// outcomes' bytes are (the WAL's fdatasync covers more pages).
func BenchmarkBatchCommit8(b *testing.B) {
	for _, size := range []int{40, 4000} {
		b.Run(fmt.Sprintf("outcome=%dB", size), func(b *testing.B) {
			l := openTest(b, Options{})
			now := t0
			exp := now.Add(5 * time.Minute)
			b.ReportAllocs()
			b.ResetTimer()
			seq := uint64(0)
			for i := 0; i < b.N; i++ {
				bt := l.NewBatch()
				for j := 0; j < 8; j++ {
					seq++
					k := rkey(fmt.Sprintf("msg-%016d-%016d", seq, seq))
					if _, ok, err := bt.Replay(k, now); ok || err != nil {
						b.Fatal(ok, err)
					}
					if err := bt.PutReplay(k, rentry(seq, exp)); err != nil {
						b.Fatal(err)
					}
					if err := bt.PutOutcome(seq, make([]byte, size)); err != nil {
						b.Fatal(err)
					}
				}
				if err := bt.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPrune: pruning one expired generation of 1k vs 100k entries.
// Each iteration first fills the generation (that dominates ns/op); the
// Prune call alone is reported as prune-ns/op.
func BenchmarkPrune(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("expired=%d", n), func(b *testing.B) {
			l := openTest(b, Options{})
			width := time.Duration(l.width)
			var pruning time.Duration
			for i := 0; i < b.N; i++ {
				exp := t0.Add(time.Duration(i) * width)
				for start := 0; start < n; start += 10_000 {
					bt := l.NewBatch()
					for j := start; j < min(n, start+10_000); j++ {
						if err := bt.PutReplay(rkey(fmt.Sprintf("m-%d-%08d", i, j)), acked(rentry(uint64(j+1), exp))); err != nil {
							b.Fatal(err)
						}
					}
					if err := bt.Commit(); err != nil {
						b.Fatal(err)
					}
					bt.Close()
				}
				start := time.Now()
				st, err := l.Prune(exp.Add(width+time.Hour), uint64(n))
				pruning += time.Since(start)
				if err != nil || st.Generations != 1 {
					b.Fatal(st, err)
				}
			}
			b.ReportMetric(float64(pruning.Nanoseconds())/float64(b.N), "prune-ns/op")
		})
	}
}

// BenchmarkGatewayTraffic: the ledger traffic of the gateway's batches in
// steady state, one op per fetch batch of 256 messages: per message a
// Replay and an Idem lookup, PutReplay, PutIdem and a 2.5 KiB outcome;
// one synced commit; outcomes pruned every 8 batches as the gateway's
// ack floor does. lookup-ns/msg is what the lookups cost once the store
// has flushed tables (it grew 10× with the store while the block cache
// kept nothing: TestBlockCacheKeepsBlocks).
func BenchmarkGatewayTraffic(b *testing.B) {
	l := openTest(b, Options{MemTableBytes: 32 << 20})
	outcome := make([]byte, 2500)
	seq := uint64(0)
	now := t0
	var lookup time.Duration
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		bt := l.NewBatch()
		for j := 0; j < 256; j++ {
			seq++
			now = now.Add(100 * time.Microsecond)
			exp := now.Add(5 * time.Minute)
			k := ReplayKey{Tenant: fmt.Sprintf("tenant-%d", seq%2), Agent: fmt.Sprintf("UAGENT%050d", seq%8), MessageID: fmt.Sprintf("01J%023d", seq)}
			ik := IdemKey{Tenant: k.Tenant, Agent: k.Agent, Key: "idem-" + k.MessageID}
			lookup += newMessage(b, bt, now, seq, k, ik, rentry(seq, exp), IdemEntry{MessageID: k.MessageID, Expires: exp}, outcome)
		}
		if err := bt.Commit(); err != nil {
			b.Fatal(err)
		}
		bt.Close()
		if i%8 == 7 {
			if err := l.PruneOutcomes(seq - 512); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(lookup.Nanoseconds())/float64(seq), "lookup-ns/msg")
}

// newMessage stages one new message as the gateway's ledger gate does:
// replay and idempotency lookups (both must miss), their entries and the
// outcome. It returns the lookups' time.
func newMessage(b *testing.B, bt *Batch, now time.Time, seq uint64, k ReplayKey, ik IdemKey, e ReplayEntry, ie IdemEntry, outcome []byte) time.Duration {
	b.Helper()
	start := time.Now()
	if _, ok, err := bt.Replay(k, now); ok || err != nil {
		b.Fatal(ok, err)
	}
	if _, ok, err := bt.Idem(ik, now); ok || err != nil {
		b.Fatal(ok, err)
	}
	lookup := time.Since(start)
	if err := bt.PutReplay(k, e); err != nil {
		b.Fatal(err)
	}
	if err := bt.PutIdem(ik, ie); err != nil {
		b.Fatal(err)
	}
	if err := bt.PutOutcome(seq, outcome); err != nil {
		b.Fatal(err)
	}
	return lookup
}

// BenchmarkSustainedTraffic: what the ledger costs a gateway that has
// run at full speed for longer than the freshness window, which the
// bench's seconds-long runs never reach. b.N messages at a simulated
// 10,000 msgs/s, each with a 5-minute TTL and a random message id from
// one of 8 agents, in batches of 200: the replay and idempotency
// lookups, their entries and a 3.9 KiB outcome (a plain message's), one
// synced commit per batch, outcomes pruned behind a simulated ack floor
// and expired generations pruned as the gateway's maintenance does.
// Four million messages (-benchtime 4000000x) are 6.7 simulated
// minutes. It reports the lookups' time, the bytes Pebble's flushes and
// compactions wrote, and the process's CPU per message (compactions run
// in the background); per generation width, since the width trades
// lookups (every live generation is probed) against compactions (the
// current generation's entries are rewritten until it closes).
func BenchmarkSustainedTraffic(b *testing.B) {
	window := 5*time.Minute + 30*time.Second // the gateway's max_ttl + grace
	for _, div := range []int{1, 8} {
		b.Run(fmt.Sprintf("width=%v", window/time.Duration(div)), func(b *testing.B) {
			l := openTest(b, Options{MemTableBytes: 32 << 20, GenWidth: window / time.Duration(div), Lookback: 30 * time.Second})
			outcome := make([]byte, 3900)
			now := t0
			var lookup time.Duration
			cpu0 := processCPU()
			b.ResetTimer()
			seq := uint64(0)
			for batch := 0; seq < uint64(b.N); batch++ {
				bt := l.NewBatch()
				for j := 0; j < 200 && seq < uint64(b.N); j++ {
					seq++
					now = now.Add(100 * time.Microsecond)
					exp := now.Add(5 * time.Minute)
					id := fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
					k := ReplayKey{Tenant: fmt.Sprintf("tenant-%d", seq%2), Agent: fmt.Sprintf("UAGENT%050d", seq%8), MessageID: id}
					ik := IdemKey{Tenant: k.Tenant, Agent: k.Agent, Key: id}
					e := rentry(seq, exp)
					e.Decision.OutputMsgID = "agentgw-" + id + "-allow"
					lookup += newMessage(b, bt, now, seq, k, ik, e, IdemEntry{MessageID: id, Expires: exp, Decision: e.Decision}, outcome)
				}
				if err := bt.Commit(); err != nil {
					b.Fatal(err)
				}
				bt.Close()
				if seq > 400 && batch%2 == 1 {
					if err := l.PruneOutcomes(seq - 400); err != nil {
						b.Fatal(err)
					}
				}
				if seq > 400 && batch%50 == 49 {
					if _, err := l.Prune(now, seq-400); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			db, err := l.acquire()
			if err != nil {
				b.Fatal(err)
			}
			m := db.Metrics()
			l.mu.RUnlock()
			var compacted, flushed uint64
			for i := range m.Levels {
				compacted += m.Levels[i].TableBytesCompacted
				flushed += m.Levels[i].TableBytesFlushed
			}
			n := float64(seq)
			b.ReportMetric(float64(lookup.Nanoseconds())/n, "lookup-ns/msg")
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/n, "cpu-ns/msg")
			b.ReportMetric(float64(flushed)/n, "flushed-B/msg")
			b.ReportMetric(float64(compacted)/n, "compacted-B/msg")
			b.ReportMetric(float64(m.DiskSpaceUsage())/(1<<20), "disk-MiB")
			b.ReportMetric(float64(m.Levels[0].TablesCount), "L0-tables")
		})
	}
}
