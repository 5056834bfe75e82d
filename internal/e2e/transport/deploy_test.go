package transport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/gwtest"
	"github.com/agentgw/agentgw/internal/natstest"
)

// deployDir is the repository's deploy/ directory: the tests run the
// files operators run, not a copy.
const deployDir = "../../../deploy"

// apiPrefix is the JetStream API prefix tenant accounts import under.
const apiPrefix = "agentgw.js"

const audience = "agentgw-transport-test"

// Pre-created consumers named in deploy/accounts.conf.
const (
	durableRefunds   = "tenant_a~refunds~draft_refund"
	durableKB        = "tenant_a~kb~search"
	durableApprovals = "tenant_a-approvals"
)

// Tenant identities: each replaces the <NAME> placeholder of
// deploy/accounts.conf with its public key.
const (
	agent1         = "TENANT_A_AGENT_1"
	agent2         = "TENANT_A_AGENT_2"
	approver1      = "TENANT_A_APPROVER_1"
	refundsConsumr = "TENANT_A_REFUNDS_CONSUMER"
	kbConsumer     = "TENANT_A_KB_CONSUMER"
	agentB1        = "TENANT_B_AGENT_1"
)

var identities = []string{agent1, agent2, approver1, refundsConsumr, kbConsumer, agentB1}

// user is a tenant identity: its nkey is both its NATS user and the
// agentgw key its credential names.
type user struct {
	name   string
	tenant string
	kp     nkeys.KeyPair
	pub    string
	curve  nkeys.KeyPair
	xkey   string
	box    *identity.Box
}

// pki is every certificate the deployment uses.
type pki struct {
	ca, other                *ca
	server                   pair
	gateway, operator, admin pair // mapped to AGENTGW users
	tenantCert               pair // any client of the CA; tenant users authenticate by nkey
	unmapped                 pair // from the CA, names no user
	foreign                  pair // from another CA, same subject as gateway
}

// deployment is a nats-server started from the root nats-server.conf and
// deploy/accounts.conf with test keys and certificates substituted.
type deployment struct {
	dir   string
	pki   pki
	users map[string]*user
	srv   *server.Server
	log   *serverLog
	url   string

	// gateway material
	issuerA, issuerB nkeys.KeyPair
	gwSigning        string
	gwKey            nkeys.KeyPair // the gateway's signing key, for forgeries made with it
	gwCurve          string
	gw               *gateway.Gateway
}

func newPKI(t testing.TB, dir string) pki {
	var p pki
	p.ca = newCA(t, dir, "ca")
	p.other = newCA(t, dir, "other-ca")
	p.server = p.ca.server(t, dir, "server")
	p.gateway = p.ca.client(t, dir, "agentgw-gateway", "gateway")
	p.operator = p.ca.client(t, dir, "ops-1", "operator")
	p.admin = p.ca.client(t, dir, "admin-1", "admin")
	p.tenantCert = p.ca.client(t, dir, "tenant-client", "agent")
	p.unmapped = p.ca.client(t, dir, "nobody", "agent")
	// Same subject as the gateway's, but from another CA.
	p.foreign = p.other.client(t, filepath.Join(dir, "foreign"), "agentgw-gateway", "gateway")
	return p
}

func newUsers(t testing.TB) map[string]*user {
	users := map[string]*user{}
	for _, n := range identities {
		kp, err := identity.NewAgent()
		must(t, err)
		pub, _ := kp.PublicKey()
		ck, err := identity.NewCurve()
		must(t, err)
		xk, _ := ck.PublicKey()
		box, err := identity.NewBox(ck)
		must(t, err)
		tenant := "tenant_a"
		if strings.HasPrefix(n, "TENANT_B") {
			tenant = "tenant_b"
		}
		users[n] = &user{name: n, tenant: tenant, kp: kp, pub: pub, curve: ck, xkey: xk, box: box}
	}
	return users
}

