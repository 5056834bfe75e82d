package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/gateway/identity"
)

// TestCatalogAndCasePathErrorsHideSeeds: a seed pasted where a catalog
// file or an eval case file belongs is not echoed by the error refusing
// it, on the terminal or in --json output (TestFlagErrorsHideSecrets
// covers the other flags and arguments).
func TestCatalogAndCasePathErrorsHideSeeds(t *testing.T) {
	seed := issuerSeed(t)
	pol, _ := filepath.Abs("../../testdata/wire/policy.cedar")
	cases := suiteFiles(t)
	dir := t.TempDir()
	for _, args := range [][]string{
		{"policy", "check", "--catalog", seed, pol},
		{"policy", "check", "--json", "--catalog", seed, pol},
		{"policy", "test", "--catalog", seed, pol},
		{"eval", "run", seed},
		{"eval", "run", "--catalog", seed, cases[0]},
	} {
		r := agentgw(t, dir, args...)
		if r.code == exitOK {
			t.Errorf("agentgw %s: exit 0; want a refusal", strings.Join(args[:3], " "))
		}
		if out := r.stdout + r.stderr; strings.Contains(out, seed) {
			t.Errorf("agentgw %s echoes the seed:\n%s", strings.Join(args[:3], " "), out)
		}
	}
}

// TestRevokeFilePathHidesSeed: creds revoke --file names the file it
// wrote, by SafePath: a seed typed as the path is not printed.
func TestRevokeFilePathHidesSeed(t *testing.T) {
	seed := issuerSeed(t)
	r := agentgw(t, t.TempDir(), "creds", "revoke", "--file", seed, "--jti", "abc")
	if out := r.stdout + r.stderr; strings.Contains(out, seed) {
		t.Errorf("agentgw creds revoke --file <seed> (exit %d) echoes the seed:\n%s", r.code, strings.ReplaceAll(out, seed, "<THE SEED>"))
	}
}

// issuerSeed is a new issuer seed, the secret a user might paste where a
// path belongs.
func issuerSeed(t *testing.T) string {
	t.Helper()
	kp, err := identity.NewIssuer()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}
