package transport_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/internal/natstest"
)

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	must(t, err)
	must(t, os.WriteFile(dst, data, 0o600))
}

// cluster is deploy/cluster/n1..n3.conf running on loopback.
type cluster struct {
	nodes     []*server.Server
	opts      []*server.Options
	routeCA   *ca
	routePort []int
}

func startCluster(t *testing.T, d *deployment) *cluster {
	t.Helper()
	c := &cluster{routeCA: newCA(t, d.dir, "route-ca")}
	root := filepath.Join(d.dir, "cluster")
	d.render(t, filepath.Join(deployDir, "accounts.conf"), filepath.Join(root, "accounts.conf"), "", nil)
	names := []string{"n1", "n2", "n3"}
	extra := map[string]string{}
	// Routes need their ports before any node starts.
	c.routePort = natstest.FreePorts(t, len(names))
	for i, n := range names {
		extra[n+".agentgw.internal:6222"] = fmt.Sprintf("127.0.0.1:%d", c.routePort[i])
	}
	for i, n := range names {
		dir := filepath.Join(root, n)
		tlsDir := filepath.Join(dir, "tls")
		must(t, os.MkdirAll(tlsDir, 0o700))
		copyFile(t, d.pki.ca.path, filepath.Join(tlsDir, "ca.pem"))
		copyFile(t, c.routeCA.path, filepath.Join(tlsDir, "route-ca.pem"))
		copyFile(t, d.pki.server.Cert, filepath.Join(tlsDir, "server.pem"))
		copyFile(t, d.pki.server.Key, filepath.Join(tlsDir, "server-key.pem"))
		c.routeCA.route(t, tlsDir, "route")
		ex := map[string]string{"0.0.0.0:6222": fmt.Sprintf("127.0.0.1:%d", c.routePort[i])}
		for k, v := range extra {
			ex[k] = v
		}
		conf := filepath.Join(dir, n+".conf")
		d.render(t, filepath.Join(deployDir, "cluster", n+".conf"), conf, tlsDir, ex)
		o := serverOptions(t, conf)
		c.opts = append(c.opts, o)
	}
	log := &serverLog{}
	var urls []string
	for _, o := range c.opts {
		s := startServerNoWait(t, o, log)
		c.nodes = append(c.nodes, s)
	}
	for _, s := range c.nodes {
		if !s.ReadyForConnections(20 * time.Second) {
			t.Fatalf("%s not ready; server log:\n%s", s.Name(), strings.Join(log.Lines(), "\n"))
		}
		urls = append(urls, "tls://"+strings.TrimPrefix(strings.TrimPrefix(s.ClientURL(), "nats://"), "tls://"))
	}
	d.url = strings.Join(urls, ",")
	d.srv, d.log = c.nodes[0], log
	return c
}

// startServerNoWait starts a node without waiting: a clustered
// JetStream node is ready only once its peers are up.
func startServerNoWait(t testing.TB, opts *server.Options, log *serverLog) *server.Server {
	t.Helper()
	opts.NoLog = false
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server from %s: %v", opts.ConfigFile, err)
	}
	s.SetLoggerV2(log, false, false, false)
	go s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// TestCluster runs deploy/cluster: three nodes, routes over mutual TLS
