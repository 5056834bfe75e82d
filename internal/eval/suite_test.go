package eval_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/agentgw/agentgw/internal/eval"
	"github.com/agentgw/agentgw/internal/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.LeakOptions()...) }

// suite loads every case file of testdata/evals.
func suite(t *testing.T) []*eval.File {
	t.Helper()
	paths, err := filepath.Glob("../../testdata/evals/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no case files in testdata/evals (%v)", err)
	}
	var files []*eval.File
	for _, p := range paths {
		f, err := eval.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// runSandbox runs files with eval.RunSandboxed.
func runSandbox(t *testing.T, files []*eval.File, opts eval.SandboxOptions) *eval.Report {
	t.Helper()
	rep, err := eval.RunSandboxed(context.Background(), files, opts, eval.Options{})
	if err != nil {
		t.Fatalf("RunSandboxed = %v", err)
	}
	return rep
}

// TestSuite runs the shipped suite: every case must have its pinned
// outcome, nothing may leak and every output must carry its trace fields.
func TestSuite(t *testing.T) {
	files := suite(t)
	rep := runSandbox(t, files, eval.SandboxOptions{})
	if rep.Totals.Cases < 40 {
		t.Errorf("the suite has %d cases; want at least 40", rep.Totals.Cases)
	}
	for _, c := range rep.Cases {
		if c.Verdict != eval.Pass {
			t.Errorf("%s: %s: got %+v; want %+v %s", c.Name, c.Verdict, c.Got, c.Expect, c.Problem)
		}
		if len(c.MissingTrace) > 0 {
			t.Errorf("%s: trace fields missing: %s", c.Name, strings.Join(c.MissingTrace, ", "))
		}
	}
	for _, l := range rep.Redaction {
		t.Errorf("redaction failure: %s", l)
	}
	if rep.Totals.ReplaysDetected == 0 {
		t.Error("no replay detected; the suite sends replays")
	}
	// base.answers permits approvers' answers and consumers' responses;
	// the events of an answered request name the policies that held it,
	// and responses are not cases yet, so it is never seen deciding.
	// Every other policy decides at least one case.
	for _, id := range rep.Coverage.Never {
		if id != "base.answers" {
			t.Errorf("policy %s decided no case", id)
		}
	}
}

// TestPolicyChangeFlips: the suite run against a candidate policy set
// that drops the refund rules reports the cases those rules decided as
// false allows, and the run as rejected.
func TestPolicyChangeFlips(t *testing.T) {
	files := suite(t)
	rep := runSandbox(t, files, eval.SandboxOptions{Policies: []string{"../../testdata/evals/sandbox/policies/base.cedar"}})
	if !rep.Rejected() {
		t.Fatalf("Rejected() = false with the refund rules dropped; totals %+v", rep.Totals)
	}
	flipped := map[string]string{}
	for _, c := range rep.Cases {
		if c.Verdict != eval.Pass {
			flipped[c.Name] = c.Verdict
		}
	}
	for _, name := range []string{"demo/over-ceiling", "deny/policy/not-a-support-service"} {
		if flipped[name] != eval.FalseAllow {
			t.Errorf("%s: verdict %q; want %q", name, flipped[name], eval.FalseAllow)
		}
	}
	if len(flipped) != 2 {
		t.Errorf("flipped cases %v; want exactly the two the refund rules decide", flipped)
	}
	if !slices.Contains(rep.Coverage.Never, "base.answers") || len(rep.Coverage.Decided) == 0 {
		t.Errorf("coverage %+v; want base.answers never deciding and some policy deciding", rep.Coverage)
	}
}

// TestRedactionScan: a secret the run used, written where the scan looks
// (here the gateway's log), is reported, and the run is rejected.
func TestRedactionScan(t *testing.T) {
	files := suite(t)[:1]
	ctx := context.Background()
	sb, err := eval.StartSandbox(ctx, files[0], eval.SandboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sb.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	}()
	tgt := sb.Target
	leaked := tgt.Secrets[0]
	logs := tgt.Logs
	tgt.Logs = func() string { return logs() + `{"level":"info","oops":"` + leaked + `"}` }
	rep, err := eval.Run(ctx, &tgt, files, eval.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Totals.RedactionFailures != 1 || !rep.Rejected() {
		t.Fatalf("redaction failures %v; want exactly one, in the gateway log", rep.Redaction)
	}
	if strings.Contains(strings.Join(rep.Redaction, "\n"), leaked) {
		t.Error("the report quotes the secret it found")
	}
}

// TestRunStopsWhenGatewayStops: a run whose gateway stops on its own ends
// at once with the gateway's error, instead of every remaining case
// waiting out its timeout for an output that cannot come; a sandbox
// reports its gateway's stop.
func TestRunStopsWhenGatewayStops(t *testing.T) {
	files := suite(t)
	ctx := context.Background()
	sb, err := eval.StartSandbox(ctx, files[0], eval.SandboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sb.Down:
		sb.Close()
		t.Fatal("Down closed while the sandbox's gateway runs")
	default:
	}
	down := make(chan struct{})
	close(down)
	target := sb.Target
	target.Down, target.DownErr = down, func() error { return errors.New("ledger gone") }
	rep, err := eval.Run(ctx, &target, files, eval.Options{Timeout: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "the gateway under test stopped: ledger gone") {
		t.Errorf("Run = %v, %v; want the gateway's stop as the error", rep, err)
	}
	if err := sb.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	select {
	case <-sb.Down:
	default:
		t.Error("Down not closed after the sandbox's gateway stopped")
	}
}
