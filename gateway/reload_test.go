package gateway

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/budget"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/subjects/reason"
)

// replaceFile swaps a file atomically, as an operator should.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	must(t, os.WriteFile(tmp, []byte(content), 0o600))
	must(t, os.Rename(tmp, path))
}

func TestPolicyReloadWithoutRestart(t *testing.T) {
	h := newHarness(t)
	h.cfg.ReloadInterval = 50 * time.Millisecond
	h.allowErrors = true // the broken policy file is logged as an error
	h.start()
	search := func() uint64 { return h.send(h.body(nil)) }
	if out := h.outputFor(search()); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("before reload: %s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
	v1 := h.gw.Policy().Version()
	policyFile := h.cfg.Policies[0]
	replaceFile(t, policyFile, testPolicy+"\n@id(\"no-search\")\nforbid (principal, action, resource == Target::\"kb.search\");\n")
	waitFor(t, func() bool { return h.gw.Policy().Version() != v1 })
	v2 := h.gw.Policy().Version()
	h.wantReason(search(), reason.PolicyDenied)

	// A broken file is refused: the previous set keeps serving.
	replaceFile(t, policyFile, "permit (principal, action, resource) when { 1 + };")
	time.Sleep(300 * time.Millisecond) // several poll intervals
	if got := h.gw.Policy().Version(); got != v2 {
		t.Fatalf("a broken policy file replaced the set: version %s; want %s", got, v2)
	}
	h.wantReason(search(), reason.PolicyDenied)
	if !strings.Contains(h.logs.String(), "reload") {
		t.Error("the failed reload was not logged")
	}
	r, err := invariant.Wait(context.Background(), h.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil || r.Ingress != 3 {
		t.Fatalf("invariant: %v (ingress %d, want 3)", err, r.Ingress)
	}
}

// TestRevocationsReportMalformedEntries: an entry that is neither a
// credential id nor an agent key (here a key with a line break, which
// nkeys would still decode, and a jti with a space) would match nothing.
// Reload reports each, and the well-formed entries beside them apply.
func TestRevocationsReportMalformedEntries(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true // the failed reload is logged as an error
	h.start()
	if out := h.outputFor(h.send(h.body(nil))); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("before reload: %s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
	other := newActor(t)
	broken := h.agent.pub[:20] + `\n` + h.agent.pub[20:]
	replaceFile(t, h.cfg.Revocations.File, "keys: [\""+broken+"\", "+other.pub+"]\njtis: [\"has space\", other-id]\nprincipals: []\n")
	err := h.gw.Reload()
	if err == nil {
		t.Fatal("Reload accepted malformed revocations")
	}
	for _, want := range []string{"is not an agent public key", "is not a credential id"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Reload error lacks %q: %v", want, err)
		}
	}
	if !h.gw.revocations.Revoked("", "", other.pub) || !h.gw.revocations.Revoked("", "other-id", "") {
		t.Error("the well-formed entries beside the malformed ones were not applied")
	}
	if out := h.outputFor(h.send(h.body(nil))); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Errorf("after reload: %s (%s); the malformed key is not the agent's", out.Subject, out.Header.Get(header.Reason))
	}
}

// TestRevocationsMalformedEntryRefusedAtStart: at start there is no
// earlier revocation set to keep, so a revocations file with an entry
// that would match nothing (a key with a line break) stops the gateway
// from starting, naming the problem, rather than running without it.
func TestRevocationsMalformedEntryRefusedAtStart(t *testing.T) {
	h := newHarness(t)
	broken := h.agent.pub[:20] + `\n` + h.agent.pub[20:]
	replaceFile(t, h.cfg.Revocations.File, "jtis: []\nprincipals: []\nkeys: [\""+broken+"\"]\n")
	gw, err := New(h.cfg, WithClock(h.clock.Now), WithConn(h.nc))
	if err == nil {
		_ = gw.Close()
		t.Fatal("New started with a malformed revocation entry")
	}
	if !strings.Contains(err.Error(), "is not an agent public key") {
		t.Errorf("New error = %v; want it to name the malformed key entry", err)
	}
}

// TestReloadSwapsCatalogAndPolicyTogether: a new catalog target whose
// forbid sits in a policy file that does not compile is not served
// under the old policy. Neither file is swapped until both load; then
// both are.
func TestReloadSwapsCatalogAndPolicyTogether(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true // the broken policy file is logged as an error
	h.start()
	cat, err := os.ReadFile(h.cfg.Catalog)
	must(t, err)
	wipe := "  - name: admin.wipe\n    kind: read\n    scope: kb:read\n    tenants: [tenant_a]\n    plain: true\n"
	if !strings.Contains(string(cat), "targets:\n") {
		t.Fatalf("test catalog has no targets section:\n%s", cat)
	}
	newCat := strings.Replace(string(cat), "targets:\n", "targets:\n"+wipe, 1)
	forbid := "\n@id(\"no-wipe\")\nforbid (principal, action, resource == Target::\"admin.wipe\");\n"
	wipeBody := func() []byte {
		return h.body(func(b *envelope.Builder) { b.Target = "admin.wipe" })
	}
	replaceFile(t, h.cfg.Catalog, newCat)
	replaceFile(t, h.cfg.Policies[0], testPolicy+forbid+"permit (principal, action, resource) when { 1 + };\n")
	if err := h.gw.Reload(); err == nil {
		t.Fatal("Reload accepted a policy file that does not compile")
	}
	h.wantReason(h.send(wipeBody()), reason.UnknownTarget)

	replaceFile(t, h.cfg.Policies[0], testPolicy+forbid)
	must(t, h.gw.Reload())
	h.wantReason(h.send(wipeBody()), reason.PolicyDenied)
}

// TestRevocationsFileThatSaysNothingKeepsThem: a revocations file that
// is gone, empty, or does not name each of jtis, keys and principals
// does not lift the revocations in force (a file written in place and
// read half way, a typo in the path); one that names all three, "[]"
// for none, does. At start such a file is an error: there is no earlier
// set to keep.
func TestRevocationsFileThatSaysNothingKeepsThem(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true // the refused reloads are logged as errors
	h.start()
	replaceFile(t, h.cfg.Revocations.File, "jtis: []\nprincipals: []\nkeys: ["+h.agent.pub+"]\n")
	must(t, h.gw.Reload())
	h.wantReason(h.send(h.body(nil)), reason.Revoked)
	for _, tc := range []struct {
		name  string
		write func()
	}{
		{"removed", func() { must(t, os.Remove(h.cfg.Revocations.File)) }},
		{"empty", func() { replaceFile(t, h.cfg.Revocations.File, "") }},
		{"comment only", func() { replaceFile(t, h.cfg.Revocations.File, "# nothing yet\n") }},
		{"names another file", func() { replaceFile(t, h.cfg.Revocations.File, "file: other.yaml\n") }},
		{"read half way: jtis only", func() { replaceFile(t, h.cfg.Revocations.File, "jtis: []\n") }},
		{"read half way: no principals", func() { replaceFile(t, h.cfg.Revocations.File, "jtis: []\nkeys: []\n") }},
	} {
		tc.write()
		if err := h.gw.Reload(); err == nil {
			t.Errorf("%s: Reload accepted the revocations file", tc.name)
		}
		h.wantReason(h.send(h.body(nil)), reason.Revoked)
	}
	replaceFile(t, h.cfg.Revocations.File, "jtis: []\nkeys: []\nprincipals: []\n")
	must(t, h.gw.Reload())
	if out := h.outputFor(h.send(h.body(nil))); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("after an explicit empty list: %s (%s); want delivered", out.Subject, out.Header.Get(header.Reason))
	}
	h.stop()

	for _, content := range []string{"", "# none\n", "jtis: []\n"} {
		replaceFile(t, h.cfg.Revocations.File, content)
		if _, err := New(h.cfg, WithClock(h.clock.Now), WithConn(h.nc)); err == nil {
			t.Errorf("New accepted a revocations file of %q", content)
		}
	}
	must(t, os.Remove(h.cfg.Revocations.File))
	if _, err := New(h.cfg, WithClock(h.clock.Now), WithConn(h.nc)); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("New with the revocations file missing: %v; want a not-exist error", err)
	}
}

