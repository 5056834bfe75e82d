package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/natstest"
)

// writeServeConfig writes a minimal gateway config for url with the
// given streams.replicas, and its keys and catalog.
func writeServeConfig(t *testing.T, url string, replicas int) string {
	t.Helper()
	dir := t.TempDir()
	seed := func(name string, mk func() (nkeys.KeyPair, error)) string {
		kp, err := mk()
		if err != nil {
			t.Fatal(err)
		}
		s, _ := kp.Seed()
		if err := os.WriteFile(filepath.Join(dir, name), s, 0o600); err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		return pub
	}
	seed("signing.nk", identity.NewGatewayKey)
	seed("curve.nk", identity.NewCurve)
	issuer := seed("issuer.nk", identity.NewIssuer)
	cat := "targets:\n  - name: kb.search\n    kind: read\n    scope: kb:read\n    tenants: [acme]\n    plain: true\n"
	if err := os.WriteFile(filepath.Join(dir, "catalog.yaml"), []byte(cat), 0o600); err != nil {
		t.Fatal(err)
	}
	policy := "@id(\"same-tenant\")\npermit (principal, action, resource) when { principal.tenant == resource.tenant };\n"
	if err := os.WriteFile(filepath.Join(dir, "base.cedar"), []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`audience: agentgw-test
data_dir: data
nats:
  url: %s
keys:
  signing: signing.nk
  curve: curve.nk
tenants:
  acme:
    issuers: [%s]
catalog: catalog.yaml
policies: [base.cedar]
streams:
  replicas: %d
`, url, issuer, replicas)
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestServeReplicasHint: streams.replicas 3 against a single node fails
// with a hint that says to set streams.replicas: 1, not to check the
// connection settings that worked.
func TestServeReplicasHint(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	path := writeServeConfig(t, srv.ClientURL(), 3)
	r := mustRun(t, "", exitError, "serve", "--config", path)
	if !strings.Contains(r.stderr, "streams.replicas: 1") || strings.Contains(r.stderr, "check nats.url") {
		t.Fatalf("serve with replicas 3 on one node: want the hint to set streams.replicas: 1\n%s", r)
	}
}