// with their own CA, JetStream syncing every write, and the real gateway
// with streams.replicas: 3. A message still flows after a node is lost.
func TestCluster(t *testing.T) {
	d := newMaterial(t)
	c := startCluster(t, d)
	ctx := context.Background()

	for i, o := range c.opts {
		if !o.SyncAlways {
			t.Errorf("n%d: jetstream sync_interval is not always", i+1)
		}
		if o.Cluster.TLSConfig == nil || o.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
			t.Errorf("n%d: routes do not require a verified certificate", i+1)
		}
	}

	// Wait for a JetStream meta leader.
	admin, _ := d.connectCert(t, d.pki.admin)
	ajs, _ := jetstream.New(admin)
	deadline := time.Now().Add(30 * time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := ajs.AccountInfo(actx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream cluster not ready: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A meta leader is not enough: until every peer has reported in, an
	// R3 stream fails with "no suitable peers for placement". Place one.
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := ajs.CreateStream(actx, jetstream.StreamConfig{Name: "PLACEMENT_PROBE", Subjects: []string{"probe.placement"}, Replicas: 3})
		cancel()
		if err == nil {
			must(t, ajs.DeleteStream(ctx, "PLACEMENT_PROBE"))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream cluster cannot place an R3 stream: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	d.startGateway(t, func(cfg *gateway.Config) { cfg.Streams.Replicas = 3 })
	d.provision(t)
	for _, sc := range gateway.StreamConfigs(gateway.DefaultConfig().Streams, 1) {
		st, err := ajs.Stream(ctx, sc.Name)
		must(t, err)
		info, err := st.Info(ctx)
		must(t, err)
		if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Errorf("stream %s: replicas %d, cluster %+v; want R3 over the three nodes", sc.Name, info.Config.Replicas, info.Cluster)
		}
	}

	agentNC, _ := d.connectUser(t, agent1)
	a1 := d.agent(t, agentNC, d.users[agent1], "refund:draft")
	consNC, _ := d.connectUser(t, refundsConsumr)
	cjs := tenantJS(t, consNC)
	send := func(order string) {
		t.Helper()
		plain := fmt.Appendf(nil, `{"order_id":%q,"amount_cents":100}`, order)
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := a1.Send(sctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund", Sealed: plain}); err != nil {
			t.Fatalf("Send(%s) = %v", order, err)
		}
		m := fetchOne(t, cjs, gateway.StreamCap, durableRefunds)
		dl, err := client.VerifyDelivery(m.Subject(), m.Headers(), m.Data(), d.verifyOptions(d.users[refundsConsumr], "refunds.draft_refund"))
		if err != nil || string(dl.Payload) != string(plain) {
			t.Fatalf("delivery of %s: %v, %v", order, dl, err)
		}
		must(t, m.DoubleAck(ctx))
	}
	send("ord_all_up")

	t.Run("refuse/client-cert-on-route-port", func(t *testing.T) {
		// Present the client certificate even though the server asks for
		// its route CA (Go would otherwise send none): the server refuses
		// it with a TLS alert.
		if err := routeHandshake(t, c.routePort[0], c.routeCA.forcing(t, d.pki.tenantCert)); err == nil || !strings.Contains(err.Error(), "remote error") {
			t.Errorf("route handshake with a client certificate = %v; want the server's TLS refusal", err)
		}
		routeCert := c.routeCA.route(t, t.TempDir(), "route")
		if err := routeHandshake(t, c.routePort[0], c.routeCA.tlsConfig(t, &routeCert)); err != nil {
			t.Errorf("a route certificate was refused: %v", err)
		}
	})

	// Lose a node: R3 keeps a quorum, the pipeline keeps flowing.
	c.nodes[2].Shutdown()
	c.nodes[2].WaitForShutdown()
	send("ord_one_down")
}

// routeHandshake opens a route connection the way a peer does: TLS
// first (routes send nothing before the handshake), presenting cfg's
// certificate. It returns the refusal, or nil once the server accepted
// the certificate and sent its route INFO.
func routeHandshake(t testing.TB, port int, cfg *tls.Config) error {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
	must(t, err)
	defer conn.Close()
	must(t, conn.SetDeadline(time.Now().Add(3*time.Second)))
	cfg.ServerName = "127.0.0.1"
	tc := tls.Client(conn, cfg)
	if err := tc.Handshake(); err != nil {
		return err
	}
	// TLS 1.3: the server checks the client certificate after the
	// client's side of the handshake; a refusal arrives as an alert.
	line, err := bufio.NewReader(tc).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "INFO ") {
		return fmt.Errorf("route port said %.40q", line)
	}
	return nil
}