// TestCatalogBudgetWithoutRateKeepsTheDefault: a catalog budget that
// names only a burst, or only a rate, takes the rest from the gateway's
// default target limit; it never turns the limit off.
func TestCatalogBudgetWithoutRateKeepsTheDefault(t *testing.T) {
	for _, tc := range []struct {
		budget string
		allow  int // then budget_exceeded
	}{
		{"{burst: 1}", 1},
		{"{}", 3},
		{"{rate: 0.001}", 3},
	} {
		t.Run(tc.budget, func(t *testing.T) {
			h := newHarness(t)
			h.cfg.Budgets.Target = budget.Limit{Rate: 0.001, Burst: 3}
			cat, err := os.ReadFile(h.cfg.Catalog)
			must(t, err)
			old := "    budget: {rate: 0.001, burst: 1}\n"
			if !strings.Contains(string(cat), old) {
				t.Fatal("test catalog lost ops.limited's budget")
			}
			must(t, os.WriteFile(h.cfg.Catalog, []byte(strings.Replace(string(cat), old, "    budget: "+tc.budget+"\n", 1)), 0o600))
			h.start()
			for i := range tc.allow + 1 {
				seq := h.send(h.body(func(b *envelope.Builder) { b.Target = "ops.limited" }))
				if i < tc.allow {
					if out := h.outputFor(seq); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
						t.Fatalf("message %d: %s (%s); want delivered", i, out.Subject, out.Header.Get(header.Reason))
					}
					continue
				}
				h.wantReason(seq, reason.BudgetExceeded)
			}
		})
	}
}

