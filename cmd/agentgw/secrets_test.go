package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

// TestFlagErrorsHideSecrets: a seed or a token pasted into a flag or an
// argument is not echoed by the error refusing it.
func TestFlagErrorsHideSecrets(t *testing.T) {
	k := newCredsKit(t)
	mustRun(t, k.dir, exitOK, "creds", "issue", "--issuer", "issuer.nk", "--agent-seed", "agent.nk",
		"--tenant", "tenant_a", "--audience", "billing-gateway", "--scopes", "refund:draft",
		"--xkey", k.xkey, "--out", "agent.creds")
	creds, err := os.ReadFile(filepath.Join(k.dir, "agent.creds"))
	if err != nil {
		t.Fatal(err)
	}
	jwtLine := strings.Split(string(creds), "\n")[1]
	const opaque = "ya29.a0AfB_byC3x9Kq7ZLmN2pQ4rS6tU8vW0xY1zA3bC5dE7fG9hI"
	cases := suiteFiles(t)
	exchange := []string{"creds", "exchange", "--agent-seed", "agent.nk", "--curve-seed", "curve.nk",
		"--gateway-xkey", k.xkey, "--audience", "billing-gateway", "--out", "x.creds"}
	for _, secret := range []string{k.issuerSeed, jwtLine, opaque} {
		for i, args := range [][]string{
			{"eval", "run", "--external", "--audience", "billing-gateway", "--issuer", secret, cases[0]},
			{"creds", "revoke", "--file", "revocations.yaml", "--key", secret},
			{"creds", "revoke", "--file", "revocations.yaml", "--jti", secret + "!"},
			{"approvals", "ls", "--tenant", "tenant_a", secret},
			append(slices.Clone(exchange), "--idp-token-env", secret),
			append(slices.Clone(exchange), "--idp-token-file", secret),
		} {
			r := agentgw(t, k.dir, args...)
			what := fmt.Sprintf("%s (case %d)", strings.Join(args[:2], " "), i)
			if r.code == exitOK {
				t.Errorf("agentgw %s: exit 0; want a refusal", what)
			}
			out := r.stdout + r.stderr
			k.assertNoSecrets(t, "agentgw "+what, out)
			if strings.Contains(out, secret[len(secret)-20:]) {
				t.Errorf("agentgw %s echoes the secret", what)
			}
		}
	}
}

// TestFlagErrorHidesSecret: a value the flag package cannot parse is
// quoted in its error; a seed pasted into such a flag is shown by
// SafeText, as every other usage error shows what it was given.
func TestFlagErrorHidesSecret(t *testing.T) {
	seed := issuerSeed(t)
	c := newCmd("creds issue", "", "")
	var out, errb bytes.Buffer
	c.out, c.err = &out, &errb
	c.fs.Duration("ttl", 0, "")
	c.fs.Bool("force", false, "")
	for _, args := range [][]string{{"--ttl", seed}, {"--force=" + seed}} {
		errb.Reset()
		if code, ok := c.parse(args); ok || code != exitUsage {
			t.Fatalf("parse(%q) = %d, %v; want a usage error", args[0][:5], code, ok)
		}
		if strings.Contains(errb.String(), seed) || !strings.Contains(errb.String(), "invalid") {
			t.Errorf("the usage error for %s: %q; want it without the seed", args[0][:5], strings.SplitN(errb.String(), "\n", 2)[0])
		}
	}
}
