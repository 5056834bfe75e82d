package store

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"
)

// A ledger that wrote its keys since it opened answers lookups of new
// keys from its filters, without reading Pebble, and still finds every
// key it wrote.
func TestFiltersAnswerMisses(t *testing.T) {
	l := openTest(t, Options{})
	exp := t0.Add(time.Minute)
	var puts []put
	for i := range 100 {
		puts = append(puts, put{rkey(fmt.Sprintf("old-%d", i)), rentry(uint64(i+1), exp)})
	}
	commitPuts(t, l, puts...)
	for i := range 1000 {
		if _, ok, err := l.Replay(rkey(fmt.Sprintf("new-%d", i)), t0); ok || err != nil {
			t.Fatalf("Replay(new-%d) = %v, %v", i, ok, err)
		}
	}
	st := l.Stats()
	// 1 % false positives: about 10 of the 1,000 misses read Pebble.
	if st.FilteredProbes < 950 || st.PebbleProbes > 50 {
		t.Fatalf("filtered %d, read %d probes of 1000 misses; want nearly all filtered", st.FilteredProbes, st.PebbleProbes)
	}
	for _, p := range puts {
		if e, ok, err := l.Replay(p.k, t0); !ok || err != nil || e.Seq != p.e.Seq {
			t.Fatalf("Replay(%s) = %+v, %v, %v", p.k.MessageID, e, ok, err)
		}
	}
	if st.FilterBytes == 0 {
		t.Fatal("Stats.FilterBytes = 0 with a filter in use")
	}
}

// Generations that held entries when the ledger opened were written
// without a filter: their lookups read Pebble, also after new writes to
// them.
func TestFiltersDistrustGenerationsFromBeforeOpen(t *testing.T) {
	exp := t0.Add(time.Minute)
	l := reopened(t, Options{}, put{rkey("before"), rentry(1, exp)})
	commitPuts(t, l, put{rkey("after"), rentry(2, exp)})
	for _, id := range []string{"before", "after"} {
		if _, ok, err := l.Replay(rkey(id), t0); !ok || err != nil {
			t.Fatalf("Replay(%s) after reopen = %v, %v", id, ok, err)
		}
	}
	if _, ok, err := l.Replay(rkey("never"), t0); ok || err != nil {
		t.Fatalf("Replay(never) = %v, %v", ok, err)
	}
	if st := l.Stats(); st.FilteredProbes != 0 || st.PebbleProbes != 3 {
		t.Fatalf("filtered %d, read %d; want every probe of the old generation read", st.FilteredProbes, st.PebbleProbes)
	}
}

