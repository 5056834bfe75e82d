package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeployInit: deploy init writes a deployment whose secrets are 0600,
// refuses to write over it (exit 1, nothing changed) unless --force, and
// reports bad options as usage errors.
func TestDeployInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "prod")
	args := []string{"deploy", "init", "--dir", dir, "--tenants", "acme,globex", "--hosts", "nats.example.com"}
	r := mustRun(t, "", exitOK, args...)
	if !strings.Contains(r.stdout, "a single node (streams.replicas: 1)") || !strings.Contains(r.stdout, "agentgw serve --config "+dir+"/gateway/gateway.yaml") {
		t.Errorf("deploy init output:\n%s", r)
	}
	seed := filepath.Join(dir, "tenants", "acme", "issuer.nk")
	fi, err := os.Stat(seed)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("issuer seed: %v, %v; want mode 0600", fi, err)
	}
	before, _ := os.ReadFile(seed)

	r = mustRun(t, "", exitError, args...)
	if !strings.Contains(r.stderr, "file exists") || !strings.Contains(r.stderr, "--force") {
		t.Errorf("deploy init over a deployment:\n%s", r)
	}
	if after, _ := os.ReadFile(seed); string(after) != string(before) {
		t.Fatal("a refused deploy init changed the issuer seed")
	}
	mustRun(t, "", exitOK, append(args, "--force")...)
	if after, _ := os.ReadFile(seed); string(after) == string(before) {
		t.Fatal("deploy init --force kept the old issuer seed")
	}

	r = mustRun(t, "", exitUsage, "deploy", "init", "--dir", t.TempDir(), "--tenants", "acme", "--hosts", "a,b")
	if !strings.Contains(r.stderr, "give one (a single node) or three (a cluster)") {
		t.Errorf("deploy init with two hosts:\n%s", r)
	}
}
