package store

import (
	"sync"

	"github.com/bits-and-blooms/bloom/v3"
)

// Generation filters. Almost every replay and idempotency lookup misses
// (a new message), and a miss still costs Pebble a seek through the
// memtables and every level of each generation it probes: some 4 µs per
// generation on a warm ledger, and several times that once the ledger
// holds a whole freshness window. The ledger therefore keeps in memory,
// per generation, a bloom filter of the replay and idempotency keys
// written to it, and a lookup skips a generation whose filter says the
// key cannot be there.
//
// A false "cannot be there" would let a replay through, so a filter is
// trusted only when it has seen every key of its generation:
//
//   - A key is added to its generation's filter when a Batch stages it,
//     before it can be in the database or in a batch another lookup reads.
//     A batch that is discarded leaves its keys behind: a false positive,
//     which only costs a probe.
//   - A generation that held entries when the database was opened (its
//     metadata is written in the same Pebble batch as its entries, so
//     loadGens lists every such generation) has no filter: its lookups
//     probe Pebble until it is pruned. A restarted gateway probes as
//     before until the generations written before the restart are dead,
//     about one generation width; nothing is read at open.
//   - A generation Prune deletes loses its filter for good (a marker of
//     a few dozen bytes stays until the ledger closes), since a batch
//     staged before the prune may still write to it.
//   - A reopen after a failed write starts over, as at open.
//
// Batch writes are the only writes of replay and idempotency keys besides
// MarkAcked, which rewrites a key that is already there.
// TestFiltersNeverChangeAnAnswer runs random batches, prunes, reopens
// and acknowledgements against a ledger with filters and one without.
//
// A filter costs about 1.2 bytes per key (10 bits for 1 % false
// positives), more while a chain grows.
const (
	// filterFP is the false-positive rate of each filter: one lookup
	// in a hundred probes Pebble needlessly.
	filterFP = 0.01
	// filterMinKeys and filterMaxKeys bound a filter's capacity. A new
	// generation's filter is sized for a quarter more keys than the
	// largest generation the ledger holds (steady traffic fills each
	// alike); one that fills up is followed by one four times its size,
	// so that a ledger whose traffic ramps up from nothing probes a
	// short chain.
	filterMinKeys = 1 << 16
	filterMaxKeys = 1 << 24
	filterGrowth  = 4
)

// genFilters holds the filters of one open database.
type genFilters struct {
	mu   sync.RWMutex
	gens map[uint64]*genFilter
	// loaded is the key count of the largest generation loaded at open
	// (its writes halved: a gateway writes each key twice, provisional
	// and decided, and a generation's metadata counts writes).
	loaded uint64
	off    bool // every probe reads Pebble (tests)
}

// genFilter is one generation's filter: a chain of bloom filters, keys
// added to the last. A nil chain (untrusted) means the generation may
// hold keys no filter saw.
type genFilter struct {
	chain []*bloom.BloomFilter
	keys  uint // keys added to the last filter of the chain
	cap   uint // the last filter's capacity
	total uint // keys added to the chain
}

// newGenFilters returns the filters of a database just opened with
// generations loaded: those get none.
func newGenFilters(loaded []genMeta) *genFilters {
	f := &genFilters{gens: make(map[uint64]*genFilter, len(loaded))}
	for _, g := range loaded {
		f.gens[g.gen] = &genFilter{}
		f.loaded = max(f.loaded, g.count/2)
	}
	return f
}

// newSize is the capacity of a new generation's filter.
func (f *genFilters) newSize() uint {
	n := f.loaded
	for _, g := range f.gens {
		n = max(n, uint64(g.total))
	}
	return uint(min(max(n+n/4, filterMinKeys), filterMaxKeys))
}

// add records that key, of generation gen, is staged.
func (f *genFilters) add(gen uint64, key []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.gens[gen]
	if !ok {
		g = &genFilter{}
		g.extend(f.newSize())
		f.gens[gen] = g
	}
	if g.chain == nil || g.test(key) {
		return // untrusted (lookups probe Pebble anyway), or seen
	}
	if g.keys >= g.cap {
		g.extend(min(g.cap*filterGrowth, filterMaxKeys))
	}
	g.chain[len(g.chain)-1].Add(key)
	g.keys++
	g.total++
}

func (g *genFilter) extend(n uint) {
	g.chain = append(g.chain, bloom.NewWithEstimates(n, filterFP))
	g.keys, g.cap = 0, n
}

// mayHold reports whether key, of generation gen, may be in the database:
// false only when gen's filter is trusted and has not seen key.
func (f *genFilters) mayHold(gen uint64, key []byte) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	g := f.gens[gen]
	return f.off || g == nil || g.chain == nil || g.test(key)
}

// bytes returns the filters' memory.
func (f *genFilters) bytes() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var n uint64
	for _, g := range f.gens {
		for _, b := range g.chain {
			n += uint64(b.Cap() / 8)
		}
	}
	return n
}

func (g *genFilter) test(key []byte) bool {
	for _, b := range g.chain {
		if b.Test(key) {
			return true
		}
	}
	return false
}

// distrust drops gen's filter: it may hold keys no filter will see.
func (f *genFilters) distrust(gen uint64) {
	f.mu.Lock()
	f.gens[gen] = &genFilter{}
	f.mu.Unlock()
}
