package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/devenv"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/identity"
	"github.com/agentgw/agentgw/internal/procs"
)

// envOptions shape one test's deployment. The zero value is a single
// nats-server (file storage) and one gateway with the defaults below.
type envOptions struct {
	nodes      int  // 0 or 1: one server; 3: a cluster with R3 streams
	syncAlways bool // jetstream sync_interval: always
	// Gateway config.
	ackWait          time.Duration // default 2s
	batch            int           // default 64
	skew             time.Duration // default 30s (the gateway's default)
	approvalTTL      time.Duration // default 3s
	maxMsgsPerOutput int64         // 0: unlimited
	fetchWait        time.Duration // default 250ms
	maxTTL           time.Duration // default 5m (the gateway's default)
	dupWindow        time.Duration // default 20m (the gateway's default)
}

// env is one deployment: dev material from devenv, real nats-server
// node(s), the real agentgw binary, and a client connection for the test.
type env struct {
	t     testing.TB
	dir   string
	opts  envOptions
	mat   *devenv.Material
	nodes []*procs.NATS
	gw    *procs.Gateway
	nc    *nats.Conn
	js    jetstream.JetStream
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	if o.ackWait == 0 {
		o.ackWait = 2 * time.Second
	}
	if o.batch == 0 {
		o.batch = 64
	}
	if o.skew == 0 {
		o.skew = 30 * time.Second
	}
	if o.approvalTTL == 0 {
		o.approvalTTL = 3 * time.Second
	}
	if o.fetchWait == 0 {
		o.fetchWait = 250 * time.Millisecond
	}
	if o.maxTTL == 0 {
		o.maxTTL = 5 * time.Minute
	}
	if o.dupWindow == 0 {
		o.dupWindow = 20 * time.Minute
	}
	dir := t.TempDir()
	if *keepFlag {
		var err error
		dir, err = os.MkdirTemp("", "agentgw-faults-"+strings.ReplaceAll(t.Name(), "/", "_")+"-")
		must(t, err)
		t.Logf("keeping %s", dir)
	}
	e := &env{t: t, dir: dir, opts: o}
	var err error
	e.mat, _, err = devenv.Ensure(filepath.Join(dir, "material"))
	must(t, err)

	if o.nodes <= 1 {
		ports, err := procs.FreePorts(2)
		must(t, err)
		n, err := procs.NewNATS(bins.NATSServer, procs.NATSOptions{
			Name: "n1", Dir: filepath.Join(dir, "n1"), Port: ports[0], MonitorPort: ports[1], SyncAlways: o.syncAlways,
		})
		must(t, err)
		t.Cleanup(n.Close)
		must(t, n.StartReady(30*time.Second))
		e.nodes = []*procs.NATS{n}
	} else {
		nodes, err := procs.Cluster(bins.NATSServer, filepath.Join(dir, "cluster"), o.nodes, o.syncAlways)
		must(t, err)
		for _, n := range nodes {
			t.Cleanup(n.Close)
		}
		e.nodes = nodes
	}
	must(t, e.writeConfig(o))
	e.gw, err = procs.NewGateway(bins.Agentgw, e.configPath(), filepath.Join(dir, "logs"))
	must(t, err)
	t.Cleanup(e.gw.Close)

	e.nc, err = e.connect("agentgw-faults-check")
	must(t, err)
	t.Cleanup(e.nc.Close)
	e.js, err = jetstream.New(e.nc)
	must(t, err)
	return e
}

func (e *env) configPath() string { return filepath.Join(e.dir, "gateway.yaml") }

func (e *env) url() string { return procs.URLs(e.nodes) }

// connect opens a client connection that rides out server restarts.
func (e *env) connect(name string) (*nats.Conn, error) {
	return nats.Connect(e.url(),
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.Timeout(2*time.Second),
	)
}

// writeConfig writes the gateway config over the devenv material: the
// same keys, tenant issuer, catalog and policies as `agentgw run`, plus
// the external NATS URL and the test's limits.
func (e *env) writeConfig(o envOptions) error {
	issuer, err := identity.ReadSeedFile(e.mat.Issuer)
	if err != nil {
		return err
	}
	issuerPub, err := issuer.PublicKey()
	if err != nil {
		return err
	}
	replicas := 1
	if len(e.nodes) >= 3 {
		replicas = 3
	}
	m := e.mat
	cfg := fmt.Sprintf(`# agentgw fault-test gateway (written by internal/e2e/faults)
audience: %s
data_dir: %s
nats:
  url: %q
  name: agentgw-gateway
keys:
  signing: %s
  curve: %s
tenants:
  %s:
    issuers: [%s]
revocations:
  file: %s
catalog: %s
policies: [%s, %s]
limits:
  max_credential_lifetime: 25h
  skew: %s
  max_ttl: %s
  approval_ttl: %s
streams:
  replicas: %d
  max_msgs_per_output: %d
  duplicate_window: %s
consumer:
  ack_wait: %s
  batch: %d
  fetch_wait: %s
reload_interval: 0s
`, devenv.Audience, filepath.Join(e.dir, "gwdata"), e.url(), m.Signing, m.GatewayXK, devenv.Tenant, issuerPub,
		m.Revocation, filepath.Join(m.Dir, "catalog.yaml"),
		filepath.Join(m.Dir, "policies", "base.cedar"), filepath.Join(m.Dir, "policies", "refunds.cedar"),
		o.skew, o.maxTTL, o.approvalTTL, replicas, o.maxMsgsPerOutput, o.dupWindow, o.ackWait, o.batch, o.fetchWait)
	if err := os.WriteFile(e.configPath(), []byte(cfg), 0o600); err != nil {
		return err
	}
	// The binary decodes it; decode it here too so a typo fails with a
	// clear message rather than a gateway that never starts.
	_, err = gateway.LoadConfig(e.configPath())
	return err
}

// startGateway starts the gateway and waits until it decides.
func (e *env) startGateway() {
	e.t.Helper()
	must(e.t, e.gw.StartRetry(60*time.Second))
}

// consumerInfo reads the gateway's durable ingress consumer.
func (e *env) consumerInfo(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	c, err := e.js.Consumer(ctx, gateway.StreamIngress, "agentgw")
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
