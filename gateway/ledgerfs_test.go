package gateway

import (
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// failingLedgerLog is the real disk for the ledger through a filesystem
// that, while inj is on, fails every write and sync of Pebble's log
// files: every batch's commit fails.
func failingLedgerLog() (inj *errorfs.Toggle, fs vfs.FS) {
	inj = &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if filepath.Ext(op.Path) != ".log" {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			return errorfs.ErrInjected
		}
		return nil
	})}
	return inj, errorfs.Wrap(vfs.Default, inj)
}

// oneLogSyncFailure is the real disk for the ledger through a filesystem
// whose next sync of a Pebble log file, once armed is set, fails (the
// log written, its sync failed); fired reports that it did.
func oneLogSyncFailure() (fs vfs.FS, armed, fired *atomic.Bool) {
	armed, fired = new(atomic.Bool), new(atomic.Bool)
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if filepath.Ext(op.Path) != ".log" {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if armed.CompareAndSwap(true, false) {
				fired.Store(true)
				return errorfs.ErrInjected
			}
		}
		return nil
	})
	return errorfs.Wrap(vfs.Default, inj), armed, fired
}

// startFailingLedger starts the gateway (with opts besides the harness's)
// on a ledger whose log writes fail while the returned toggle is on
// (failingLedgerLog); the failed commits are logged as errors.
func (h *harness) startFailingLedger(opts ...Option) *errorfs.Toggle {
	h.allowErrors = true
	inj, fs := failingLedgerLog()
	h.opts = append(h.opts, append(opts, func(g *Gateway) { g.ledgerFS = fs })...)
	h.start()
	<-h.gw.Ready()
	return inj
}

// waitLedgerErrors waits until at least n batches failed their ledger
// commit; what names them in the failure.
func (h *harness) waitLedgerErrors(t *testing.T, n float64, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for counterValue(t, h.gw.Metrics().LedgerErrors) < n {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
