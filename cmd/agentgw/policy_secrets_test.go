package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// seedFileProblem is a problem naming a seed file, its line and its column.
var seedFileProblem = regexp.MustCompile(`\.nk:\d+:\d+: parse error`)

// TestPolicyCheckHidesSeed: a seed file given as a policy file is one
// identifier token to Cedar, which quotes it in its parse error. policy
// check (text and --json) and policy test report the file, line and
// column without the seed.
func TestPolicyCheckHidesSeed(t *testing.T) {
	k := newCredsKit(t)
	cat, err := filepath.Abs(filepath.Join("..", "..", "internal", "devenv", "material", "catalog.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"policy", "check", "issuer.nk"},
		{"policy", "check", "--json", "agent.nk"},
		{"policy", "check", "issuer.nk", "agent.nk"},
		{"policy", "test", "--catalog", cat, "issuer.nk", "agent.nk"},
	} {
		r := mustRun(t, k.dir, exitRejected, args...)
		k.assertNoSecrets(t, strings.Join(args, " "), r.stdout+r.stderr)
		if !seedFileProblem.MatchString(r.stdout + r.stderr) {
			t.Errorf("%s does not locate the problem:\n%s", strings.Join(args, " "), r)
		}
	}
}
