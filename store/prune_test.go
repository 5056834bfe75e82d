package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func commitIdem(t testing.TB, l *Ledger, k IdemKey, e IdemEntry) {
	t.Helper()
	b := l.NewBatch()
	defer b.Close()
	if err := b.PutIdem(k, e); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestPrune(t *testing.T) {
	l := openTest(t, Options{})
	old, held, live := t0, t0.Add(10*time.Minute), t0.Add(time.Hour)
	if g := []uint64{l.genOf(old), l.genOf(held), l.genOf(live)}; g[0] == g[1] || g[1] == g[2] {
		t.Fatalf("generations %v not distinct; pick other times", g)
	}
	var puts []put
	for i := range 100 {
		puts = append(puts, put{rkey(fmt.Sprintf("old%03d", i)), rentry(uint64(i+1), old)})
		puts = append(puts, put{rkey(fmt.Sprintf("live%03d", i)), rentry(uint64(1000+i), live)})
	}
	puts = append(puts, put{rkey("held"), rentry(500, held)})
	commitPuts(t, l, puts...)
	ik := IdemKey{"acme", "UAGENT", "k-old"}
	commitIdem(t, l, ik, IdemEntry{MessageID: "old000", Expires: old})

	now := t0.Add(20 * time.Minute) // old and held generations are dead
	st, err := l.Prune(now, 400)    // the held entry (seq 500) is not acknowledged
	if err != nil {
		t.Fatal(err)
	}
	if st.Generations != 1 || st.Held != 1 || st.Entries != 101 {
		t.Fatalf("Prune = %+v; want 1 generation (101 entries) deleted, 1 held", st)
	}
	if got := l.Stats(); got.Generations != 2 || got.AckFloor != 400 {
		t.Fatalf("Stats = %+v; want 2 generations, ack floor 400", got)
	}
	// Deleted on disk, not just hidden by the ack floor: look with a
	// raw read.
	if _, _, err := l.db.Get(appendEntryKey(nil, kindReplay, l.genOf(old), "acme", "UAGENT", "old000")); err == nil {
		t.Fatal("entry of a pruned generation still on disk")
	}
	if _, _, err := l.db.Get(appendEntryKey(nil, kindIdem, l.genOf(old), "acme", "UAGENT", "k-old")); err == nil {
		t.Fatal("idempotency entry of a pruned generation still on disk")
	}
	if e, ok, err := l.Replay(rkey("held"), now); !ok || err != nil || e.Seq != 500 {
		t.Fatalf("Replay(held) = %v, %v, %v; want the unacknowledged entry kept", e.Seq, ok, err)
	}
	for i := range 100 {
		if _, ok, err := l.Replay(rkey(fmt.Sprintf("live%03d", i)), now); !ok || err != nil {
			t.Fatalf("Replay(live%03d) = %v, %v; want found", i, ok, err)
		}
	}

	// The ack floor passes the held entry: its generation goes too.
	st, err = l.Prune(now, 600)
	if err != nil || st.Generations != 1 || st.Held != 0 {
		t.Fatalf("Prune = %+v, %v; want the held generation deleted", st, err)
	}
	if _, ok, _ := l.Replay(rkey("held"), now); ok {
		t.Fatal("Replay(held) found an entry after its generation was pruned")
	}
	// A lower ack floor later does not bring anything back.
	if st, err := l.Prune(now, 1); err != nil || st.Generations != 0 || l.Stats().AckFloor != 600 {
		t.Fatalf("Prune(lower floor) = %+v, %v; ack floor %d; want nothing pruned, floor kept at 600", st, err, l.Stats().AckFloor)
	}
}

// TestPruneCostIsPerGeneration: the Pebble operations a Prune issues do
// not depend on how many entries the expired generations hold.
func TestPruneCostIsPerGeneration(t *testing.T) {
	ops := map[int]uint32{}
	for _, n := range []int{10, 5000} {
		l := openTest(t, Options{})
		var puts []put
		for i := range n {
			puts = append(puts, put{rkey(fmt.Sprintf("m%06d", i)), acked(rentry(uint64(i+1), t0))})
		}
		commitPuts(t, l, puts...)
		st, o, err := l.prune(t0.Add(time.Hour), uint64(n))
		if err != nil || st.Generations != 1 || st.Entries != uint64(n) {
			t.Fatalf("prune(%d entries) = %+v, %v", n, st, err)
		}
		ops[n] = o
	}
	if ops[10] != ops[5000] || ops[10] != 4 {
		t.Fatalf("Pebble ops to prune one generation: %v; want 4 (2 DeleteRange, 1 Delete, the horizon's Set) whatever its size", ops)
	}
}

func TestMarkersSetOnceAndPrune(t *testing.T) {
	const lookback = 30 * time.Second
	l := openTest(t, Options{Lookback: lookback})
	exp := t0.Add(time.Hour)
	b := l.NewBatch()
	for i, want := range []bool{true, false} {
		if ok, err := b.SetOnce("approval", "m1", exp); ok != want || err != nil {
			t.Fatalf("SetOnce #%d in batch = %v, %v; want %v", i+1, ok, err, want)
		}
	}
	if ok, err := b.SetOnce("replay", "m1", exp); !ok || err != nil {
		t.Fatalf("SetOnce(other kind) = %v, %v; want true", ok, err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b = l.NewBatch()
	if ok, err := b.SetOnce("approval", "m1", exp); ok || err != nil {
		t.Fatalf("SetOnce after commit = %v, %v; want false", ok, err)
	}
	b.Close()

	if st, err := l.Prune(exp, 0); err != nil || st.Markers != 0 {
		t.Fatalf("Prune at expiry = %+v, %v; want markers kept until expiry + Lookback", st, err)
	}
	st, err := l.Prune(exp.Add(lookback+time.Second), 0)
	if err != nil || st.Markers != 2 || st.MoreMarkers {
		t.Fatalf("Prune after expiry = %+v, %v; want 2 markers deleted", st, err)
	}
	// A marker gone may have been set: SetOnce takes one expiring by the
	// pruned marker's expiry as set, whatever clock judges it. The
	// entries' horizon does not move for markers.
	b = l.NewBatch()
	if ok, err := b.SetOnce("approval", "m1", exp); ok || err != nil {
		t.Fatalf("SetOnce after prune, same expiry = %v, %v; want false (it may have been set)", ok, err)
	}
	if ok, err := b.SetOnce("approval", "m2", exp.Add(-time.Minute)); ok || err != nil {
		t.Fatalf("SetOnce after prune, another id expiring earlier = %v, %v; want false", ok, err)
	}
	b.Close()
	if h := l.Horizon(); !h.IsZero() {
		t.Fatalf("Horizon after a prune of markers only = %v; want the zero time", h)
	}
	b = l.NewBatch()
	if ok, err := b.SetOnce("approval", "m1", exp.Add(time.Hour)); !ok || err != nil {
		t.Fatalf("SetOnce after prune = %v, %v; want true", ok, err)
	}
	b.Close()
	// The marker horizon survives a restart.
	dir := l.dir
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Open(dir, Options{Lookback: lookback})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b = l.NewBatch()
	defer b.Close()
	if ok, err := b.SetOnce("approval", "m1", exp); ok || err != nil {
		t.Fatalf("SetOnce after a restart, same expiry = %v, %v; want false", ok, err)
	}
}

func TestHolds(t *testing.T) {
	l := openTest(t, Options{})
	b := l.NewBatch()
	for id, d := range map[string]time.Duration{"a": time.Minute, "b": 2 * time.Minute, "c": 10 * time.Second} {
		if err := b.PutHold(id, t0.Add(d), []byte("value-"+id)); err != nil {
			t.Fatal(err)
		}
	}
	if d, v, ok, err := b.Hold("a"); !ok || err != nil || !d.Equal(t0.Add(time.Minute)) || string(v) != "value-a" {
		t.Fatalf("Hold(a) staged = %v, %q, %v, %v", d, v, ok, err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	due := func(now time.Time, limit int) string {
		t.Helper()
		hs, err := l.DueHolds(now, limit)
		if err != nil {
			t.Fatal(err)
		}
		s := ""
		for _, h := range hs {
			s += h.ID + "=" + string(h.Value) + " "
		}
		return s
	}
	if got, want := due(t0.Add(90*time.Second), 0), "c=value-c a=value-a "; got != want {
		t.Fatalf("DueHolds = %q; want %q", got, want)
	}
	if got, want := due(t0.Add(time.Hour), 1), "c=value-c "; got != want {
		t.Fatalf("DueHolds(limit 1) = %q; want %q", got, want)
	}
	// The next page starts after the hold given.
	after := func(now time.Time, h Hold) string {
		t.Helper()
		hs, err := l.DueHoldsAfter(now, h, 0)
		if err != nil {
			t.Fatal(err)
		}
		s := ""
		for _, h := range hs {
			s += h.ID + " "
		}
		return s
	}
	c, a := Hold{ID: "c", Deadline: t0.Add(10 * time.Second)}, Hold{ID: "a", Deadline: t0.Add(time.Minute)}
	for _, tc := range []struct {
		now   time.Duration
		after Hold
		want  string
	}{{time.Hour, c, "a b "}, {90 * time.Second, c, "a "}, {time.Hour, a, "b "}, {30 * time.Second, c, ""}} {
		if got := after(t0.Add(tc.now), tc.after); got != tc.want {
			t.Fatalf("DueHoldsAfter(now +%v, after %s) = %q; want %q", tc.now, tc.after.ID, got, tc.want)
		}
	}

	// Moving a hold's deadline removes it from its old place; deleting
	// removes it entirely.
	b = l.NewBatch()
	if err := b.PutHold("c", t0.Add(time.Hour), []byte("moved")); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteHold("a"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteHold("never-held"); err != nil {
		t.Fatalf("DeleteHold(missing) = %v; want nil", err)
	}
	if _, _, ok, err := b.Hold("a"); ok || err != nil {
		t.Fatalf("Hold(a) after staged delete = %v, %v; want gone", ok, err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, want := due(t0.Add(90*time.Second), 0), ""; got != want {
		t.Fatalf("DueHolds after move/delete = %q; want %q", got, want)
	}
	if got, want := due(t0.Add(2*time.Hour), 0), "b=value-b c=moved "; got != want {
		t.Fatalf("DueHolds later = %q; want %q", got, want)
	}

	// ScanHolds sees every hold, due or not, in deadline order, and stops
	// at fn's error.
	scan := ""
	if err := l.ScanHolds(func(h Hold) error { scan += h.ID + "=" + string(h.Value) + " "; return nil }); err != nil {
		t.Fatal(err)
	}
	if want := "b=value-b c=moved "; scan != want {
		t.Fatalf("ScanHolds = %q; want %q", scan, want)
	}
	stop := errors.New("stop")
	n := 0
	if err := l.ScanHolds(func(Hold) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("ScanHolds stopped by fn = %v after %d holds; want stop after 1", err, n)
	}
}

// TestBloomFiltersUsed: lookups of absent keys in a compacted ledger are
// answered by Pebble's bloom filters (on the bottom level too), not data
// blocks. The ledger's own filters (filter.go) do not cover a generation
// written before it opened, so its lookups reach Pebble.
func TestBloomFiltersUsed(t *testing.T) {
	var puts []put
	for i := range 5000 {
		puts = append(puts, put{rkey(fmt.Sprintf("m%06d", i)), rentry(uint64(i+1), t0.Add(time.Minute))})
	}
	l := reopened(t, Options{}, puts...)
	if err := l.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
		t.Fatal(err)
	}
	if n := l.db.Metrics().Levels[6].TablesCount; n == 0 {
		t.Fatalf("no tables in L6 after a full compaction")
	}
	before := l.db.Metrics().Filter
	b := l.NewBatch()
	defer b.Close()
	const misses = 1000
	for i := range misses {
		if _, ok, err := b.Replay(rkey(fmt.Sprintf("absent%06d", i)), t0); ok || err != nil {
			t.Fatalf("Replay(absent) = %v, %v", ok, err)
		}
	}
	after := l.db.Metrics().Filter
	if hits := after.Hits - before.Hits; hits < misses*9/10 {
		t.Fatalf("bloom filter hits for %d absent keys = %d (misses %d); want ≥ 90%%", misses, hits, after.Misses-before.Misses)
	}
}

// TestLookbackIsExact: an entry is live, and survives Prune, up to and
// including expires + Lookback, whatever the generation width, and the
// zero Lookback means none: the ledger adds nothing of its own to the
// window its caller asks for.
func TestLookbackIsExact(t *testing.T) {
	for _, lookback := range []time.Duration{0, 2 * time.Minute, 5 * time.Minute} {
		for _, width := range []time.Duration{time.Second, DefaultGenWidth} {
			t.Run(fmt.Sprintf("lookback=%s,width=%s", lookback, width), func(t *testing.T) {
				l := openTest(t, Options{Lookback: lookback, GenWidth: width})
				exp := t0.Add(time.Minute)
				commitPuts(t, l, put{rkey("m1"), acked(rentry(5, exp))})
				last := exp.Add(lookback)
				if _, err := l.Prune(last, 5); err != nil {
					t.Fatal(err)
				}
				if _, ok, err := l.Replay(rkey("m1"), last); !ok || err != nil {
					t.Fatalf("Replay(expires + Lookback) = %v, %v; want found", ok, err)
				}
				if _, ok, err := l.Replay(rkey("m1"), last.Add(time.Nanosecond)); ok || err != nil {
					t.Fatalf("Replay(expires + Lookback + 1ns) = %v, %v; want not found", ok, err)
				}
			})
		}
	}
}

// TestHorizon: deleting a generation raises Horizon to the generation's
// end, durably; a message whose entry Prune deleted expires before it,
// one whose entry is kept does not. Reopened with a longer Lookback, the
// ledger cannot bring a deleted entry back, and Horizon says so.
func TestHorizon(t *testing.T) {
	const width, lookback = 10 * time.Second, time.Second
	dir := filepath.Join(t.TempDir(), "ledger")
	l, err := Open(dir, Options{GenWidth: width, Lookback: lookback})
	if err != nil {
		t.Fatal(err)
	}
	if h := l.Horizon(); !h.IsZero() {
		t.Fatalf("Horizon() of a new ledger = %v; want zero", h)
	}
	base := time.Unix(0, (t0.UnixNano()/int64(width)+1)*int64(width)) // a generation's start
	old, kept := base.Add(width-time.Nanosecond), base.Add(width)     // the last of one generation, the first of the next
	commitPuts(t, l, put{rkey("old"), acked(rentry(1, old))}, put{rkey("kept"), acked(rentry(2, kept))})
	if st, err := l.Prune(old, 2); err != nil || st.Generations != 0 || !l.Horizon().IsZero() {
		t.Fatalf("Prune(nothing dead) = %+v, %v, Horizon %v; want nothing deleted, zero horizon", st, err, l.Horizon())
	}
	at := base.Add(width + lookback) // the first generation's end + Lookback
	if st, err := l.Prune(at, 2); err != nil || st.Generations != 1 {
		t.Fatalf("Prune(%v) = %+v, %v; want the first generation deleted", at, st, err)
	}
	want := base.Add(width)
	if h := l.Horizon(); !h.Equal(want) {
		t.Fatalf("Horizon() = %v; want the deleted generation's end %v", h, want)
	}
	if !old.Before(l.Horizon()) || kept.Before(l.Horizon()) {
		t.Fatalf("Horizon() = %v; want the deleted entry (expires %v) before it and the kept one (%v) not", l.Horizon(), old, kept)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The lookback grew: old would be live again, but its entry is gone.
	l, err = Open(dir, Options{GenWidth: width, Lookback: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if h := l.Horizon(); !h.Equal(want) {
		t.Fatalf("Horizon() after reopen = %v; want %v", h, want)
	}
	if _, ok, err := l.Replay(rkey("old"), at); ok || err != nil {
		t.Fatalf("Replay(old) = %v, %v; want gone (its expiry is before the horizon)", ok, err)
	}
	if _, ok, err := l.Replay(rkey("kept"), at); !ok || err != nil {
		t.Fatalf("Replay(kept) = %v, %v; want found", ok, err)
	}
	b := l.NewBatch()
	defer b.Close()
	if h := b.Horizon(); !h.Equal(want) {
		t.Fatalf("Batch.Horizon() = %v; want %v", h, want)
	}
}

// TestLookupMissedByPruneSeesHorizon: a lookup that misses a live entry
// because a prune at a later clock deleted it meanwhile reads, after the
// lookup, a horizon past the entry's expiry, so the caller (the
// gateway's ledger gate reads it after its lookup) refuses the message
// as expired rather than take its copy for a first sighting. Lookups run
// against prunes of the same generations, many times over. (The window
// this guards, between a prune's deletion and its raising the horizon,
// is too short for the test to hit on every run; the ordering is in
// prune.)
func TestLookupMissedByPruneSeesHorizon(t *testing.T) {
	const width = time.Second
	l := openTest(t, Options{GenWidth: width})
	base := time.Unix(0, (t0.UnixNano()/int64(width)+1)*int64(width))
	missed := 0
	for i := range 300 {
		exp := base.Add(time.Duration(i)*width + width - time.Nanosecond) // the last instant of generation i
		k := rkey(fmt.Sprintf("m%d", i))
		commitPuts(t, l, put{k, acked(rentry(uint64(i+1), exp))})
		done := make(chan error, 1)
		go func() {
			_, err := l.Prune(exp.Add(time.Nanosecond), uint64(i+1))
			done <- err
		}()
		for {
			b := l.NewBatch()
			_, found, err := b.Replay(k, exp) // live at the batch's clock
			h := b.Horizon()
			b.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !found {
				missed++
				if !exp.Before(h) {
					t.Fatalf("round %d: entry (expires %v) missed by its lookup with the horizon at %v", i, exp, h)
				}
				break
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d lookups missed a pruned entry, each with the horizon past it", missed)
}
