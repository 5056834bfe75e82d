package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/gwtest"
	"github.com/agentgw/agentgw/internal/natstest"
)

// suiteFiles are the shipped case files, as absolute paths.
func suiteFiles(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob("../../testdata/evals/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no case files (%v)", err)
	}
	for i, p := range paths {
		if paths[i], err = filepath.Abs(p); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

// evalJSON is the part of 'eval run --json' the test reads.
type evalJSON struct {
	Totals struct {
		Cases       int `json:"cases"`
		Passed      int `json:"passed"`
		FalseAllows int `json:"false_allows"`
	} `json:"totals"`
}

func decodeEval(t *testing.T, r result) evalJSON {
	t.Helper()
	var rep evalJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("--json output does not decode: %v\n%s", err, r)
	}
	return rep
}

// TestEvalRun: the suite passes in a sandbox (exit 0); a candidate policy
// set that drops the refund rules turns two denials into false allows
// (exit 3, both named); a case file that does not load is a usage error.
func TestEvalRun(t *testing.T) {
	files := suiteFiles(t)
	r := mustRun(t, "", exitOK, append([]string{"eval", "run", "--json"}, files...)...)
	rep := decodeEval(t, r)
	if rep.Totals.Cases < 40 || rep.Totals.Passed != rep.Totals.Cases {
		t.Errorf("totals %+v; want every one of at least 40 cases passed", rep.Totals)
	}
	if !strings.Contains(r.stderr, "["+"1/") {
		t.Errorf("no progress on stderr:\n%s", r)
	}

	base, _ := filepath.Abs("../../testdata/evals/sandbox/policies/base.cedar")
	r = mustRun(t, "", exitRejected, append([]string{"eval", "run", "--quiet", "--policy", base}, files...)...)
	for _, want := range []string{"FAIL  demo/over-ceiling: false_allow: want deny/content_denied by refunds.max_amount, got allow", "FAIL  deny/policy/not-a-support-service: false_allow", "2 false allows"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q\n%s", want, r)
		}
	}

	broken := filepath.Join(t.TempDir(), "broken.cedar")
	if err := os.WriteFile(broken, []byte("permit (principal, action, resource) when { nonsense };"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "", exitRejected, "eval", "run", "--policy", broken, files[0])
	// A catalog that does not load is refused (3), as a policy is.
	brokenCat := filepath.Join(t.TempDir(), "catalog.yaml")
	if err := os.WriteFile(brokenCat, []byte("targets: [{name: kb.search, kind: nonsense}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := mustRun(t, "", exitRejected, "eval", "run", "--catalog", brokenCat, files[0]); !strings.Contains(r.stderr, "the catalog does not load") {
		t.Errorf("stderr does not say the catalog does not load:\n%s", r)
	}
	mustRun(t, "", exitRejected, "policy", "test", "--catalog", brokenCat, base)

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\ncases: [{name: x, from: nobody, send: {raw: {body: x}}, expect: {route: allow}}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, "", exitUsage, "eval", "run", bad)
	if !strings.Contains(r.stderr, "not an actor") {
		t.Errorf("stderr does not say what is wrong:\n%s", r)
	}
}

// TestEvalRunExternal: the demo's cases run against a gateway serving on
// a nats-server over TCP, with the issuer seed it trusts named on the
// command line, and pass.
func TestEvalRunExternal(t *testing.T) {
	dir := t.TempDir()
	srv := natstest.Start(t, natstest.Options{})
	seedFile := func(name string, kp nkeys.KeyPair) string {
		seed, err := kp.Seed()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	issuer, _ := identity.NewIssuer()
	signing, _ := identity.NewGatewayKey()
	curve, _ := identity.NewCurve()
	issuerPub, _ := issuer.PublicKey()
	xkey, _ := curve.PublicKey()
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	cfg := gateway.DefaultConfig()
	cfg.Audience = "billing-gateway"
	cfg.DataDir = filepath.Join(dir, "ledger")
	cfg.Catalog = abs("../../testdata/evals/sandbox/catalog.yaml")
	cfg.Policies = []string{abs("../../testdata/evals/sandbox/policies/base.cedar"), abs("../../testdata/evals/sandbox/policies/refunds.cedar")}
	cfg.Keys = gateway.KeysConfig{Signing: seedFile("signing.nk", signing), Curve: seedFile("curve.nk", curve)}
	cfg.Tenants = map[string]gateway.TenantConfig{"tenant_a": {Issuers: []string{issuerPub}}}
	cfg.NATS.URL = srv.ClientURL()
	gw, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gwtest.Run(t, gw, "against the external nats-server")

	r := mustRun(t, "", exitOK, "eval", "run", "--json", "--external", "--server", srv.ClientURL(), "--audience", "billing-gateway",
		"--issuer", "tenant_a="+seedFile("issuer.nk", issuer), "--gateway-xkey", xkey,
		"--policy", cfg.Policies[0], "--policy", cfg.Policies[1], abs("../../testdata/evals/demo.yaml"))
	rep := decodeEval(t, r)
	if rep.Totals.Cases != 9 || rep.Totals.Passed != 9 {
		t.Errorf("totals %+v; want the demo's 9 cases passed\n%s", rep.Totals, r)
	}
}
