package store

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// ledgerComparer orders keys bytewise. Its Split is DefaultSplit: the
// whole user key is the "prefix", so the bloom filters Open configures on
// every level cover exact keys and SeekPrefixGE (with UseL6Filters) skips
// every table that cannot hold the key. Every lookup is an exact-key
// probe, so a shorter prefix would only make the filters less selective.
var ledgerComparer = pebble.DefaultComparer

// genMeta is one generation's metadata, persisted under genKey and
// mirrored in Ledger.gens. It is written in the same batch as the entries
// it describes, so after a crash it is never behind them.
type genMeta struct {
	gen    uint64
	maxSeq uint64 // highest ingress sequence of a replay entry written to it
	count  uint64 // entries written (a rewrite counts again)
}

// genOf returns the generation of an entry expiring at t (t validated by
// checkTime, so UnixNano is positive).
func (l *Ledger) genOf(t time.Time) uint64 {
	return uint64(t.UnixNano()) / l.width
}

// genDead reports whether every entry of gen is past Expires+Lookback at
// now: the latest expiry it can hold is (gen+1)·width − 1 ns.
func (l *Ledger) genDead(gen uint64, now time.Time) bool {
	end := time.Unix(0, int64((gen+1)*l.width))
	return !end.Add(l.lookback).After(now)
}

func loadGens(db *pebble.DB) ([]genMeta, error) {
	it, err := db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{kindGen},
		UpperBound: []byte{kindGen + 1},
	})
	if err != nil {
		return nil, readError("generations", err)
	}
	defer it.Close()
	var gens []genMeta
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != 9 {
			return nil, fmt.Errorf("store: generation key %x: %w", k, ErrCorrupt)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, readError("generations", err)
		}
		vs, err := decodeUvarints("generation metadata", v, 2)
		if err != nil {
			return nil, err
		}
		gens = append(gens, genMeta{gen: binary.BigEndian.Uint64(k[1:]), maxSeq: vs[0], count: vs[1]})
	}
	if err := it.Error(); err != nil {
		return nil, readError("generations", err)
	}
	return gens, nil
}

// searchGens appends to dst the generations a lookup at now must probe:
// every generation that may hold a live entry (not dead at now), and older
// ones that may hold an entry whose message is above the ack floor (a
// late redelivery must find its entry). It also returns the ack floor.
func (l *Ledger) searchGens(now time.Time, dst []uint64) ([]uint64, uint64) {
	l.gmu.RLock()
	defer l.gmu.RUnlock()
	for _, g := range l.gens {
		if g.maxSeq > l.ackFloor || !l.genDead(g.gen, now) {
			dst = append(dst, g.gen)
		}
	}
	return dst, l.ackFloor
}

// mergeGens returns the generation list with delta folded in, and the
// merged metadata of the generations delta touches.
func mergeGens(gens []genMeta, delta map[uint64]genMeta) (all, touched []genMeta) {
	all = slices.Clone(gens)
	for _, d := range delta {
		i, found := slices.BinarySearchFunc(all, d.gen, func(g genMeta, gen uint64) int {
			switch {
			case g.gen < gen:
				return -1
			case g.gen > gen:
				return 1
			}
			return 0
		})
		if !found {
			all = slices.Insert(all, i, genMeta{gen: d.gen})
		}
		all[i].maxSeq = max(all[i].maxSeq, d.maxSeq)
		all[i].count += d.count
		touched = append(touched, all[i])
	}
	return all, touched
}
