package scaffold_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/gwtest"
	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/internal/scaffold"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.LeakOptions()...)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// written is a deployment written by scaffold.Write, and running.
type written struct {
	dir  string
	d    *scaffold.Deployment
	urls []string
	gw   *gateway.Gateway
}

func (w *written) path(p ...string) string {
	return filepath.Join(append([]string{w.dir}, p...)...)
}

// serverOptions parses a written node config exactly as nats-server
// does and moves only what a test on one machine must: the client port
// (and route port), the store directory and logging.
func serverOptions(t testing.TB, conf string) *server.Options {
	t.Helper()
	o, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("ProcessConfigFile(%s) = %v", conf, err)
	}
	o.Host, o.Port = "127.0.0.1", -1
	o.HTTPHost, o.HTTPPort = "", 0
	o.StoreDir = filepath.Join(t.TempDir(), "jetstream")
	o.NoSigs = true
	return o
}

func startServer(t testing.TB, o *server.Options, wait bool) *server.Server {
	t.Helper()
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatalf("nats-server from %s: %v", o.ConfigFile, err)
	}
	s.SetLoggerV2(&natstest.ServerLog{}, false, false, false)
	go s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if wait && !s.ReadyForConnections(10*time.Second) {
		t.Fatalf("%s not ready", s.Name())
	}
	return s
}

func clientURL(s *server.Server) string {
	return "tls://" + strings.TrimPrefix(strings.TrimPrefix(s.ClientURL(), "nats://"), "tls://")
}

// tlsConfig is a client TLS config from a written identity: dir/tls/ca.pem
// and dir/tls/<name>.pem, <name>-key.pem.
func (w *written) tlsConfig(t testing.TB, dir, name string) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(w.path(dir, "tls", "ca.pem"))
	must(t, err)
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("%s/tls/ca.pem: no certificate", dir)
	}
	kp, err := tls.LoadX509KeyPair(w.path(dir, "tls", name+".pem"), w.path(dir, "tls", name+"-key.pem"))
	must(t, err)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS13}
}

