package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// A ledger that is lost (a data directory deleted, a container started
// without its volume) is replaced by an empty one that cannot tell a copy
// of a message decided before from a first sighting. The store cannot
// know whether anything was decided before it existed; its owner can (a
// consumer that has acknowledged messages). So a ledger is created New,
// and stays New across restarts until its owner records what it lacks
// (SetLostBefore), before it decides anything.

// New reports whether the ledger was created empty and its owner has not
// yet said what it lacks (SetLostBefore).
func (l *Ledger) New() bool {
	l.gmu.RLock()
	defer l.gmu.RUnlock()
	return l.isNew
}

// LostBefore is the time before which the ledger lacks what was decided
// (SetLostBefore), or the zero time. It survives restarts.
func (l *Ledger) LostBefore() time.Time {
	l.gmu.RLock()
	defer l.gmu.RUnlock()
	return nsTime(l.lost)
}

// SetLostBefore records, synced, that the ledger lacks what was decided
// before t (the zero time: nothing), raising LostBefore if t is later,
// and that the ledger is no longer New.
func (l *Ledger) SetLostBefore(t time.Time) error {
	if !t.IsZero() && (t.Before(time.Unix(0, 1)) || t.After(maxTime)) {
		return fmt.Errorf("store: lost before %s: %w", t, ErrInvalid)
	}
	db, err := l.acquire()
	if err != nil {
		return err
	}
	defer l.mu.RUnlock()
	l.gmu.Lock()
	defer l.gmu.Unlock()
	lost := l.lost
	if !t.IsZero() {
		lost = max(lost, uint64(t.UnixNano()))
	}
	b := db.NewBatch()
	if err := b.Delete(newKey, nil); err != nil {
		_ = b.Close()
		return fmt.Errorf("store: lost before: %w: %v", ErrIO, err)
	}
	if lost != 0 {
		if err := b.Set(lostKey, encodeUvarints(lost), nil); err != nil {
			_ = b.Close()
			return fmt.Errorf("store: lost before: %w: %v", ErrIO, err)
		}
	}
	if err := l.apply(b, true); err != nil {
		return err
	}
	l.isNew, l.lost = false, lost
	return nil
}

// MarkNew records, synced, that the ledger is New again: its owner must
// say what it lacks (SetLostBefore) before it decides anything. For a
// ledger that stops being its messages' only record while it is kept:
// a single instance's ledger when the deployment scales out, whose
// partitions other ledgers then decide. What it holds stays true; what
// it lacks is found when it is used again.
func (l *Ledger) MarkNew() error {
	db, err := l.acquire()
	if err != nil {
		return err
	}
	defer l.mu.RUnlock()
	l.gmu.Lock()
	defer l.gmu.Unlock()
	b := db.NewBatch()
	if err := b.Set(newKey, nil, nil); err != nil {
		_ = b.Close()
		return fmt.Errorf("store: mark new: %w: %v", ErrIO, err)
	}
	if err := l.apply(b, true); err != nil {
		return err
	}
	l.isNew = true
	return nil
}

// readLost reads the new and lost-before records.
func readLost(db *pebble.DB) (isNew bool, lost uint64, err error) {
	_, c, err := db.Get(newKey)
	switch {
	case err == nil:
		isNew = true
		_ = c.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		return false, 0, readError("new", err)
	}
	v, c, err := db.Get(lostKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return isNew, 0, nil
	}
	if err != nil {
		return false, 0, readError("lost before", err)
	}
	defer func() { _ = c.Close() }()
	vs, err := decodeUvarints("lost before", v, 1)
	if err != nil {
		return false, 0, err
	}
	return isNew, vs[0], nil
}
