package store

import (
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// heldSyncs makes every WAL sync wait, while held, until let is closed,
// and then fail with ErrInjected when fail is set.
type heldSyncs struct {
	held    atomic.Bool
	fail    atomic.Bool
	waiting chan struct{} // a sync started waiting
	let     chan struct{}
	once    sync.Once
}

func newHeldSyncs() *heldSyncs {
	return &heldSyncs{waiting: make(chan struct{}, 16), let: make(chan struct{})}
}

// release lets held syncs go (once).
func (h *heldSyncs) release() { h.once.Do(func() { close(h.let) }) }

func (h *heldSyncs) open(t *testing.T) *Ledger {
	t.Helper()
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if filepath.Ext(op.Path) != ".log" || !h.held.Load() {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		default:
			return nil
		}
		h.waiting <- struct{}{}
		<-h.let
		if h.fail.Load() {
			return errorfs.ErrInjected
		}
		return nil
	}))
	l, err := Open("ledger", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A failed test may leave a sync held: let it go before Close
		// waits for the commit.
		h.held.Store(false)
		h.release()
		_ = l.Close()
	})
	return l
}

// within fails the test unless fn returns within a generous bound: a
// guard against a hang, not a speed assertion.
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s blocked", what)
	}
}

func open(c *Commit) bool {
	select {
	case <-c.Done():
		return false
	default:
		return true
	}
}

// TestNextBatchReadsStartedCommit: while a started batch's fsync is in
// progress, the next batch opens, sees its writes (replay entry, outcome,
// marker, generation) and commits after it.
func TestNextBatchReadsStartedCommit(t *testing.T) {
	h := newHeldSyncs()
	l := h.open(t)
	exp := t0.Add(time.Minute)
	later := t0.Add(3 * time.Hour) // a generation only the first batch touches

	h.held.Store(true)
	a := l.NewBatch()
	defer a.Close()
	for _, p := range []put{{rkey("a1"), rentry(1, exp)}, {rkey("a2"), rentry(2, later)}} {
		if err := a.PutReplay(p.k, p.e); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.PutOutcome(1, []byte("outputs of 1")); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.SetOnce("replay", "x", exp); !ok || err != nil {
		t.Fatalf("SetOnce = %v, %v", ok, err)
	}
	ca := a.Start()
	<-h.waiting // a's commit is in its fsync

	var b *Batch
	within(t, "NewBatch during a started commit", func() { b = l.NewBatch() })
	defer b.Close()
	for _, p := range []put{{rkey("a1"), rentry(1, exp)}, {rkey("a2"), rentry(2, later)}} {
		e, ok, err := b.Replay(p.k, t0)
		if err != nil || !ok || e.Seq != p.e.Seq {
			t.Fatalf("Replay(%s) in the next batch = %+v, %v, %v; want seq %d", p.k.MessageID, e, ok, err, p.e.Seq)
		}
	}
	if out, ok, err := b.Outcome(1); err != nil || !ok || string(out) != "outputs of 1" {
		t.Fatalf("Outcome(1) in the next batch = %q, %v, %v", out, ok, err)
	}
	if ok, err := b.SetOnce("replay", "x", exp); ok || err != nil {
		t.Fatalf("SetOnce of a marker the started batch set = %v, %v; want false", ok, err)
	}
	if !open(ca) {
		t.Fatal("the first commit finished before the next batch read: the test proves nothing")
	}
	if err := b.PutReplay(rkey("b1"), rentry(3, exp)); err != nil {
		t.Fatal(err)
	}
	started := make(chan *Commit, 1)
	go func() { started <- b.Start() }()
	// b commits after a: its Start waits while a's fsync is held.
	select {
	case <-time.After(100 * time.Millisecond):
	case <-h.waiting:
		t.Fatal("the second batch's fsync started before the first's finished")
	}
	h.held.Store(false)
	h.release()
	within(t, "the commits", func() {
		if err := ca.Wait(); err != nil {
			t.Errorf("first commit = %v", err)
		}
		if err := (<-started).Wait(); err != nil {
			t.Errorf("second commit = %v", err)
		}
	})
	for _, id := range []string{"a1", "a2", "b1"} {
		if _, ok, err := l.Replay(rkey(id), t0); !ok || err != nil {
			t.Fatalf("Replay(%s) after both commits = %v, %v", id, ok, err)
		}
	}
}

// TestBatchFailsWithTheCommitItRead: a batch opened while the previous
// commit was in progress was decided on its writes; when that commit
// fails, so does this one, with ErrIO. A batch opened after the failure
// does not read the lost writes and commits.
func TestBatchFailsWithTheCommitItRead(t *testing.T) {
	h := newHeldSyncs()
	l := h.open(t)
	exp := t0.Add(time.Minute)

	h.held.Store(true)
	h.fail.Store(true)
	a := l.NewBatch()
	defer a.Close()
	if err := a.PutReplay(rkey("a1"), rentry(1, exp)); err != nil {
		t.Fatal(err)
	}
	ca := a.Start()
	<-h.waiting

	var b *Batch
	within(t, "NewBatch during a started commit", func() { b = l.NewBatch() })
	defer b.Close()
	if _, ok, err := b.Replay(rkey("a1"), t0); !ok || err != nil {
		t.Fatalf("Replay(a1) in the next batch = %v, %v; want found", ok, err)
	}
	if err := b.PutReplay(rkey("b1"), rentry(2, exp)); err != nil {
		t.Fatal(err)
	}
	h.held.Store(false)
	h.release()
	if err := ca.Wait(); !errors.Is(err, ErrIO) {
		t.Fatalf("first commit with a failing fsync = %v; want ErrIO", err)
	}
	if err := b.Start().Wait(); !errors.Is(err, ErrIO) {
		t.Fatalf("commit of the batch that read the failed one = %v; want ErrIO", err)
	}
	h.fail.Store(false)
	c := l.NewBatch()
	defer c.Close()
	if c.r.after != nil {
		t.Fatal("a batch opened after the failure reads the failed batch's writes")
	}
	if err := c.PutReplay(rkey("c1"), rentry(3, exp)); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(); err != nil {
		t.Fatalf("commit after the failure = %v", err)
	}
	if _, ok, err := l.Replay(rkey("b1"), t0); ok || err != nil {
		t.Fatalf("Replay(b1) = %v, %v; the failed batch's write must not be in the ledger", ok, err)
	}
	if _, ok, err := l.Replay(rkey("c1"), t0); !ok || err != nil {
		t.Fatalf("Replay(c1) = %v, %v; want found", ok, err)
	}
}