// render copies a deploy file with keys substituted, /etc/nats/tls/
// moved to tlsDir and each extra old string replaced by its new one.
func (d *deployment) render(t testing.TB, src, dst, tlsDir string, extra map[string]string) {
	t.Helper()
	data, err := os.ReadFile(src)
	must(t, err)
	s := string(data)
	for n, u := range d.users {
		s = strings.ReplaceAll(s, "<"+n+">", u.pub)
	}
	s = strings.ReplaceAll(s, "/etc/nats/tls/", tlsDir+"/")
	for k, v := range extra {
		s = strings.ReplaceAll(s, k, v)
	}
	if strings.Contains(s, "<TENANT_") {
		t.Fatalf("%s: a <TENANT_…> placeholder is left after rendering", src)
	}
	must(t, os.MkdirAll(filepath.Dir(dst), 0o700))
	must(t, os.WriteFile(dst, []byte(s), 0o600))
}

// serverOptions parses a rendered config exactly as nats-server would
// and moves only what a test must: ports, store dir, logging.
func serverOptions(t testing.TB, conf string) *server.Options {
	t.Helper()
	o, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("ProcessConfigFile(%s) = %v", conf, err)
	}
	o.Host, o.Port = "127.0.0.1", -1
	o.HTTPHost, o.HTTPPort = "", 0
	o.StoreDir = filepath.Join(t.TempDir(), "jetstream")
	o.NoLog, o.NoSigs = true, true
	return o
}

// newMaterial makes the keys and certificates of a deployment.
func newMaterial(t testing.TB) *deployment {
	d := &deployment{dir: t.TempDir(), users: newUsers(t)}
	d.pki = newPKI(t, d.dir)
	return d
}

// newDeployment starts the single-node deploy configuration. configure
// may add to the parsed options (a test-only user).
func newDeployment(t *testing.T, configure func(*server.Options)) *deployment {
	t.Helper()
	d := newMaterial(t)
	// nats-server.conf (the repository root's single node) names ca.pem
	// and server.pem, and includes deploy/accounts.conf.
	etc := filepath.Join(d.dir, "etc")
	d.render(t, filepath.Join(deployDir, "accounts.conf"), filepath.Join(etc, "deploy", "accounts.conf"), d.dir, nil)
	d.render(t, filepath.Join(deployDir, "..", "nats-server.conf"), filepath.Join(etc, "nats-server.conf"), d.dir, nil)
	opts := serverOptions(t, filepath.Join(etc, "nats-server.conf"))
	if configure != nil {
		configure(opts)
	}
	d.log = &serverLog{}
	d.srv = startServer(t, opts, d.log)
	// A TLS server already reports tls://; say it explicitly anyway.
	d.url = "tls://" + strings.TrimPrefix(strings.TrimPrefix(d.srv.ClientURL(), "nats://"), "tls://")
	return d
}

