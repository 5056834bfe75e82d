package store

import (
	"errors"
	"testing"
	"time"
)

// TestMarked: Ledger.Marked sees a marker once a batch that set it has
// committed, not while the batch is open; after Prune removed it, a
// marker expiring by then counts as set, as SetOnce takes it, and one
// expiring later does not. It keeps kinds apart, and checks kind and id
// as SetOnce does.
func TestMarked(t *testing.T) {
	const lookback = 30 * time.Second
	l := openTest(t, Options{Lookback: lookback})
	exp := t0.Add(time.Hour)
	marked := func(kind, id string) bool {
		t.Helper()
		ok, err := l.Marked(kind, id, exp)
		if err != nil {
			t.Fatalf("Marked(%s, %s): %v", kind, id, err)
		}
		return ok
	}
	if marked("replay", "acme/UAGENT/m1") {
		t.Fatal("Marked before any SetOnce = true")
	}
	b := l.NewBatch()
	if ok, err := b.SetOnce("replay", "acme/UAGENT/m1", exp); !ok || err != nil {
		t.Fatalf("SetOnce = %v, %v", ok, err)
	}
	if marked("replay", "acme/UAGENT/m1") {
		t.Error("Marked sees a marker of an uncommitted batch")
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if !marked("replay", "acme/UAGENT/m1") {
		t.Error("Marked after commit = false")
	}
	if marked("approval", "acme/UAGENT/m1") || marked("replay", "acme/UAGENT/m2") {
		t.Error("Marked sees a marker of another kind or id")
	}
	if _, err := l.Prune(exp.Add(lookback+time.Second), 0); err != nil {
		t.Fatal(err)
	}
	if !marked("replay", "acme/UAGENT/m1") {
		t.Error("Marked after Prune removed the marker, for its expiry = false; want true (it may have been set)")
	}
	if ok, err := l.Marked("replay", "acme/UAGENT/m1", exp.Add(time.Hour)); ok || err != nil {
		t.Errorf("Marked after Prune, for a later expiry = %v, %v; want false", ok, err)
	}
	for name, kid := range map[string][2]string{"empty kind": {"", "x"}, "empty id": {"replay", ""}, "NUL in id": {"replay", "a\x00b"}} {
		if _, err := l.Marked(kid[0], kid[1], exp); !errors.Is(err, ErrInvalid) {
			t.Errorf("Marked(%s) = %v; want ErrInvalid", name, err)
		}
	}
}

// TestBatchMarked: Batch.Marked answers as Ledger.Marked does, and sees
// the markers the batch staged, for the goroutine holding the batch,
// which may call no other Ledger method: with the ledger marked broken
// meanwhile (a failed write elsewhere), Ledger.Marked would wait to
// reopen it behind the batch's own lock; Batch.Marked reads through the
// batch and returns.
func TestBatchMarked(t *testing.T) {
	l := openTest(t, Options{Lookback: 30 * time.Second})
	exp := t0.Add(time.Hour)
	b := l.NewBatch()
	if ok, err := b.SetOnce("acked_by_seq", "c/1", exp); !ok || err != nil {
		t.Fatalf("SetOnce = %v, %v", ok, err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b = l.NewBatch()
	defer b.Close()
	if ok, err := b.SetOnce("acked_by_seq", "c/2", exp); !ok || err != nil {
		t.Fatalf("SetOnce = %v, %v", ok, err)
	}
	l.broken.Store(true)
	for _, tt := range []struct {
		id   string
		want bool
	}{{"c/1", true}, {"c/2", true}, {"c/3", false}} {
		ok, err := b.Marked("acked_by_seq", tt.id, exp)
		if err != nil || ok != tt.want {
			t.Errorf("Batch.Marked(%s) = %v, %v; want %v", tt.id, ok, err, tt.want)
		}
	}
	if _, err := b.Marked("", "c/1", exp); err == nil {
		t.Error("Batch.Marked accepted a kind SetOnce refuses")
	}
	l.broken.Store(false)
}
