package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/internal/scaffold"
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

	// The tenant limits reach accounts.conf; none at all is refused.
	small := filepath.Join(t.TempDir(), "small")
	mustRun(t, "", exitOK, "deploy", "init", "--dir", small, "--tenants", "acme", "--hosts", "nats.example.com",
		"--tenant-max-connections", "40", "--tenant-max-subscriptions", "60")
	accounts, err := os.ReadFile(filepath.Join(small, scaffold.NodeDir("nats.example.com"), "accounts.conf"))
	if err != nil || !strings.Contains(string(accounts), "TENANT_LIMITS = { max_connections: 40, max_subscriptions: 60,") {
		t.Errorf("accounts.conf with --tenant-max-connections 40 --tenant-max-subscriptions 60: %v\n%s", err, accounts)
	}
	r = mustRun(t, "", exitUsage, "deploy", "init", "--dir", t.TempDir(), "--tenants", "acme", "--hosts", "a", "--tenant-max-connections", "0")
	if !strings.Contains(r.stderr, "want at least 1") {
		t.Errorf("deploy init --tenant-max-connections 0:\n%s", r)
	}
}

// TestDeniedReplayOperatorByCertificate: in a deploy init deployment the
// operator is the certificate-mapped user of account OPS, and its agentgw
// credential's key is no NATS user. nats-server checks a presented nkey
// before it maps the certificate, so 'denied replay' with the TLS flags
// must not present the --credential key: it connects as the certificate
// and its request reaches the replay service (no gateway runs here, so
// nothing answers), instead of an Authorization Violation.
func TestDeniedReplayOperatorByCertificate(t *testing.T) {
	dir := t.TempDir()
	if _, err := scaffold.Write(scaffold.Options{
		Dir: dir, Tenants: []string{"acme"}, Hosts: []string{"localhost"}, ServerSANs: []string{"127.0.0.1"},
	}); err != nil {
		t.Fatal(err)
	}
	o, err := server.ProcessConfigFile(filepath.Join(dir, scaffold.NodeDir("localhost"), "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	o.Host, o.Port = "127.0.0.1", -1
	o.HTTPHost, o.HTTPPort = "", 0
	o.StoreDir = filepath.Join(t.TempDir(), "jetstream")
	o.NoSigs = true
	srv, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetLoggerV2(&natstest.ServerLog{}, false, false, false)
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	url := "tls://" + strings.TrimPrefix(strings.TrimPrefix(srv.ClientURL(), "nats://"), "tls://")
	op := func(f string) string { return filepath.Join(dir, scaffold.OperatorDir, f) }
	r := agentgw(t, dir, "denied", "replay", "--tenant", "acme", "--credential", op("acme.creds"), "--dry-run", "--timeout", "3s",
		"-s", url, "--tls-ca", op("tls/ca.pem"), "--tls-cert", op("tls/ops-1.pem"), "--tls-key", op("tls/ops-1-key.pem"), "1")
	if strings.Contains(strings.ToLower(r.stderr), "authorization") || !strings.Contains(r.stderr, "no gateway answers agentgw.ops.replay") {
		t.Errorf("denied replay as the operator's certificate:\n%s\nwant it connected (no gateway answers: none runs here), not refused", r)
	}
}

// TestDeployInitWarnsOfLooseCAKey: the CA key every certificate of the
// deployment rests on gets the warning any other secret file read does
// when it is open to its group or others.
func TestDeployInitWarnsOfLooseCAKey(t *testing.T) {
	first := filepath.Join(t.TempDir(), "first")
	mustRun(t, "", exitOK, "deploy", "init", "--dir", first, "--tenants", "acme", "--hosts", "nats.example.com")
	caCert, caKey := filepath.Join(first, "ca", "ca.pem"), filepath.Join(first, "ca", "ca-key.pem")
	args := []string{"deploy", "init", "--dir", filepath.Join(t.TempDir(), "second"), "--tenants", "acme", "--hosts", "nats.example.com",
		"--ca-cert", caCert, "--ca-key", caKey}
	if r := mustRun(t, "", exitOK, args...); strings.Contains(r.stderr, "open to its group or others") {
		t.Errorf("a 0600 CA key was warned of: %s", r.stderr)
	}
	if err := os.Chmod(caKey, 0o644); err != nil {
		t.Fatal(err)
	}
	args[3] = filepath.Join(t.TempDir(), "third")
	if r := mustRun(t, "", exitOK, args...); !strings.Contains(r.stderr, "ca-key.pem is open to its group or others (mode 0644)") {
		t.Errorf("a 0644 CA key: %s; want a warning", r)
	}
}