// connectCert connects an identity that logs in by its certificate
// (gateway, admin, operator).
func (w *written) connectCert(t testing.TB, dir, name string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(strings.Join(w.urls, ","), nats.Secure(w.tlsConfig(t, dir, name)), nats.Name(name))
	if err != nil {
		t.Fatalf("connect as %s/%s: %v", dir, name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// tenantUser is a written tenant user, connected by its certificate and
// its nkey with its own inbox prefix.
type tenantUser struct {
	nc    *nats.Conn
	errs  *natstest.AsyncErrs
	tok   identity.Token
	kp    nkeys.KeyPair
	curve nkeys.KeyPair
}

func (w *written) connectUser(t testing.TB, tenant, role string) *tenantUser {
	t.Helper()
	dir := scaffold.TenantDir(tenant)
	tok, kp, err := identity.ReadCreds(w.path(dir, role+".creds"))
	must(t, err)
	curve, err := identity.ReadSeedFile(w.path(dir, role+".xk"))
	must(t, err)
	errs := &natstest.AsyncErrs{}
	nc, err := w.dialUser(t, tenant, role, nats.ErrorHandler(errs.Handler))()
	if err != nil {
		t.Fatalf("connect %s %s: %v", tenant, role, err)
	}
	t.Cleanup(nc.Close)
	return &tenantUser{nc: nc, errs: errs, tok: tok, kp: kp, curve: curve}
}

// dialUser connects a written tenant user as connectUser does, and
// leaves the error and the closing to the caller.
func (w *written) dialUser(t testing.TB, tenant, role string, opts ...nats.Option) natstest.Dial {
	t.Helper()
	dir := scaffold.TenantDir(tenant)
	_, kp, err := identity.ReadCreds(w.path(dir, role+".creds"))
	must(t, err)
	pub, _ := kp.PublicKey()
	tc := w.tlsConfig(t, dir, role)
	return func() (*nats.Conn, error) {
		return nats.Connect(strings.Join(w.urls, ","), append([]nats.Option{
			nats.Secure(tc),
			nats.Nkey(pub, kp.Sign),
			nats.CustomInboxPrefix("_INBOX." + pub),
			nats.Name(tenant + "-" + role),
		}, opts...)...)
	}
}

// startGateway runs the gateway from the written gateway.yaml, only the
// URL moved to where the test servers listen.
func (w *written) startGateway(t *testing.T) {
	t.Helper()
	cfg, err := gateway.LoadConfig(w.path(scaffold.GatewayConfig), func(c *gateway.Config) {
		c.NATS.URL = strings.Join(w.urls, ",")
		c.Consumer.FetchWait = 200 * time.Millisecond
	})
	must(t, err)
	if !cfg.NATS.TLS.Required || cfg.NATS.Creds != "" || cfg.NATS.NKey != "" {
		t.Fatalf("gateway.yaml nats: %+v; want TLS required and the certificate as the only identity", cfg.NATS)
	}
	gw, err := gateway.New(cfg, gateway.WithLogger(zerolog.Nop()))
	must(t, err)
	gwtest.Run(t, gw, "from the written gateway.yaml")
	w.gw = gw
}

// provision creates the written consumers/*.json as the admin, as
// `nats consumer add <STREAM> --config <file>` does.
func (w *written) provision(t testing.TB) {
	t.Helper()
	js, err := jetstream.New(w.connectCert(t, scaffold.AdminDir, "admin-1"))
	must(t, err)
	files, err := filepath.Glob(w.path(scaffold.ConsumersDir, "*.json"))
	must(t, err)
	if len(files) == 0 {
		t.Fatal("no consumers written")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, f := range files {
		stream, durable, _ := strings.Cut(strings.TrimSuffix(filepath.Base(f), ".json"), ".")
		data, err := os.ReadFile(f)
		must(t, err)
		var cc jetstream.ConsumerConfig
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if cc.Durable != durable || cc.FilterSubject == "" || cc.DeliverSubject != "" {
			t.Fatalf("%s: durable %q filter %q deliver %q; want a filtered pull consumer %s", f, cc.Durable, cc.FilterSubject, cc.DeliverSubject, durable)
		}
		if _, err := js.CreateOrUpdateConsumer(ctx, stream, cc); err != nil {
			t.Fatalf("provision %s: %v", f, err)
		}
	}
}

// roundTrip sends a sealed refund as tenant's agent and checks it reaches
// the refunds consumer over mTLS, verified; then sends one the refund
// policy forbids and checks the agent is told it was denied and the
// operator finds it in the denied stream.
func (w *written) roundTrip(t *testing.T, tenant, order string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	au := w.connectUser(t, tenant, "agent")
	cfg := client.DefaultAgentConfig()
	cfg.Credential, cfg.Key, cfg.Curve, cfg.GatewayXKey = au.tok, au.kp, au.curve, w.d.GatewayXKey
	agent, err := client.NewAgent(au.nc, cfg)
	must(t, err)
	wait := client.WaitOptions{TrustedGateways: []string{w.d.GatewayKey}}

	plain := fmt.Appendf(nil, `{"order_id":%q,"amount_cents":1250}`, order)
	_, dec, err := agent.SendAndDecide(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund", Sealed: plain}, wait)
	if err != nil || dec.Target != "refunds.draft_refund" {
		t.Fatalf("SendAndDecide(refund %s) = %+v, %v; want delivered", order, dec, err)
	}
	cu := w.connectUser(t, tenant, "consumer")
	cjs, err := client.TenantJetStream(cu.nc)
	must(t, err)
	cons, err := cjs.Consumer(ctx, client.StreamCapability, client.CapabilityConsumerName(tenant, "refunds.draft_refund"))
	must(t, err)
	m, err := cons.Next(jetstream.FetchMaxWait(30 * time.Second))
	must(t, err)
	box, err := identity.NewBox(cu.curve)
	must(t, err)
	dl, err := client.VerifyDelivery(m.Subject(), m.Headers(), m.Data(), client.VerifyOptions{
		Tenant: tenant, Targets: []string{"refunds.draft_refund"}, TrustedGateways: []string{w.d.GatewayKey},
		Curve: box, Skew: client.DefaultSkew,
	})
	if err != nil || !bytes.Equal(dl.Payload, plain) {
		t.Fatalf("VerifyDelivery = %v, %v; want the payload sent", dl, err)
	}
	must(t, m.DoubleAck(ctx))
	// The refunds tool reads its own target's consumer only.
	for _, other := range []string{"kb.search", "payments.send"} {
		bctx, cancel := context.WithTimeout(ctx, 2*time.Second) // refused: no answer comes
		_, err := cjs.Consumer(bctx, client.StreamCapability, client.CapabilityConsumerName(tenant, other))
		cancel()
		if err == nil {
			t.Errorf("the refunds tool's identity bound %s's consumer", other)
		}
	}

	// Above the refund policy's maximum: denied, told to the agent, kept
	// for the operator.
	big := fmt.Appendf(nil, `{"order_id":%q,"amount_cents":500000}`, order+"x")
	rcpt, _, err := agent.SendAndDecide(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund", Sealed: big}, wait)
	var denied *client.DeniedError
	if !errors.As(err, &denied) {
		t.Fatalf("SendAndDecide(refund over the maximum) = %v; want a denial", err)
	}
	ojs, err := jetstream.NewWithAPIPrefix(w.connectCert(t, scaffold.OperatorDir, "ops-1"), client.OperatorAPIPrefix)
	must(t, err)
	// A direct get may be answered by a replica that has not applied the
	// write yet: read again until it is there.
	for found := false; !found; {
		err = client.ReadRecords(ctx, ojs, client.RecordQuery{Stream: gateway.StreamDenied, Subject: "agentgw.denied." + tenant + ".>"},
			func(m *jetstream.RawStreamMsg) error {
				found = found || m.Header.Get(header.MessageID) == rcpt.MessageID
				return nil
			})
		must(t, err)
		if !found && ctx.Err() != nil {
			t.Fatalf("denied message %s (%s) not in %s as the operator reads it", rcpt.MessageID, denied.Reason, gateway.StreamDenied)
		}
		if !found {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestSingleNode writes a one-node deployment for two tenants, starts
// nats-server from the written config (mTLS, accounts, JetStream) and
// the gateway from the written gateway.yaml, provisions the written
// consumers and passes a message end to end for each tenant.
func TestSingleNode(t *testing.T) {
	dir := t.TempDir()
	d, err := scaffold.Write(scaffold.Options{
		Dir: dir, Tenants: []string{"acme", "globex"}, Hosts: []string{"localhost"}, ServerSANs: []string{"127.0.0.1"},
	})
	must(t, err)
	if d.Cluster || d.Replicas != 1 || !d.NewCA {
		t.Fatalf("Write = cluster %v, replicas %d, new CA %v; want one node, R1, a new CA", d.Cluster, d.Replicas, d.NewCA)
	}
	w := &written{dir: dir, d: d}
	o := serverOptions(t, w.path(scaffold.NodeDir("localhost"), "nats-server.conf"))
	if o.TLSConfig == nil || o.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert || !o.TLSMap || !o.SyncAlways {
		t.Fatal("written server config: want client mTLS with verify_and_map and sync_interval always")
	}
	s := startServer(t, o, true)
	w.urls = []string{clientURL(s)}
	w.startGateway(t)
	w.provision(t)
	w.roundTrip(t, "acme", "ord_acme1")
	w.roundTrip(t, "globex", "ord_globex1")

	// The written accounts keep tenants apart: acme's agent cannot
	// publish into globex's ingress nor read globex's consumers.
	acme := w.connectUser(t, "acme", "agent")
	pub, _ := acme.kp.PublicKey()
	acme.errs.RefusedPublish(t, acme.nc, "agentgw.in.globex."+pub, "agentgw.cap.acme.refunds.draft_refund",
		"agentgw.js.CONSUMER.MSG.NEXT.AGENTGW_CAP.globex~refunds~draft_refund")
	acme.errs.RefusedSubscribe(t, acme.nc, "agentgw.reply.globex.>", "_INBOX.>")

	// mTLS: a client without a certificate from the written CA is
	// refused during the handshake, whatever it authenticates with.
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(w.path(scaffold.CADir, "ca.pem"))
	must(t, err)
	pool.AppendCertsFromPEM(ca)
	if nc, err := nats.Connect(w.urls[0], nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}),
		nats.Nkey(pub, acme.kp.Sign)); err == nil {
		nc.Close()
		t.Fatal("a client without a certificate connected")
	}
}

// TestCluster writes a three-node deployment, runs the three written
// servers (routes over mutual TLS with the written route CA) and the
// gateway at streams.replicas 3, and passes a message end to end. One
// gateway instance: scale_out adds a dozen R3 consumers and buckets,
// which on a loaded two-core machine cost tens of seconds and show
// nothing more about what deploy init writes (TestGatewayLoads loads
// its scale_out config; internal/e2e/transport runs the permissions).
func TestCluster(t *testing.T) {
	dir := t.TempDir()
	hosts := []string{"n1.agentgw.test", "n2.agentgw.test", "n3.agentgw.test"}
	d, err := scaffold.Write(scaffold.Options{
		Dir: dir, Tenants: []string{"acme"}, Hosts: hosts, ServerSANs: []string{"127.0.0.1"},
	})
	must(t, err)
	if !d.Cluster || d.Replicas != 3 {
		t.Fatalf("Write = cluster %v, replicas %d; want a cluster at R3", d.Cluster, d.Replicas)
	}
	w := &written{dir: dir, d: d}
	// Routes need their ports before any node starts.
	ports := natstest.FreePorts(t, len(hosts))
	var nodes []*server.Server
	for i, h := range hosts {
		o := serverOptions(t, w.path(scaffold.NodeDir(h), "nats-server.conf"))
		if o.Cluster.TLSConfig == nil || o.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert || len(o.Routes) != 3 {
			t.Fatalf("%s: routes %v; want three, over verified mutual TLS", h, o.Routes)
		}
		// The written routes name the hosts on the route port; on one
		// machine each node gets its own port on loopback.
		o.Cluster.Host, o.Cluster.Port = "127.0.0.1", ports[i]
		o.Routes = nil
		for _, p := range ports {
			o.Routes = append(o.Routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
		}
		nodes = append(nodes, startServer(t, o, false))
	}
	for _, s := range nodes {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("%s not ready", s.Name())
		}
		w.urls = append(w.urls, clientURL(s))
	}
	waitForPlacement(t, w)
	w.startGateway(t)
	w.provision(t)

	ctx := context.Background()
	js, err := jetstream.New(w.connectCert(t, scaffold.AdminDir, "admin-1"))
	must(t, err)
	for _, sc := range gateway.StreamConfigs(gateway.DefaultConfig().Streams, 1) {
		st, err := js.Stream(ctx, sc.Name)
		must(t, err)
		info := st.CachedInfo()
		if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Errorf("stream %s: replicas %d; want R3 over the three nodes", sc.Name, info.Config.Replicas)
		}
	}
	w.roundTrip(t, "acme", "ord_cluster1")

	// More replicas than nodes: the server's refusal gets a hint that
	// names streams.replicas, not the connection settings.
	more := gateway.DefaultConfig().Streams
	more.Replicas = 5
	err = gateway.EnsureStreams(ctx, js, more, 1)
	t.Logf("R5 on three nodes: %v", err)
	if hint := gateway.SetupHint(err, "gateway.yaml"); !strings.Contains(hint, "streams.replicas") {
		t.Errorf("EnsureStreams at R5 on three nodes = %v; hint %q, want one naming streams.replicas", err, hint)
	}
}

// waitForPlacement waits until the cluster can place an R3 stream: a
// meta leader is not enough until every peer has reported in.
func waitForPlacement(t testing.TB, w *written) {
	t.Helper()
	js, err := jetstream.New(w.connectCert(t, scaffold.AdminDir, "admin-1"))
	must(t, err)
	deadline := time.Now().Add(45 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PLACEMENT_PROBE", Subjects: []string{"probe.placement"}, Replicas: 3})
		cancel()
		if err == nil {
			must(t, js.DeleteStream(context.Background(), "PLACEMENT_PROBE"))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster cannot place an R3 stream: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
