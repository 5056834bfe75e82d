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

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/devenv"
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
	// Scale-out: instances > 1 runs that many gateway processes sharing
	// partitions (default 6 then) by lease.
	instances  int
	partitions int
	// fair runs the gateway with consumer.fair_tenants: a consumer per
	// tenant and partition next to the catch-all.
	fair bool
}

// env is one deployment: dev material from devenv, real nats-server
// node(s), the real agentgw binary, and a client connection for the test.
type env struct {
	t     testing.TB
	dir   string
	opts  envOptions
	mat   *devenv.Material
	nodes []*procs.NATS
	gw    *procs.Gateway   // the first (or only) gateway
	gws   []*procs.Gateway // every gateway instance
	nc    *nats.Conn
	js    jetstream.JetStream
	// recoveries are the in-flight recoveries a test measured.
	recoveries []recovery
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
	// Registered first, so it runs last: once every process has stopped.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway logs, summarised (-keep keeps them whole):\n%s", logDigest(dir))
		}
	})
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
	if o.instances > 1 && o.partitions == 0 {
		e.opts.partitions, o.partitions = 6, 6
	}
	for i := range max(1, o.instances) {
		must(t, e.writeConfig(o, i))
		gw, err := procs.NewGateway(bins.Agentgw, e.configPath(i), filepath.Join(dir, fmt.Sprintf("logs-%d", i)))
		must(t, err)
		t.Cleanup(gw.Close)
		e.gws = append(e.gws, gw)
	}
	e.gw = e.gws[0]

	e.nc, err = e.connect("agentgw-faults-check")
	must(t, err)
	t.Cleanup(e.nc.Close)
	e.js, err = jetstream.New(e.nc)
	must(t, err)
	return e
}

func (e *env) configPath(i int) string {
	if i == 0 {
		return filepath.Join(e.dir, "gateway.yaml")
	}
	return filepath.Join(e.dir, fmt.Sprintf("gateway-%d.yaml", i))
}

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
//
// Instance i of a scaled-out run gets its own data dir and instance name.
func (e *env) writeConfig(o envOptions, i int) error {
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
	// Decision tokens die within the duplicate window, as the gateway
	// requires: the default 5m, or less under a short test window.
	decisionTTL := min(5*time.Minute, o.dupWindow-o.skew)
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
  decision_ttl: %s
streams:
  replicas: %d
  max_msgs_per_output: %d
  duplicate_window: %s
consumer:
  ack_wait: %s
  batch: %d
  fetch_wait: %s
  fair_tenants: %v
reload_interval: 0s
`, devenv.Audience, filepath.Join(e.dir, fmt.Sprintf("gwdata-%d", i)), e.url(), m.Signing, m.GatewayXK, devenv.Tenant, issuerPub,
		m.Revocation, filepath.Join(m.Dir, "catalog.yaml"),
		filepath.Join(m.Dir, "policies", "base.cedar"), filepath.Join(m.Dir, "policies", "refunds.cedar"),
		o.skew, o.maxTTL, o.approvalTTL, decisionTTL, replicas, o.maxMsgsPerOutput, o.dupWindow, o.ackWait, o.batch, o.fetchWait, o.fair)
	if o.instances > 1 {
		// Short leases so a killed instance's partitions move within
		// the test's patience; renew and margin keep their proportions.
		cfg += fmt.Sprintf(`scale_out:
  instance: gw%d
  lease_ttl: 3s
  lease_renew: 1s
  lease_margin: 600ms
`, i)
		cfg = strings.Replace(cfg, "consumer:\n", fmt.Sprintf("consumer:\n  partitions: %d\n", o.partitions), 1)
	}
	if err := os.WriteFile(e.configPath(i), []byte(cfg), 0o600); err != nil {
		return err
	}
	// The binary decodes it; decode it here too so a typo fails with a
	// clear message rather than a gateway that never starts.
	_, err = gateway.LoadConfig(e.configPath(i))
	return err
}

// startGateway starts every gateway instance and waits until each runs.
func (e *env) startGateway() {
	e.t.Helper()
	for _, gw := range e.gws {
		must(e.t, gw.StartRetry(60*time.Second))
	}
}

// logs are the log files of every incarnation of every instance.
func (e *env) logs() []string {
	var out []string
	for _, gw := range e.gws {
		out = append(out, gw.Logs()...)
	}
	return out
}

// consumerInfo sums the gateway's ingress consumers: the partitions'
// consumers and, with fair_tenants, every tenant's. A consumer with
// nothing pending and nothing unacknowledged does not hold the ack floor
// back. Delivered counts the tenant consumers only when there are any
// (the catch-all then sees every message once more, only to ack it).
func (e *env) consumerInfo(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	st, err := e.js.Stream(ctx, gateway.StreamIngress)
	if err != nil {
		return nil, err
	}
	var infos []*jetstream.ConsumerInfo
	lister := st.ListConsumers(ctx)
	for info := range lister.Info() {
		infos = append(infos, info)
	}
	if err := lister.Err(); err != nil {
		return nil, err
	}
	if len(infos) == 0 {
		return nil, fmt.Errorf("no ingress consumers")
	}
	tenantOnes := false
	for _, info := range infos {
		tenantOnes = tenantOnes || strings.Contains(info.Name, "-t-")
	}
	var sum jetstream.ConsumerInfo
	busy := false
	for _, info := range infos {
		sum.NumPending += info.NumPending
		sum.NumAckPending += info.NumAckPending
		sum.NumRedelivered += info.NumRedelivered
		if !tenantOnes || strings.Contains(info.Name, "-t-") {
			sum.Delivered.Consumer += info.Delivered.Consumer
		}
		sum.Delivered.Stream = max(sum.Delivered.Stream, info.Delivered.Stream)
		if info.NumPending > 0 || info.NumAckPending > 0 {
			if !busy || info.AckFloor.Stream < sum.AckFloor.Stream {
				sum.AckFloor.Stream = info.AckFloor.Stream
			}
			busy = true
		} else if !busy {
			sum.AckFloor.Stream = max(sum.AckFloor.Stream, info.AckFloor.Stream)
		}
	}
	return &sum, nil
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
