package store

import (
	"errors"
	"testing"
)

func TestOutcomeRecordedAndPrunedBelowAckFloor(t *testing.T) {
	l, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b := l.NewBatch()
	for seq := uint64(1); seq <= 5; seq++ {
		if err := b.PutOutcome(seq, []byte{byte(seq)}); err != nil {
			t.Fatal(err)
		}
	}
	if v, ok, err := b.Outcome(3); err != nil || !ok || v[0] != 3 {
		t.Fatalf("staged Outcome(3) = %v, %v, %v; want [3], true", v, ok, err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := l.PruneOutcomes(3); err != nil {
		t.Fatal(err)
	}
	b = l.NewBatch()
	defer b.Close()
	for seq := uint64(1); seq <= 5; seq++ {
		_, ok, err := b.Outcome(seq)
		if err != nil {
			t.Fatal(err)
		}
		if want := seq > 3; ok != want {
			t.Errorf("after PruneOutcomes(3): Outcome(%d) found = %v; want %v", seq, ok, want)
		}
	}
	if err := b.PutOutcome(0, []byte{1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("PutOutcome(0) = %v; want ErrInvalid", err)
	}
}

// TestOutcomeFoundAfterReopen: lookups above the highest committed
// outcome are skipped, so that bound must come back from disk with the
// ledger, and rise with every commit.
func TestOutcomeFoundAfterReopen(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := l.NewBatch()
	for _, seq := range []uint64{5, 9} {
		if err := b.PutOutcome(seq, []byte{byte(seq)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l, err = Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	check := func(want map[uint64]bool) {
		t.Helper()
		b := l.NewBatch()
		defer b.Close()
		for seq, found := range want {
			v, ok, err := b.Outcome(seq)
			if err != nil || ok != found || ok && v[0] != byte(seq) {
				t.Errorf("Outcome(%d) = %v, %v, %v; want found = %v", seq, v, ok, err, found)
			}
		}
	}
	check(map[uint64]bool{5: true, 9: true, 6: false, 10: false})
	b = l.NewBatch()
	if err := b.PutOutcome(12, []byte{12}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	check(map[uint64]bool{9: true, 12: true, 13: false})
}

func TestAcknowledgedFollowsPrunedFloor(t *testing.T) {
	l := openTest(t, Options{})
	if l.Acknowledged(1) {
		t.Fatal("sequence 1 acknowledged on a fresh ledger")
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.PruneOutcomes(10))
	must(l.PruneOutcomes(5)) // a lower floor never lowers it
	b := l.NewBatch()
	defer b.Close()
	if !b.Acknowledged(10) || !l.Acknowledged(1) || l.Acknowledged(11) {
		t.Fatalf("Acknowledged(10, 1, 11) = %v, %v, %v; want true, true, false", b.Acknowledged(10), l.Acknowledged(1), l.Acknowledged(11))
	}
}