// A batch staged before a Prune deleted its generation writes to it
// afterwards; a later write to that generation must not make a filter
// that has not seen the first.
func TestFiltersDistrustPrunedGenerations(t *testing.T) {
	l := openTest(t, Options{GenWidth: time.Minute})
	exp := t0.Add(30 * time.Second)
	commitPuts(t, l, put{rkey("first"), rentry(1, exp)})

	b := l.NewBatch()
	if err := b.PutReplay(rkey("staged"), rentry(2, exp.Add(time.Second))); err != nil {
		t.Fatal(err)
	}
	st, err := l.Prune(t0.Add(10*time.Minute), 100)
	if err != nil || st.Generations != 1 {
		t.Fatalf("Prune = %+v, %v; want the generation deleted", st, err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	commitPuts(t, l, put{rkey("later"), rentry(3, exp.Add(2*time.Second))})

	for _, id := range []string{"staged", "later"} {
		if _, ok, err := l.Replay(rkey(id), t0); !ok || err != nil {
			t.Fatalf("Replay(%s) = %v, %v", id, ok, err)
		}
	}
}

// A filter that fills up is followed by a larger one: nothing added is
// lost, and misses are still mostly answered.
func TestFilterGrows(t *testing.T) {
	f := newGenFilters(nil)
	key := func(s string, i int) []byte {
		return appendEntryKey(nil, kindReplay, 7, "acme", "UAGENT", fmt.Sprintf("%s-%d", s, i))
	}
	const n = 3 * filterMinKeys
	for i := range n {
		f.add(7, key("in", i))
	}
	if c := len(f.gens[7].chain); c < 2 {
		t.Fatalf("chain of %d filters after %d keys; want it grown", c, n)
	}
	for i := range n {
		if !f.mayHold(7, key("in", i)) {
			t.Fatalf("key %d lost", i)
		}
	}
	fp := 0
	for i := range 20000 {
		if f.mayHold(7, key("out", i)) {
			fp++
		}
	}
	// Each filter of the chain answers 1 % of misses wrongly.
	if fp > 1000 {
		t.Fatalf("%d of 20000 misses not filtered", fp)
	}
	if !f.mayHold(8, key("in", 0)) {
		t.Fatal("a generation without a filter must be probed")
	}
	f.distrust(7)
	if !f.mayHold(7, key("out", 0)) {
		t.Fatal("a distrusted generation must be probed")
	}
	f.add(7, key("new", 0))
	if f.gens[7].chain != nil {
		t.Fatal("a write made a distrusted generation's filter trusted again")
	}
}

// The filters change which probes read Pebble, never an answer: the same
// random sequence of batches (committed, started in the background,
// discarded), prunes, acknowledgements and reopens, given to a ledger
// with filters and to one without, gets the same answer to every
// lookup.
func TestFiltersNeverChangeAnAnswer(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			opts := []Options{
				{GenWidth: time.Minute, Lookback: 5 * time.Second, SkipVerify: true},
				{GenWidth: time.Minute, Lookback: 5 * time.Second, SkipVerify: true, noFilters: true},
			}
			dirs := []string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")}
			ls := make([]*Ledger, 2)
			var filtered uint64 // probes the filters answered, over every reopen
			reopen := func() {
				if ls[0] != nil {
					filtered += ls[0].Stats().FilteredProbes
				}
				for i := range ls {
					if ls[i] != nil {
						if err := ls[i].Close(); err != nil {
							t.Fatal(err)
						}
					}
					l, err := Open(dirs[i], opts[i])
					if err != nil {
						t.Fatal(err)
					}
					ls[i] = l
				}
			}
			reopen()
			var bs []*Batch // open batches, closed before the ledgers on failure
			defer func() {
				for _, b := range bs {
					b.Close()
				}
				for _, l := range ls {
					_ = l.Close()
				}
			}()
			now := t0
			seq := uint64(0)
			rkeyN := func() ReplayKey { return rkey(fmt.Sprintf("m%d", rng.IntN(400))) }
			ikeyN := func() IdemKey {
				return IdemKey{Tenant: "acme", Agent: "UAGENT", Key: fmt.Sprintf("k%d", rng.IntN(400))}
			}
			same := func(what string, a, b any) {
				t.Helper()
				if fmt.Sprint(a) != fmt.Sprint(b) {
					t.Fatalf("%s: with filters %v, without %v", what, a, b)
				}
			}
			// Commits started in the background; a prune waits for them,
			// so that it comes after their writes in both ledgers.
			var started []*Commit
			wait := func() {
				for _, c := range started {
					if err := c.Wait(); err != nil {
						t.Fatal(err)
					}
				}
				started = nil
			}
			prune := func() {
				floor := max(seq, 20) - uint64(rng.IntN(20))
				for _, l := range ls {
					if _, err := l.Prune(now, floor); err != nil {
						t.Fatal(err)
					}
				}
			}
			for step := range 600 {
				now = now.Add(time.Duration(rng.IntN(4000)) * time.Millisecond)
				switch op := rng.IntN(20); {
				case op < 14:
					bs = []*Batch{ls[0].NewBatch(), ls[1].NewBatch()}
					for range 1 + rng.IntN(8) {
						k, ik := rkeyN(), ikeyN()
						at := now.Add(time.Duration(rng.IntN(120)-90) * time.Second)
						r0, ok0, err0 := bs[0].Replay(k, at)
						r1, ok1, err1 := bs[1].Replay(k, at)
						same(fmt.Sprintf("step %d Replay(%s)", step, k.MessageID), fmt.Sprint(r0, ok0, err0), fmt.Sprint(r1, ok1, err1))
						i0, iok0, ierr0 := bs[0].Idem(ik, at)
						i1, iok1, ierr1 := bs[1].Idem(ik, at)
						same(fmt.Sprintf("step %d Idem(%s)", step, ik.Key), fmt.Sprint(i0, iok0, ierr0), fmt.Sprint(i1, iok1, ierr1))
						seq++
						exp := now.Add(time.Duration(rng.IntN(150)-60) * time.Second)
						withIdem := rng.IntN(2) == 0
						for _, b := range bs {
							if err := b.PutReplay(k, rentry(seq, exp)); err != nil {
								t.Fatal(err)
							}
							if !withIdem {
								continue
							}
							if err := b.PutIdem(ik, IdemEntry{MessageID: k.MessageID, Expires: exp}); err != nil {
								t.Fatal(err)
							}
						}
					}
					if rng.IntN(4) == 0 {
						// A prune while the batches are staged: their
						// writes may land in a generation it deletes.
						wait()
						prune()
					}
					switch rng.IntN(4) {
					case 0:
						for _, b := range bs {
							b.Close()
						}
					case 1:
						for _, b := range bs {
							started = append(started, b.Start())
						}
					default:
						for _, b := range bs {
							if err := b.Commit(); err != nil {
								t.Fatal(err)
							}
							b.Close()
						}
					}
				case op < 16:
					wait()
					prune()
				case op < 18:
					wait()
					keys := []ReplayKey{rkeyN(), rkeyN()}
					for _, l := range ls {
						if err := l.MarkAcked(keys, now); err != nil {
							t.Fatal(err)
						}
					}
				default:
					wait()
					reopen()
				}
			}
			wait()
			for i := range 400 {
				k := rkey(fmt.Sprintf("m%d", i))
				ik := IdemKey{Tenant: "acme", Agent: "UAGENT", Key: fmt.Sprintf("k%d", i)}
				for _, at := range []time.Time{now.Add(-time.Minute), now} {
					r0, ok0, err0 := ls[0].Replay(k, at)
					r1, ok1, err1 := ls[1].Replay(k, at)
					same("final Replay("+k.MessageID+")", fmt.Sprint(r0, ok0, err0), fmt.Sprint(r1, ok1, err1))
					b0, b1 := ls[0].NewBatch(), ls[1].NewBatch()
					i0, iok0, ierr0 := b0.Idem(ik, at)
					b0.Close()
					i1, iok1, ierr1 := b1.Idem(ik, at)
					b1.Close()
					same("final Idem("+ik.Key+")", fmt.Sprint(i0, iok0, ierr0), fmt.Sprint(i1, iok1, ierr1))
				}
			}
			if filtered += ls[0].Stats().FilteredProbes; filtered < 100 {
				t.Fatalf("the filters answered %d probes; want them used", filtered)
			}
		})
	}
}
