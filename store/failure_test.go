package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// TestCommitFailsClosedAndRecovers injects WAL write or sync errors.
// Commit must fail with ErrIO (the gateway then acks nothing). The ledger
// then reopens its database before its next use, so it never serves state
// that reached memory but not the disk; writes keep failing while the disk
// does, and once errors stop a later batch commits with no action from
// the caller.
func TestCommitFailsClosedAndRecovers(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []errorfs.OpKind
	}{
		{"wal sync", []errorfs.OpKind{errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo}},
		{"wal write", []errorfs.OpKind{errorfs.OpFileWrite, errorfs.OpFileWriteAt}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewMem()
			inj := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
				if filepath.Ext(op.Path) != ".log" {
					return nil
				}
				for _, k := range tc.ops {
					if op.Kind == k {
						return errorfs.ErrInjected
					}
				}
				return nil
			})}
			l, err := Open("ledger", Options{FS: errorfs.Wrap(mem, inj)})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			exp := t0.Add(time.Minute)
			commitPuts(t, l, put{rkey("before"), rentry(1, exp)})

			inj.On()
			b := l.NewBatch()
			if err := b.PutReplay(rkey("failed"), rentry(2, exp)); err != nil {
				t.Fatal(err)
			}
			if err := b.Commit(); !errors.Is(err, ErrIO) {
				t.Fatalf("Commit with failing WAL = %v; want ErrIO", err)
			}
			b.Close()
			// The ledger reopens before its next use, so reads come from what
			// is on disk; writes keep failing while the disk does.
			if _, ok, err := l.Replay(rkey("before"), t0); !ok || err != nil {
				t.Fatalf("Replay(before) after a failed commit = %v, %v; want found", ok, err)
			}
			b = l.NewBatch()
			if err := b.PutReplay(rkey("failed-again"), rentry(3, exp)); err != nil {
				t.Fatal(err)
			}
			if err := b.Commit(); !errors.Is(err, ErrIO) {
				t.Fatalf("second Commit with failing WAL = %v; want ErrIO", err)
			}

			inj.Off()
			b = l.NewBatch()
			if err := b.PutReplay(rkey("after"), rentry(4, exp)); err != nil {
				t.Fatalf("PutReplay after errors stopped = %v", err)
			}
			if err := b.Commit(); err != nil {
				t.Fatalf("Commit after errors stopped = %v", err)
			}
			for _, id := range []string{"before", "after"} {
				if _, ok, err := l.Replay(rkey(id), t0); !ok || err != nil {
					t.Fatalf("Replay(%s) = %v, %v; want found", id, ok, err)
				}
			}
			// "failed" may or may not have reached the disk; either way a
			// redelivery finds seq 2 (re-emit) or nothing (decide again).
			if e, ok, err := l.Replay(rkey("failed"), t0); err != nil || (ok && e.Seq != 2) {
				t.Fatalf("Replay(failed) = %v, %v, %v", e.Seq, ok, err)
			}
		})
	}
}
