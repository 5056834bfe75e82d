package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\ncases: [{name: x, from: nobody, send: {raw: {body: x}}, expect: {route: allow}}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, "", exitUsage, "eval", "run", bad)
	if !strings.Contains(r.stderr, "not an actor") {
		t.Errorf("stderr does not say what is wrong:\n%s", r)
	}
}
