package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentgw/agentgw/subjects/reason"
)

// t0 is the fake clock's origin; tests pass times, never read the clock.
var t0 = time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC)

func openTest(t testing.TB, opt Options) *Ledger {
	t.Helper()
	l, err := Open(filepath.Join(t.TempDir(), "ledger"), opt)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// reopened opens a ledger in a new directory, commits puts, closes it
// and returns it opened again (closed when the test ends).
func reopened(t testing.TB, opt Options, puts ...put) *Ledger {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ledger")
	l, err := Open(dir, opt)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	commitPuts(t, l, puts...)
	if err := l.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if l, err = Open(dir, opt); err != nil {
		t.Fatalf("reopen = %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func rkey(id string) ReplayKey { return ReplayKey{Tenant: "acme", Agent: "UAGENT", MessageID: id} }

func rentry(seq uint64, expires time.Time) ReplayEntry {
	return ReplayEntry{
		Seq: seq, Expires: expires, BodyDigest: [32]byte{byte(seq)},
		Decision: Decision{
			Route: RouteAllow, Target: "refunds.draft_refund", Capability: "tool_call",
			PolicyIDs: []string{"p1", "p2"}, PolicyVersion: "v7", OutputMsgID: "out-" + string(rune('a'+seq%26)),
		},
	}
}

type put struct {
	k ReplayKey
	e ReplayEntry
}

func commitPuts(t testing.TB, l *Ledger, puts ...put) {
	t.Helper()
	b := l.NewBatch()
	defer b.Close()
	for _, p := range puts {
		if err := b.PutReplay(p.k, p.e); err != nil {
			t.Fatalf("PutReplay(%v) = %v", p.k, err)
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatalf("Commit = %v", err)
	}
}

func acked(e ReplayEntry) ReplayEntry { e.Acked = true; return e }

func TestReplayLookup(t *testing.T) {
	const lookback = 30 * time.Second
	tests := []struct {
		name      string
		committed []put
		staged    []put
		ackFloor  uint64 // passed to Prune at t0-1h (prunes nothing live) when > 0
		key       ReplayKey
		now       time.Time
		wantSeq   uint64 // 0 = not found
	}{
		{name: "unseen", key: rkey("m1"), now: t0},
		{name: "committed/found", committed: []put{{rkey("m1"), rentry(5, t0.Add(time.Minute))}},
			key: rkey("m1"), now: t0, wantSeq: 5},
		{name: "committed/other message id", committed: []put{{rkey("m1"), rentry(5, t0.Add(time.Minute))}},
			key: rkey("m2"), now: t0},
		{name: "committed/other agent", committed: []put{{rkey("m1"), rentry(5, t0.Add(time.Minute))}},
			key: ReplayKey{"acme", "UOTHER", "m1"}, now: t0},
		{name: "committed/other tenant", committed: []put{{rkey("m1"), rentry(5, t0.Add(time.Minute))}},
			key: ReplayKey{"globex", "UAGENT", "m1"}, now: t0},
		{name: "staged/visible before commit", staged: []put{{rkey("m1"), rentry(7, t0.Add(time.Minute))}},
			key: rkey("m1"), now: t0, wantSeq: 7},
		{name: "staged/far expiry generation", staged: []put{{rkey("m1"), rentry(7, t0.Add(3*time.Hour))}},
			key: rkey("m1"), now: t0, wantSeq: 7},
		{name: "live/at expiry+lookback", committed: []put{{rkey("m1"), acked(rentry(5, t0))}},
			key: rkey("m1"), now: t0.Add(lookback), wantSeq: 5},
		{name: "dead/acked after expiry+lookback", committed: []put{{rkey("m1"), acked(rentry(5, t0))}},
			key: rkey("m1"), now: t0.Add(lookback + time.Nanosecond)},
		{name: "dead/unacked still found", committed: []put{{rkey("m1"), rentry(5, t0)}},
			key: rkey("m1"), now: t0.Add(time.Hour), wantSeq: 5},
		{name: "dead/under ack floor", committed: []put{{rkey("m1"), rentry(5, t0)}}, ackFloor: 5,
			key: rkey("m1"), now: t0.Add(time.Hour)},
		{name: "dead/above ack floor", committed: []put{{rkey("m1"), rentry(5, t0)}}, ackFloor: 4,
			key: rkey("m1"), now: t0.Add(time.Hour), wantSeq: 5},
		{name: "window/earliest live expiry", committed: []put{{rkey("m1"), acked(rentry(5, t0.Add(-lookback)))}},
			key: rkey("m1"), now: t0, wantSeq: 5},
		{name: "window/latest expiry (max TTL + skew)", committed: []put{{rkey("m1"), acked(rentry(5, t0.Add(330*time.Second)))}},
			key: rkey("m1"), now: t0, wantSeq: 5},
		{name: "window/clock stepped back", committed: []put{{rkey("m1"), acked(rentry(5, t0.Add(48*time.Hour)))}},
			key: rkey("m1"), now: t0, wantSeq: 5},
		{name: "resigned/first copy live wins",
			committed: []put{{rkey("m1"), acked(rentry(5, t0.Add(10*time.Second)))}, {rkey("m1"), rentry(9, t0.Add(5*time.Minute))}},
			key:       rkey("m1"), now: t0, wantSeq: 5},
		{name: "resigned/second copy found after first dies",
			committed: []put{{rkey("m1"), acked(rentry(5, t0.Add(10*time.Second)))}, {rkey("m1"), rentry(9, t0.Add(5*time.Minute))}},
			key:       rkey("m1"), now: t0.Add(2 * time.Minute), wantSeq: 9},
		{name: "resigned/committed and staged copies",
			committed: []put{{rkey("m1"), rentry(9, t0.Add(5*time.Minute))}},
			staged:    []put{{rkey("m1"), rentry(5, t0.Add(10*time.Second))}},
			key:       rkey("m1"), now: t0, wantSeq: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := openTest(t, Options{Lookback: lookback})
			commitPuts(t, l, tt.committed...)
			if tt.ackFloor > 0 {
				if _, err := l.Prune(t0.Add(-time.Hour), tt.ackFloor); err != nil {
					t.Fatal(err)
				}
			}
			b := l.NewBatch()
			defer b.Close()
			for _, p := range tt.staged {
				if err := b.PutReplay(p.k, p.e); err != nil {
					t.Fatal(err)
				}
			}
			e, ok, err := b.Replay(tt.key, tt.now)
			if err != nil {
				t.Fatalf("Replay(%v) error = %v", tt.key, err)
			}
			if got := map[bool]uint64{true: e.Seq}[ok]; got != tt.wantSeq {
				t.Fatalf("Replay(%v) seq = %d (found %v); want %d", tt.key, e.Seq, ok, tt.wantSeq)
			}
			if tt.staged == nil {
				b.Close()
				le, lok, err := l.Replay(tt.key, tt.now)
				if err != nil || lok != ok || le.Seq != e.Seq {
					t.Fatalf("Ledger.Replay = %d, %v, %v; want the batch's %d, %v", le.Seq, lok, err, e.Seq, ok)
				}
			}
		})
	}
}

// TestResignedCopiesLieInDifferentGenerations pins the premise of the
// "resigned" cases above.
func TestResignedCopiesLieInDifferentGenerations(t *testing.T) {
	l := openTest(t, Options{})
	if a, b := l.genOf(t0.Add(10*time.Second)), l.genOf(t0.Add(5*time.Minute)); a == b {
		t.Fatalf("genOf: both copies in generation %d; pick other times", a)
	}
}

func TestEntryRoundTripThroughDisk(t *testing.T) {
	want := rentry(42, t0.Add(time.Minute))
	want.Decision = Decision{Route: RouteDeny, Reason: reason.PolicyDenied, Target: "x.y",
		Capability: "read", PolicyIDs: []string{"forbid-1"}, PolicyVersion: "sha256:ab", OutputMsgID: "gw-42"}
	l := reopened(t, Options{}, put{rkey("m1"), want})
	got, ok, err := l.Replay(rkey("m1"), t0)
	if err != nil || !ok {
		t.Fatalf("Replay = %v, %v", ok, err)
	}
	if got.Seq != want.Seq || !got.Expires.Equal(want.Expires) || got.BodyDigest != want.BodyDigest ||
		got.Decision.Reason != want.Decision.Reason || got.Decision.PolicyIDs[0] != "forbid-1" ||
		got.Decision.OutputMsgID != "gw-42" || got.Acked {
		t.Fatalf("Replay = %+v; want %+v", got, want)
	}
	if st := l.Stats(); st.Generations != 1 || st.ApproxEntries != 1 {
		t.Fatalf("Stats = %+v; want 1 generation, 1 entry", st)
	}
}

func TestIdemLookup(t *testing.T) {
	ik := IdemKey{Tenant: "acme", Agent: "UAGENT", Key: "order-17"}
	first := IdemEntry{PayloadDigest: [32]byte{1}, MessageID: "m1", Expires: t0.Add(time.Minute),
		Decision: Decision{Route: RouteAllow, OutputMsgID: "gw-1"}}
	tests := []struct {
		name       string
		committed  bool
		staged     bool
		key        IdemKey
		now        time.Time
		digest     [32]byte
		wantFound  bool
		wantSameID bool // the found entry's digest equals digest
	}{
		{name: "unseen", key: ik, now: t0},
		{name: "committed/same digest", committed: true, key: ik, now: t0, digest: [32]byte{1}, wantFound: true, wantSameID: true},
		{name: "committed/other digest", committed: true, key: ik, now: t0, digest: [32]byte{2}, wantFound: true},
		{name: "staged/same digest", staged: true, key: ik, now: t0, digest: [32]byte{1}, wantFound: true, wantSameID: true},
		{name: "committed/other key", committed: true, key: IdemKey{"acme", "UAGENT", "order-18"}, now: t0},
		{name: "expired", committed: true, key: ik, now: t0.Add(time.Minute + 31*time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := openTest(t, Options{})
			if tt.committed {
				b := l.NewBatch()
				if err := b.PutIdem(ik, first); err != nil {
					t.Fatal(err)
				}
				if err := b.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			b := l.NewBatch()
			defer b.Close()
			if tt.staged {
				if err := b.PutIdem(ik, first); err != nil {
					t.Fatal(err)
				}
			}
			e, ok, err := b.Idem(tt.key, tt.now)
			if err != nil || ok != tt.wantFound {
				t.Fatalf("Idem(%v) = %v, %v; want found %v", tt.key, ok, err, tt.wantFound)
			}
			if ok && (e.PayloadDigest == tt.digest) != tt.wantSameID {
				t.Fatalf("Idem(%v) digest %x; same as %x = %v, want %v", tt.key, e.PayloadDigest[:1], tt.digest[:1], !tt.wantSameID, tt.wantSameID)
			}
			if ok && (e.MessageID != "m1" || e.Decision.OutputMsgID != "gw-1") {
				t.Fatalf("Idem(%v) = %+v; want the first request's entry", tt.key, e)
			}
		})
	}
}

func TestKeyValidation(t *testing.T) {
	l := openTest(t, Options{})
	b := l.NewBatch()
	defer b.Close()
	long := string(make([]byte, 300))
	tests := []struct {
		name string
		err  error
	}{
		{"empty tenant", b.PutReplay(ReplayKey{"", "a", "m"}, rentry(1, t0))},
		{"NUL in agent", b.PutReplay(ReplayKey{"t", "a\x00b", "m"}, rentry(1, t0))},
		{"oversized id", b.PutReplay(ReplayKey{"t", "a", "x" + long}, rentry(1, t0))},
		{"zero seq", b.PutReplay(rkey("m"), rentry(0, t0))},
		{"zero expiry", b.PutReplay(rkey("m"), rentry(1, time.Time{}))},
		{"expiry past 2200", b.PutReplay(rkey("m"), rentry(1, t0.AddDate(300, 0, 0)))},
		{"idem NUL key", b.PutIdem(IdemKey{"t", "a", "k\x00"}, IdemEntry{Expires: t0})},
		{"too many policy ids", b.PutReplay(rkey("m"), ReplayEntry{Seq: 1, Expires: t0, Decision: Decision{PolicyIDs: make([]string, 300)}})},
		{"hold NUL id", b.PutHold("h\x00", t0, nil)},
		{"hold oversized value", b.PutHold("h", t0, make([]byte, 2<<20))},
		{"marker empty kind", func() error { _, err := b.SetOnce("", "x", t0); return err }()},
		{"lookup NUL", func() error { _, _, err := b.Replay(ReplayKey{"t", "a", "\x00"}, t0); return err }()},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, ErrInvalid) {
			t.Errorf("%s: error = %v; want ErrInvalid", tt.name, tt.err)
		}
	}
}

func TestBatchLifecycle(t *testing.T) {
	l := openTest(t, Options{})
	b := l.NewBatch()
	if err := b.PutReplay(rkey("m1"), rentry(1, t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	b.Close() // discard
	if _, ok, _ := l.Replay(rkey("m1"), t0); ok {
		t.Fatal("Replay found a write from a closed, uncommitted batch")
	}
	if err := b.Commit(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Commit after Close = %v; want ErrInvalid", err)
	}
	b = l.NewBatch() // would deadlock if Close had not released the batch
	if err := b.Commit(); err != nil {
		t.Fatalf("empty Commit = %v", err)
	}
	b.Close()

	done := make(chan struct{})
	b1 := l.NewBatch()
	go func() {
		b2 := l.NewBatch() // waits for b1
		defer b2.Close()
		if _, ok, err := b2.Replay(rkey("m2"), t0); err != nil || !ok {
			t.Errorf("second batch Replay = %v, %v; want b1's committed write", ok, err)
		}
		close(done)
	}()
	if err := b1.PutReplay(rkey("m2"), rentry(2, t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	if err := b1.Commit(); err != nil {
		t.Fatal(err)
	}
	<-done

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v; want ErrClosed", err)
	}
	b = l.NewBatch()
	if _, _, err := b.Replay(rkey("m1"), t0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Replay after Close = %v; want ErrClosed", err)
	}
	b.Close()
	if _, _, err := l.Replay(rkey("m1"), t0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ledger.Replay after Close = %v; want ErrClosed", err)
	}
}

func TestMarkAcked(t *testing.T) {
	l := openTest(t, Options{})
	commitPuts(t, l, put{rkey("m1"), rentry(5, t0.Add(time.Minute))}, put{rkey("m2"), rentry(6, t0.Add(time.Minute))})
	if err := l.MarkAcked([]ReplayKey{rkey("m1"), rkey("missing")}, t0); err != nil {
		t.Fatalf("MarkAcked = %v", err)
	}
	for id, want := range map[string]bool{"m1": true, "m2": false} {
		e, ok, err := l.Replay(rkey(id), t0)
		if err != nil || !ok || e.Acked != want {
			t.Errorf("Replay(%s) = acked %v, %v, %v; want acked %v", id, e.Acked, ok, err, want)
		}
	}
	// Once dead, an acked entry is no longer reported; the unacked one is.
	later := t0.Add(time.Hour)
	if _, ok, _ := l.Replay(rkey("m1"), later); ok {
		t.Error("dead acked entry still reported")
	}
	if _, ok, _ := l.Replay(rkey("m2"), later); !ok {
		t.Error("dead unacked entry not reported")
	}
}

func TestOptionsValidate(t *testing.T) {
	err := Options{CacheBytes: -1, GenWidth: time.Millisecond, Lookback: -time.Second}.Validate()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Validate = %v; want ErrInvalid", err)
	}
	if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != 3 {
		t.Fatalf("Validate reported %d problems; want 3: %v", n, err)
	}
	// A width of decades would wrap a generation's end past 2262 and let
	// Prune delete the live entries of a generation it took for dead.
	for _, w := range []time.Duration{MaxGenWidth + time.Second, 100 * 365 * 24 * time.Hour} {
		if err := (Options{GenWidth: w}).Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(GenWidth %v) = %v; want ErrInvalid", w, err)
		}
		if l, err := Open(filepath.Join(t.TempDir(), "ledger"), Options{GenWidth: w}); !errors.Is(err, ErrInvalid) {
			if err == nil {
				l.Close()
			}
			t.Errorf("Open(GenWidth %v) = %v; want ErrInvalid", w, err)
		}
	}
	if err := (Options{GenWidth: MaxGenWidth}).Validate(); err != nil {
		t.Errorf("Validate(GenWidth %v) = %v; want nil", MaxGenWidth, err)
	}
}

func TestGenWidthIsStored(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ledger")
	l, err := Open(dir, Options{GenWidth: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	commitPuts(t, l, put{rkey("m1"), rentry(1, t0.Add(time.Minute))})
	l.Close()
	l, err = Open(dir, Options{GenWidth: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.width != uint64(time.Minute) {
		t.Fatalf("width = %v; want the stored 1m", time.Duration(l.width))
	}
	if _, ok, err := l.Replay(rkey("m1"), t0); !ok || err != nil {
		t.Fatalf("Replay = %v, %v; want found", ok, err)
	}
}

func TestOpenTwiceIsLocked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ledger")
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v; want ErrLocked", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after Close = %v", err)
	}
	l.Close()
}

// TestConcurrentUse runs the read-only and maintenance calls against a
// writer committing batches; run with -race.
func TestConcurrentUse(t *testing.T) {
	l := openTest(t, Options{})
	const batches, per = 20, 50
	done := make(chan struct{})
	errs := make(chan error, 4)
	for w := range 3 {
		go func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				var err error
				k := rkey(fmt.Sprintf("m%03d-%03d", i%batches, i%per))
				switch w {
				case 0:
					_, _, err = l.Replay(k, t0)
				case 1:
					err = l.MarkAcked([]ReplayKey{k}, t0)
					_ = l.Stats()
				case 2:
					_, err = l.Prune(t0, uint64(i))
					if err == nil {
						_, err = l.DueHolds(t0, 10)
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range batches {
		var puts []put
		for j := range per {
			puts = append(puts, put{rkey(fmt.Sprintf("m%03d-%03d", i, j)), rentry(uint64(i*per+j+1), t0.Add(time.Minute))})
		}
		commitPuts(t, l, puts...)
	}
	close(done)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i := range batches {
		for j := range per {
			if _, ok, err := l.Replay(rkey(fmt.Sprintf("m%03d-%03d", i, j)), t0); !ok || err != nil {
				t.Fatalf("Replay(m%03d-%03d) = %v, %v", i, j, ok, err)
			}
		}
	}
}

// TestBlockCacheKeepsBlocks: Pebble charges the memtables to the block
// cache. With the gateway's memtables (2 × 32 MiB) in a 64 MiB cache it
// kept no block at all and every lookup read each table's bloom filter
// from the file (lookups 10× slower, growing with the store). CacheBytes
// is room for blocks whatever the memtables take: here one memtable alone
// is as large as CacheBytes.
func TestBlockCacheKeepsBlocks(t *testing.T) {
	const size = 8 << 20
	// Without the ledger's own filters every lookup reaches Pebble, as
	// those of generations written before the ledger opened do.
	l := openTest(t, Options{CacheBytes: size, MemTableBytes: size, noFilters: true})
	exp := t0.Add(time.Minute)
	// Pebble doubles the memtable each time one fills, up to
	// MemTableBytes: outcomes fill them.
	outcome := make([]byte, 64<<10)
	for round := 0; l.db.Metrics().MemTable.Size < size; round++ {
		if round == 100 {
			t.Fatalf("memtables at %d bytes after %d rounds; want %d", l.db.Metrics().MemTable.Size, round, size)
		}
		b := l.NewBatch()
		for i := 0; i < 1000; i++ {
			seq := uint64(round*1000 + i + 1)
			if err := b.PutReplay(rkey(fmt.Sprintf("r%d-%d", round, i)), rentry(seq, exp)); err != nil {
				t.Fatal(err)
			}
			if i%100 == 0 {
				if err := b.PutOutcome(seq, outcome); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
	if err := l.db.Flush(); err != nil {
		t.Fatal(err)
	}
	lookups := func() {
		b := l.NewBatch()
		defer b.Close()
		for i := 0; i < 1000; i++ {
			if _, ok, err := b.Replay(rkey(fmt.Sprintf("absent-%d", i)), t0); ok || err != nil {
				t.Fatalf("Replay(absent) = %v, %v", ok, err)
			}
		}
	}
	lookups()
	before := l.db.Metrics().BlockCache
	lookups()
	after := l.db.Metrics().BlockCache
	misses, reads := after.Misses-before.Misses, after.Hits+after.Misses-before.Hits-before.Misses
	// A background compaction may replace a table between the rounds.
	if after.Count == 0 || reads == 0 || misses*10 > reads {
		t.Fatalf("block cache holds %d blocks; the second round of lookups missed %d of %d block reads (want < 10%%)",
			after.Count, misses, reads)
	}
	m, err := l.Memory()
	if err != nil || m.BlockCacheCapacity != size {
		t.Fatalf("Memory() = %+v, %v; want BlockCacheCapacity %d", m, err, size)
	}
}

func TestCommittedCountsBatchBytes(t *testing.T) {
	l := openTest(t, Options{})
	if n := l.Committed(); n != 0 {
		t.Fatalf("Committed() on a fresh ledger = %d", n)
	}
	b := l.NewBatch()
	if err := b.PutOutcome(1, make([]byte, 10_000)); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	first := l.Committed()
	if first < 10_000 {
		t.Fatalf("Committed() = %d after a 10 kB outcome", first)
	}
	b = l.NewBatch()
	b.Close() // discarded: nothing written
	if n := l.Committed(); n != first {
		t.Fatalf("Committed() = %d after a discarded batch; want %d", n, first)
	}
}

// TestL0GathersFlushes checks that overlapping flushes gather in L0: Pebble
// compacts L0 once its sublevels reach half l0CompactionThreshold (two
// with Pebble's default), and every flush of a generation being written
// overlaps the last, since message ids are random.
func TestL0GathersFlushes(t *testing.T) {
	l := openTest(t, Options{})
	exp := t0.Add(time.Minute)
	const flushes = l0CompactionThreshold/2 - 1
	for round := range flushes {
		puts := make([]put, 100)
		for i := range puts {
			// The same key range every round, as random message ids give.
			puts[i] = put{rkey(fmt.Sprintf("m%03d-%d", i, round)), rentry(uint64(round*100+i+1), exp)}
		}
		commitPuts(t, l, puts...)
		if err := l.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	m := l.db.Metrics()
	if got := m.Levels[0].Sublevels; got != flushes {
		t.Errorf("L0 has %d sublevels after %d flushes; want them all", got, flushes)
	}
	if got := l.Stats().L0Sublevels; got != flushes {
		t.Errorf("Stats().L0Sublevels = %d; want %d", got, flushes)
	}
	if n := m.Compact.Count + m.Compact.NumInProgress; n != 0 {
		t.Errorf("%d compactions after %d overlapping flushes; want none below %d", n, flushes, l0CompactionThreshold/2)
	}
}
