package store

import (
	"path/filepath"
	"testing"
	"time"
)

// TestLedgerNewUntilItsOwnerSays: a ledger is created New and stays New
// across restarts until SetLostBefore; what that records survives
// restarts and only rises.
func TestLedgerNewUntilItsOwnerSays(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ledger")
	reopen := func(l *Ledger) *Ledger {
		t.Helper()
		if l != nil {
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		}
		l, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := reopen(nil)
	defer func() { _ = l.Close() }()
	if !l.New() || !l.LostBefore().IsZero() {
		t.Fatalf("a created ledger: New %v, LostBefore %v; want New, nothing lost", l.New(), l.LostBefore())
	}
	l = reopen(l)
	if !l.New() {
		t.Fatal("reopened before its owner said what it lacks: not New; want New")
	}
	lost := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	if err := l.SetLostBefore(lost); err != nil {
		t.Fatal(err)
	}
	if l.New() || !l.LostBefore().Equal(lost) {
		t.Fatalf("after SetLostBefore(%v): New %v, LostBefore %v", lost, l.New(), l.LostBefore())
	}
	l = reopen(l)
	if l.New() || !l.LostBefore().Equal(lost) {
		t.Fatalf("reopened: New %v, LostBefore %v; want %v, not New", l.New(), l.LostBefore(), lost)
	}
	if err := l.SetLostBefore(lost.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := l.SetLostBefore(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got := l.LostBefore(); !got.Equal(lost) {
		t.Fatalf("LostBefore after an earlier time and none = %v; want %v kept", got, lost)
	}
	if err := l.MarkNew(); err != nil {
		t.Fatal(err)
	}
	if !l.New() {
		t.Fatal("after MarkNew: not New")
	}
	l = reopen(l)
	if !l.New() || !l.LostBefore().Equal(lost) {
		t.Fatalf("reopened after MarkNew: New %v, LostBefore %v; want New, %v kept", l.New(), l.LostBefore(), lost)
	}
	later := lost.Add(time.Hour)
	if err := l.SetLostBefore(later); err != nil {
		t.Fatal(err)
	}
	if l.New() || !l.LostBefore().Equal(later) {
		t.Fatalf("after MarkNew and SetLostBefore(%v): New %v, LostBefore %v", later, l.New(), l.LostBefore())
	}

	other := filepath.Join(t.TempDir(), "ledger")
	o, err := Open(other, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = o.Close() }()
	if err := o.SetLostBefore(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if o.New() || !o.LostBefore().IsZero() {
		t.Fatalf("SetLostBefore(zero): New %v, LostBefore %v; want neither", o.New(), o.LostBefore())
	}
}
