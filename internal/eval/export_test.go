package eval_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/internal/eval"
)

var secretShaped = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.|S[ACNOUX][A-Z2-7]{56}`)

// TestExportRoundTrip: the suite's denied records, exported, are cases
// that pass against the same sandbox; no secret of the first run is in
// the exported file; dropping the refund rules flips the exported
// policy denial into a false allow.
func TestExportRoundTrip(t *testing.T) {
	files := suite(t)
	ctx := context.Background()
	sb, err := eval.StartSandbox(ctx, files[0], eval.SandboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := eval.Run(ctx, &sb.Target, files, eval.Options{})
	if err != nil {
		sb.Close()
		t.Fatal(err)
	}
	js, err := jetstream.New(sb.NC)
	if err != nil {
		sb.Close()
		t.Fatal(err)
	}
	recs, err := eval.ReadDenied(ctx, js, eval.DeniedQuery{})
	secrets := append([]string(nil), sb.Secrets...)
	if cerr := sb.Close(); cerr != nil {
		t.Errorf("Close = %v", cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	denied := 0
	for _, c := range rep.Cases {
		if c.Got.Route == eval.RouteDeny {
			denied++
		}
	}
	if len(recs) < denied {
		t.Fatalf("read %d denied records; the run denied %d cases", len(recs), denied)
	}

	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	spec := eval.SandboxSpec{
		Catalog:  abs("../../testdata/evals/sandbox/catalog.yaml"),
		Policies: []string{abs("../../testdata/evals/sandbox/policies/base.cedar"), abs("../../testdata/evals/sandbox/policies/refunds.cedar")},
		Tenants:  []string{"tenant_a", "tenant_b"},
	}
	out, skipped := eval.Export(recs, eval.ExportOptions{Sandbox: spec})
	for _, s := range skipped {
		t.Logf("skipped denied #%d (%s): %s", s.Seq, s.Reason, s.Why)
	}
	data, err := out.Marshal("exported by TestExportRoundTrip")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(string(data), s) {
			t.Fatal("the exported file holds a secret of the run")
		}
	}
	if secretShaped.Match(data) {
		t.Error("the exported file holds something shaped like a JWT or an nkey seed")
	}
	path := filepath.Join(t.TempDir(), "exported.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ex, err := eval.Load(path)
	if err != nil {
		t.Fatalf("the exported file does not load: %v\n%s", err, data)
	}
	if len(ex.Cases) < 25 {
		t.Errorf("exported %d cases of %d records; want at least 25\n%s", len(ex.Cases), len(recs), data)
	}
	again := runSandbox(t, []*eval.File{ex}, eval.SandboxOptions{})
	if again.Totals.RedactionFailures > 0 {
		t.Errorf("redaction failures: %v", again.Redaction)
	}
	for _, c := range again.Cases {
		if c.Verdict != eval.Pass {
			t.Errorf("exported %s: %s: got %+v; want %+v", c.Name, c.Verdict, c.Got, c.Expect)
		}
	}

	flipped := runSandbox(t, []*eval.File{ex}, eval.SandboxOptions{Policies: spec.Policies[:1]})
	if !flipped.Rejected() || flipped.Totals.FalseAllows == 0 {
		t.Errorf("without the refund rules: totals %+v; want a false allow", flipped.Totals)
	}
}
