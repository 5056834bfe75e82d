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

// eventually polls cond until it holds, failing the test with what when
// d passes first.
func watchEventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReloadRetriesAfterSchemaFileWritten: a catalog edit that names a
// schema file not written yet fails to reload, with the policy edit made
// beside it, and the old catalog and policies stay. The watch keeps
// trying: once the schema file is written and valid, the new catalog and
// policies load without any other file changing. While the reload keeps
// failing it logs each distinct failure once, not every tick, and leaves
// the revocations alone (no replace, no sweep of held requests, per
// tick).
func TestReloadRetriesAfterSchemaFileWritten(t *testing.T) {
	const interval = 20 * time.Millisecond
	h := newHarness(t)
	h.cfg.ReloadInterval = interval
	h.allowErrors = true // the failed reloads are logged as errors
	h.start()
	search := func() uint64 { return h.send(h.body(nil)) }
	if out := h.outputFor(search()); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("before: %s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
	v1 := h.gw.Policy().Version()
	schema := filepath.Join(filepath.Dir(h.cfg.Catalog), "search.schema.json")
	// failures counts the failed reloads logged that name the schema file.
	failures := func() int {
		n := 0
		for _, line := range strings.Split(h.logs.String(), "\n") {
			if strings.Contains(line, `"level":"error"`) && strings.Contains(line, `"message":"reload"`) &&
				strings.Contains(line, "search.schema.json") {
				n++
			}
		}
		return n
	}

	// The operator forbids kb.search and names a schema file for it that
	// is not written yet: the reload fails, the old rules stay.
	replaceFile(t, h.cfg.Policies[0], testPolicy+"\n@id(\"no-search\")\nforbid (principal, action, resource == Target::\"kb.search\");\n")
	raw, err := os.ReadFile(h.cfg.Catalog)
	must(t, err)
	cat := strings.Replace(string(raw), "  - name: kb.search\n", "  - name: kb.search\n    payload_schema: search.schema.json\n", 1)
	if cat == string(raw) {
		t.Fatal("the catalog has no kb.search entry to edit")
	}
	replaceFile(t, h.cfg.Catalog, cat)
	watchEventually(t, 5*time.Second, "the failed reload is logged", func() bool { return failures() >= 1 })
	gen := h.gw.revocations.Generation()
	if got := h.gw.Policy().Version(); got != v1 {
		t.Fatalf("a failed reload replaced the policies: version %s; want %s", got, v1)
	}

	// Ticks pass with nothing changed: the same failure is not logged
	// again, and the revocations are not replaced (each replace bumps
	// their generation and requests a sweep of the held requests). This
	// waits a fixed time: it shows something does not happen.
	quiet := func(logged int) {
		t.Helper()
		time.Sleep(25 * interval)
		if n := failures(); n != logged {
			t.Errorf("%d failed reloads logged over 25 more ticks; want %d (one per distinct failure)", n, logged)
		}
		if g := h.gw.revocations.Generation(); g != gen {
			t.Errorf("revocations replaced while their file did not change: generation %d; want %d", g, gen)
		}
	}
	quiet(1)

	// The schema file is written broken: the retry fails otherwise, and
	// that failure is logged, once.
	replaceFile(t, schema, `{"type":`)
	watchEventually(t, 5*time.Second, "a retry notices the schema file written (broken) and logs its new failure", func() bool { return failures() >= 2 })
	if got := h.gw.Policy().Version(); got != v1 {
		t.Fatalf("a failed reload replaced the policies: version %s; want %s", got, v1)
	}
	quiet(2)

	// The schema file is fixed, no other file changing: the new catalog
	// and policies load together, and the forbid applies.
	replaceFile(t, schema, `{"type":"object"}`)
	watchEventually(t, 5*time.Second, "the catalog and policies load once the schema file is valid", func() bool {
		return h.gw.Policy().Version() != v1
	})
	if files := h.gw.rules.Load().cat.Files(); !anyHasSuffix(files, "search.schema.json") {
		t.Errorf("the catalog in force reads %v; want it to name search.schema.json", files)
	}
	h.wantReason(search(), reason.PolicyDenied)
}

func anyHasSuffix(list []string, suffix string) bool {
	for _, s := range list {
		if strings.HasSuffix(s, suffix) {
			return true
		}
	}
	return false
}