// startServer runs an embedded nats-server with options parsed from a
// deploy file, logging errors and warnings to log.
func startServer(t testing.TB, opts *server.Options, log *serverLog) *server.Server {
	t.Helper()
	opts.NoLog = false
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server from the deploy config: %v", err)
	}
	s.SetLoggerV2(log, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Shared with the other permission tests: internal/natstest.
type (
	serverLog = natstest.ServerLog
	asyncErrs = natstest.AsyncErrs
)

// connectUser connects a tenant user: mTLS with a client certificate of
// the CA, nkey authentication, inbox prefix _INBOX.<key>.
func (d *deployment) connectUser(t testing.TB, name string) (*nats.Conn, *asyncErrs) {
	t.Helper()
	ae := &asyncErrs{}
	nc, err := d.dialUser(t, name, nats.ErrorHandler(ae.Handler))()
	if err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	return nc, ae
}

// dialUser connects a tenant user as connectUser does, and leaves the
// error and the closing to the caller.
func (d *deployment) dialUser(t testing.TB, name string, opts ...nats.Option) natstest.Dial {
	t.Helper()
	u := d.users[name]
	tc := d.pki.ca.tlsConfig(t, &d.pki.tenantCert)
	return func() (*nats.Conn, error) {
		return nats.Connect(d.url, append([]nats.Option{
			nats.Secure(tc),
			nats.Nkey(u.pub, u.kp.Sign),
			nats.CustomInboxPrefix("_INBOX." + u.pub),
			nats.Name(name),
		}, opts...)...)
	}
}

// connectCert connects an AGENTGW identity by its certificate alone.
func (d *deployment) connectCert(t testing.TB, p pair) (*nats.Conn, *asyncErrs) {
	t.Helper()
	ae := &asyncErrs{}
	nc, err := nats.Connect(d.url, nats.Secure(d.pki.ca.tlsConfig(t, &p)), nats.ErrorHandler(ae.Handler))
	if err != nil {
		t.Fatalf("connect with %s: %v", filepath.Base(p.Cert), err)
	}
	t.Cleanup(nc.Close)
	return nc, ae
}

// tenantJS is JetStream through the tenant account's imports.
func tenantJS(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.NewWithAPIPrefix(nc, apiPrefix)
	must(t, err)
	return js
}

const catalogYAML = `
approval_risks: [critical]
targets:
  - name: refunds.draft_refund
    kind: tool_call
    scope: refund:draft
    tenants: [tenant_a]
    risk: medium
    consumer_xkey: %s
    payload_schema: '{"type":"object","required":["order_id","amount_cents"],"properties":{"order_id":{"type":"string"},"amount_cents":{"type":"integer","minimum":1}},"additionalProperties":false}'
    approver_visible: [order_id, amount_cents]
  - name: kb.search
    kind: read
    scope: kb:read
    tenants: [tenant_a, tenant_b]
    plain: true
  - name: payments.send
    kind: tool_call
    scope: pay:send
    tenants: [tenant_a]
    risk: critical
    plain: true
    payload_schema: '{"type":"object","required":["amount_cents"],"properties":{"amount_cents":{"type":"integer","minimum":1}},"additionalProperties":false}'
    approver_visible: [amount_cents]
`

const policyCedar = `
@id("same-tenant")
permit (principal, action, resource) when { principal.tenant == resource.tenant };
`

// gatewayConfig is a gateway config that reaches the deployment the way
// deploy/gateway.yaml does: TLS required, CA pinned, the gateway's
// client certificate as its identity.
func (d *deployment) gatewayConfig(t testing.TB) gateway.Config {
	t.Helper()
	dir := filepath.Join(d.dir, "gateway")
	must(t, os.MkdirAll(dir, 0o700))
	signing, _ := identity.NewGatewayKey()
	curve, _ := identity.NewCurve()
	d.gwSigning, _ = signing.PublicKey()
	d.gwKey = signing
	d.gwCurve, _ = curve.PublicKey()
	writeSeed(t, filepath.Join(dir, "signing.nk"), signing)
	writeSeed(t, filepath.Join(dir, "curve.nk"), curve)
	must(t, os.WriteFile(filepath.Join(dir, "catalog.yaml"), fmt.Appendf(nil, catalogYAML, d.users[refundsConsumr].xkey), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "policy.cedar"), []byte(policyCedar), 0o600))
	d.issuerA, _ = identity.NewIssuer()
	d.issuerB, _ = identity.NewIssuer()
	issA, _ := d.issuerA.PublicKey()
	issB, _ := d.issuerB.PublicKey()

	cfg := gateway.DefaultConfig()
	cfg.Audience = audience
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Catalog = filepath.Join(dir, "catalog.yaml")
	cfg.Policies = []string{filepath.Join(dir, "policy.cedar")}
	cfg.Keys = gateway.KeysConfig{Signing: filepath.Join(dir, "signing.nk"), Curve: filepath.Join(dir, "curve.nk")}
	cfg.Tenants = map[string]gateway.TenantConfig{"tenant_a": {Issuers: []string{issA}}, "tenant_b": {Issuers: []string{issB}}}
	cfg.Consumer.FetchWait = 200 * time.Millisecond
	cfg.Consumer.AckWait = 5 * time.Second
	cfg.ReloadInterval = 0
	cfg.NATS = gateway.NATSConfig{
		URL: d.url,
		TLS: gateway.TLSConfig{CA: d.pki.ca.path, Cert: d.pki.gateway.Cert, Key: d.pki.gateway.Key, Required: true},
	}
	return cfg
}

