package transport_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/conf"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/identity"
)

// TestDeployGatewayConfig loads deploy/gateway.yaml as `agentgw serve`
// does: it must be valid once its placeholders are filled, run streams at
// three replicas and refuse a server without TLS.
func TestDeployGatewayConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir, "gateway.yaml"))
	must(t, err)
	s := string(data)
	for _, ph := range []string{"<TENANT_A_ISSUER>", "<TENANT_B_ISSUER>"} {
		kp, _ := identity.NewIssuer()
		pub, _ := kp.PublicKey()
		s = strings.ReplaceAll(s, ph, pub)
	}
	if regexp.MustCompile(`<[A-Z0-9_]+>`).MatchString(s) {
		t.Fatal("deploy/gateway.yaml has a placeholder this test does not fill")
	}
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	must(t, os.WriteFile(path, []byte(s), 0o600))
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig(deploy/gateway.yaml) = %v", err)
	}
	if cfg.Streams.Replicas != 3 {
		t.Errorf("streams.replicas = %d; want 3", cfg.Streams.Replicas)
	}
	if cfg.ScaleOut == nil || cfg.Consumer.Partitions < 3 {
		t.Errorf("scale_out = %+v, consumer.partitions = %d; want three instances' worth of partitions", cfg.ScaleOut, cfg.Consumer.Partitions)
	}
	tc := cfg.NATS.TLS
	if !tc.Required || tc.CA == "" || tc.Cert == "" || tc.Key == "" {
		t.Errorf("nats.tls = %+v; want required, a pinned CA and a client certificate", tc)
	}
	for _, u := range strings.Split(cfg.NATS.URL, ",") {
		if !strings.HasPrefix(u, "tls://") {
			t.Errorf("nats.url %q is not tls://", u)
		}
	}
	// The ingress cap: a quarter of each node's file store, the rest
	// for the outputs.
	for _, n := range []string{"n1", "n2", "n3"} {
		store := maxFileStore(t, filepath.Join(deployDir, "cluster", n+".conf"))
		if s := cfg.Streams; s.IngressMaxBytes != store/4 {
			t.Errorf("streams: ingress_max_bytes %d; want a quarter of %s's max_file_store %d",
				s.IngressMaxBytes, n, store)
		}
	}
}

// maxFileStore reads jetstream.max_file_store of a server config as
// nats-server does, units included.
func maxFileStore(t testing.TB, path string) int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	line := regexp.MustCompile(`(?m)^\s*max_file_store:.*$`).Find(data)
	if line == nil {
		t.Fatalf("%s: no max_file_store", path)
	}
	m, err := conf.Parse(string(line))
	must(t, err)
	v, ok := m["max_file_store"].(int64)
	if !ok {
		t.Fatalf("%s: max_file_store %v", path, m["max_file_store"])
	}
	return v
}