// TestPolicyFileEmptiedKeepsItsForbids: a policy file emptied in place
// (truncated by a shell redirect, or by a write that then failed for
// want of disk) holds no policy. A reload refuses it and keeps the set
// in force: its forbids are not dropped.
func TestPolicyFileEmptiedKeepsItsForbids(t *testing.T) {
	h := newHarness(t)
	h.cfg.ReloadInterval = 50 * time.Millisecond
	h.allowErrors = true // the refused reload is logged as an error
	forbid := filepath.Join(h.dir, "forbid.cedar")
	must(t, os.WriteFile(forbid, []byte("@id(\"no-search\")\nforbid (principal, action, resource == Target::\"kb.search\");\n"), 0o600))
	h.cfg.Policies = append(h.cfg.Policies, forbid)
	h.start()
	h.wantReason(h.send(h.body(nil)), reason.PolicyDenied)
	v := h.gw.Policy().Version()
	for _, emptied := range []string{"", "// the forbids are being rewritten\n"} {
		must(t, os.WriteFile(forbid, []byte(emptied), 0o600))
		if err := h.gw.Reload(); err == nil || !strings.Contains(err.Error(), "holds no policy") {
			t.Errorf("Reload with the forbid file %q = %v; want it refused as holding no policy", emptied, err)
		}
		time.Sleep(200 * time.Millisecond) // several poll intervals
		if got := h.gw.Policy().Version(); got != v {
			t.Fatalf("the emptied forbid file replaced the set: version %s; want %s", got, v)
		}
		h.wantReason(h.send(h.body(nil)), reason.PolicyDenied)
	}
}

// TestReloadWatchesSchemaFiles: a payload schema the catalog names by
// file is part of the catalog. Tightening the file alone is picked up by
// the poll, as an edit of the catalog is, and changes its digest.
func TestReloadWatchesSchemaFiles(t *testing.T) {
	h := newHarness(t)
	h.cfg.ReloadInterval = 50 * time.Millisecond
	h.start()
	schema := filepath.Join(filepath.Dir(h.cfg.Catalog), "search.schema.json")
	must(t, os.WriteFile(schema, []byte(`{"type":"object"}`), 0o600))
	h.editTarget("kb.search", func(entry string) string {
		return entry + "    payload_schema: search.schema.json\n"
	})
	if out := h.outputFor(h.send(h.body(nil))); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("under the loose schema: %s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
	digest := h.gw.rules.Load().cat.Digest
	replaceFile(t, schema, `{"type":"object","required":["order_id"]}`)
	waitFor(t, func() bool { return h.gw.rules.Load().cat.Digest != digest })
	h.wantReason(h.send(h.body(nil)), reason.PayloadInvalid)
}

// TestRevocationsLackOnlyPrincipals: only a file naming jtis and keys as
// lists, with no principals key at all, has the shape that gains
// "principals: []"; one with a principals key and nothing after it, or
// missing jtis or keys, may have been cut short.
func TestRevocationsLackOnlyPrincipals(t *testing.T) {
	for data, want := range map[string]bool{
		"jtis: []\nkeys: []\n":                   true,
		"# old\njtis: [a]\nkeys:\n  - U1\n":      true,
		"jtis: []\nkeys: []\nprincipals:\n":      false,
		"jtis: []\nkeys: []\nprincipals: []\n":   false,
		"principals: []\njtis: []\n":             false,
		"jtis: []\n":                             false,
		"jtis:\nkeys: []\n":                      false,
		"keys: []\n":                             false,
		"jtis: []\nkeys: []\nfile: other.yaml\n": true,
		"jtis: [\n":                              false,
		"":                                       false,
	} {
		if got := RevocationsLackOnlyPrincipals([]byte(data)); got != want {
			t.Errorf("RevocationsLackOnlyPrincipals(%q) = %v; want %v", data, got, want)
		}
	}
}
