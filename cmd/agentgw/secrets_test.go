package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestYAMLErrorsHideFileContents: a secret file given where a YAML file
// belongs (a .creds file or a seed file as the revocations list, the
// MCP mapping or the catalog) is refused with the line, column and
// problem, never the file's text: go-yaml's own errors quote it.
func TestYAMLErrorsHideFileContents(t *testing.T) {
	k := newCredsKit(t)
	mustRun(t, k.dir, exitOK, "creds", "issue", "--issuer", "issuer.nk", "--agent-seed", "agent.nk",
		"--tenant", "tenant_a", "--audience", "billing-gateway", "--scopes", "refund:draft",
		"--xkey", k.xkey, "--out", "agent.creds")
	if err := os.WriteFile(filepath.Join(k.dir, "p.cedar"), []byte("permit(principal, action, resource);\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := suiteFiles(t)
	for _, file := range []string{"agent.creds", "issuer.nk"} {
		for _, args := range [][]string{
			{"creds", "revoke", "--file", file, "--jti", "x"},
			{"mcp", "bridge", "--config", file, "--credential", "x", "--curve-seed", "y", "--gateway-xkey", "z"},
			{"policy", "check", "--catalog", file, "p.cedar"},
			{"eval", "run", "--catalog", file, cases[0]},
		} {
			r := agentgw(t, k.dir, args...)
			what := strings.Join(args, " ")
			if r.code == exitOK {
				t.Errorf("agentgw %s: exit 0; want a refusal", what)
			}
			if !strings.Contains(r.stdout+r.stderr, "line 1, column 1") {
				t.Errorf("agentgw %s does not locate the problem:\n%s", what, r)
			}
			k.assertNoSecrets(t, "agentgw "+what, r.stdout+r.stderr)
		}
	}
}