// startGateway runs the real gateway as the deploy gateway user. It
// dials NATS itself (gateway.Connect): no connection is injected.
func (d *deployment) startGateway(t *testing.T, mods ...func(*gateway.Config)) {
	t.Helper()
	cfg := d.gatewayConfig(t)
	for _, mod := range mods {
		mod(&cfg)
	}
	gw, err := gateway.New(cfg, gateway.WithLogger(zerolog.Nop()))
	must(t, err)
	gwtest.Run(t, gw, "as the deploy gateway user")
	d.gw = gw
}

// provision creates the pull consumers of deploy/consumers/ with the
// admin's certificate, as `nats consumer add <STREAM> --config <file>`
// does (file name: <STREAM>.<durable>.json).
func (d *deployment) provision(t testing.TB) {
	t.Helper()
	nc, _ := d.connectCert(t, d.pki.admin)
	js, err := jetstream.New(nc)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	files, err := filepath.Glob(filepath.Join(deployDir, "consumers", "*.json"))
	must(t, err)
	if len(files) == 0 {
		t.Fatal("no deploy/consumers/*.json")
	}
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
		if cc.Durable != durable || cc.DeliverSubject != "" || cc.FilterSubject == "" {
			t.Fatalf("%s: durable %q, deliver subject %q, filter %q; want a filtered pull consumer named %s", f, cc.Durable, cc.DeliverSubject, cc.FilterSubject, durable)
		}
		if _, err := js.CreateOrUpdateConsumer(ctx, stream, cc); err != nil {
			t.Fatalf("provision %s: %v", f, err)
		}
	}
}

// credential issues a tenant user's agentgw credential.
func (d *deployment) credential(t testing.TB, u *user, scopes ...string) identity.Token {
	t.Helper()
	issuer := d.issuerA
	if u.tenant == "tenant_b" {
		issuer = d.issuerB
	}
	tok, err := identity.Issue(issuer, identity.IssueRequest{
		Subject: u.pub, Audience: audience, Tenant: u.tenant, Service: "transport-test", Name: u.name,
		Scopes: scopes, XKey: u.xkey, TTL: time.Hour,
	}, time.Now())
	must(t, err)
	return tok
}

// agent returns an SDK agent for u publishing through nc.
func (d *deployment) agent(t testing.TB, nc *nats.Conn, u *user, scopes ...string) *client.Agent {
	t.Helper()
	cfg := client.DefaultAgentConfig()
	cfg.Credential = d.credential(t, u, scopes...)
	cfg.Key, cfg.Curve, cfg.GatewayXKey = u.kp, u.curve, d.gwCurve
	a, err := client.NewAgent(nc, cfg)
	must(t, err)
	return a
}

// verifyOptions are a capability consumer's verification settings.
func (d *deployment) verifyOptions(u *user, targets ...string) client.VerifyOptions {
	return client.VerifyOptions{
		Tenant: "tenant_a", Targets: targets, TrustedGateways: []string{d.gwSigning},
		Curve: u.box, Skew: client.DefaultSkew,
	}
}

func writeSeed(t testing.TB, path string, kp nkeys.KeyPair) {
	t.Helper()
	seed, err := kp.Seed()
	must(t, err)
	must(t, os.WriteFile(path, seed, 0o600))
}
