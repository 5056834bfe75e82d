package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestRevocationWrittenDuringStartApplied: a revocation written after
// New read the files and before Run starts its watch (the gateway
// connecting, making its streams and consumers) is applied at the
// watch's first tick, not left out until some later edit.
func TestRevocationWrittenDuringStartApplied(t *testing.T) {
	h := newHarness(t)
	h.cfg.ReloadInterval = 20 * time.Millisecond
	var loaded uint64
	h.beforeRun = func(g *Gateway) {
		loaded = g.revocations.Generation()
		replaceFile(t, h.cfg.Revocations.File, "jtis: []\nprincipals: []\nkeys: ["+h.agent.pub+"]\n")
	}
	h.start()
	waitFor(t, func() bool { return h.gw.revocations.Generation() > loaded })
	h.wantReason(h.send(h.body(nil)), reason.Revoked)
}

// newSchemaHarness is a harness polling its files every 20 ms whose
// kb.search takes a payload schema from a file, loose at first, whose
// path it returns.
func newSchemaHarness(t *testing.T) (*harness, string) {
	h := newHarness(t)
	h.cfg.ReloadInterval = 20 * time.Millisecond
	schema := filepath.Join(filepath.Dir(h.cfg.Catalog), "search.schema.json")
	must(t, os.WriteFile(schema, []byte(`{"type":"object"}`), 0o600))
	h.editTarget("kb.search", func(entry string) string {
		return entry + "    payload_schema: search.schema.json\n"
	})
	return h, schema
}

// TestSchemaTightenedDuringStartApplied: the same for a schema file the
// catalog names, which the watch digests with the catalog.
func TestSchemaTightenedDuringStartApplied(t *testing.T) {
	h, schema := newSchemaHarness(t)
	var loaded string
	h.beforeRun = func(g *Gateway) {
		loaded = g.rules.Load().cat.Digest
		replaceFile(t, schema, `{"type":"object","required":["order_id"]}`)
	}
	h.start()
	waitFor(t, func() bool { return h.gw.rules.Load().cat.Digest != loaded })
	h.wantReason(h.send(h.body(nil)), reason.PayloadInvalid)
}

// TestWatchLeavesUnchangedFilesAlone: with no file changed since New
// read them, the watch reloads nothing, tick after tick: what it
// compares the files with (the digest of what New loaded) is what it
// digests of them, schema files included. This waits a fixed time: it
// shows something does not happen.
func TestWatchLeavesUnchangedFilesAlone(t *testing.T) {
	h, _ := newSchemaHarness(t)
	h.start()
	if out := h.outputFor(h.send(h.body(nil))); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("%s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
	time.Sleep(15 * h.cfg.ReloadInterval)
	for _, result := range []string{"ok", "error"} {
		if n := counterValue(t, h.gw.Metrics().PolicyReloads.WithLabelValues(result)); n != 0 {
			t.Errorf("agentgw_policy_reloads_total{result=%q} = %v with no file changed; want 0", result, n)
		}
	}
}
