package devenv_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/devenv"
	"github.com/agentgw/agentgw/internal/gwtest"
	"github.com/agentgw/agentgw/internal/natstest"
)

func readSeed(path string) (nkeys.KeyPair, error) { return identity.ReadSeedFile(path) }

// Shared with the other permission tests: internal/natstest.
type (
	serverLog = natstest.ServerLog
	asyncErrs = natstest.AsyncErrs
)

// devServer is what `agentgw run` starts: the server from the rendered
// nats-server.conf, the gateway connected as its own NATS user, and the
// pre-created consumers made by the admin.
type devServer struct {
	m   *devenv.Material
	url string
	log *serverLog
}

func startDev(t *testing.T) *devServer {
	t.Helper()
	dir := t.TempDir()
	m, _, err := devenv.Ensure(dir)
	must(t, err)
	srv, err := devenv.StartServer(m.NATSConf, filepath.Join(dir, "jetstream"), -1)
	must(t, err)
	log := &serverLog{}
	srv.SetLoggerV2(log, false, false, false)
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	d := &devServer{m: m, url: srv.ClientURL(), log: log}

	cfg, err := gateway.LoadConfig(m.Config)
	must(t, err)
	if cfg.NATS.NKey != m.GatewayNATS {
		t.Fatalf("gateway.yaml nats.nkey = %q; want the gateway's NATS user %q", cfg.NATS.NKey, m.GatewayNATS)
	}
	gnc, err := devenv.Connect(d.url, cfg.NATS.NKey, "agentgw-gateway")
	must(t, err)
	t.Cleanup(gnc.Close)
	gw, err := gateway.New(cfg, gateway.WithConn(gnc), gateway.WithLogger(zerolog.Nop()))
	must(t, err)
	gwtest.Run(t, gw, "as its dev NATS user")
	_, ajs := d.connect(t, m.AdminNATS, "agentgw-admin")
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	must(t, devenv.Provision(pctx, ajs, m))
	return d
}

// connect connects as the user of seed with its default inbox prefix;
// the JetStream context is the plain one.
func (d *devServer) connect(t testing.TB, seed, name string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, _ := d.connectErrs(t, seed, name)
	js, err := jetstream.New(nc)
	must(t, err)
	return nc, js
}

func (d *devServer) connectErrs(t testing.TB, seed, name string) (*nats.Conn, *asyncErrs) {
	t.Helper()
	ae := &asyncErrs{}
	nc, err := devenv.Connect(d.url, seed, name, nats.ErrorHandler(ae.Handler))
	must(t, err)
	t.Cleanup(nc.Close)
	return nc, ae
}

func (d *devServer) userKey(t testing.TB, seed string) string {
	t.Helper()
	k, err := client.UserKey(seed)
	must(t, err)
	return k
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// msgs returns the number of messages on stream, read as the admin.
func msgs(t testing.TB, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), stream)
	must(t, err)
	info, err := st.Info(context.Background())
	must(t, err)
	return info.State.Msgs
}

// TestDevServerIsStrict checks that the server `agentgw run` starts
// refuses what the issue lists, and that the gateway's outputs still flow
// to the identities entitled to them.
func TestDevServerIsStrict(t *testing.T) {
	d := startDev(t)
	m := d.m
	ctx := context.Background()
	_, admin := d.connect(t, m.AdminNATS, "admin")

	t.Run("refuse/anonymous-and-unknown", func(t *testing.T) {
		if nc, err := nats.Connect(d.url); err == nil {
			nc.Close()
			t.Error("an anonymous connection was accepted")
		}
		kp, err := nkeys.CreateUser()
		must(t, err)
		pub, _ := kp.PublicKey()
		if nc, err := nats.Connect(d.url, nats.Nkey(pub, kp.Sign)); err == nil {
			nc.Close()
			t.Error("an nkey the config does not name was accepted")
		}
	})

	t.Run("refuse/agent", func(t *testing.T) {
		nc, errs := d.connectErrs(t, m.Agent.Creds, "agent")
		js, err := jetstream.New(nc)
		must(t, err)
		consumerKey := d.userKey(t, m.Consumer.Creds)
		errs.RefusedJetStreamPublish(t, js,
			"agentgw.cap.tenant_a.refunds.draft_refund", // straight to a capability
			"agentgw.in.tenant_a."+consumerKey,          // another identity's ingress
			"$JS.API.STREAM.DELETE.AGENTGW_DENIED",      // stream management
		)
		errs.RefusedPublish(t, nc,
			"agentgw.approval.tenant_a.payments.send",
			"agentgw.denied.tenant_a.bad_signature",
			"agentgw.audit.tenant_a",
			"agentgw.ops.replay",
			"$JS.API.STREAM.PURGE.AGENTGW_IN",
			"$JS.API.CONSUMER.CREATE.AGENTGW_CAP.mine.agentgw.cap.tenant_a.refunds.draft_refund",
			"agentgw.js.CONSUMER.INFO.AGENTGW_CAP.tenant_a~refunds~draft_refund",
		)
		errs.RefusedSubscribe(t, nc, "agentgw.denied.>", "agentgw.cap.>", "agentgw.audit.>", "_INBOX.>")
		// A PubAck aimed at a capability subject through the reply: the
		// service import rewrites the reply, so it returns to the tenant
		// account and nothing reaches AGENTGW_CAP.
		msg := nats.NewMsg("agentgw.in.tenant_a." + d.userKey(t, m.Agent.Creds))
		msg.Reply, msg.Data = "agentgw.cap.tenant_a.refunds.draft_refund", []byte(`{}`)
		must(t, nc.PublishMsg(msg))
		must(t, nc.Flush())
		time.Sleep(300 * time.Millisecond)
		if n := msgs(t, admin, gateway.StreamCap); n != 0 {
			t.Errorf("%s holds %d messages after the agent's attempts; want 0", gateway.StreamCap, n)
		}
	})

	t.Run("allow/outputs-flow", func(t *testing.T) {
		anc, _ := d.connect(t, m.Agent.Creds, "agent")
		cfg := client.DefaultAgentConfig()
		cfg.GatewayXKey = m.GatewayXKey
		agent, err := client.AgentFromCreds(anc, m.Agent.Creds, m.Agent.Curve, cfg)
		must(t, err)
		payload := []byte(`{"order_id":"ord_7","amount_cents":700}`)
		rc, err := agent.Send(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund", Sealed: payload})
		if err != nil {
			t.Fatalf("agent Send on its own ingress subject = %v; want a PubAck through the import", err)
		}
		// The consumer binds its pre-created consumer and verifies.
		cnc, _ := d.connectErrs(t, m.Consumer.Creds, "consumer")
		cjs, err := client.TenantJetStream(cnc)
		must(t, err)
		curve, err := readSeed(m.Consumer.Curve)
		must(t, err)
		ccfg := client.DefaultConsumerConfig()
		ccfg.Tenant, ccfg.Targets, ccfg.Curve, ccfg.TrustedGateways = devenv.Tenant, []string{"refunds.draft_refund"}, curve, []string{m.GatewayKey}
		ccfg.Bind, ccfg.Durable = true, client.CapabilityConsumerName(devenv.Tenant, "refunds.draft_refund")
		cons, err := client.NewConsumer(cjs, ccfg)
		must(t, err)
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		var got *client.Delivery
		if err := cons.Consume(cctx, func(_ context.Context, dl *client.Delivery) error {
			got = dl
			cancel()
			return nil
		}); err != nil {
			t.Fatalf("bound Consume = %v", err)
		}
		if got == nil || got.Envelope.MessageID != rc.MessageID || string(got.Payload) != string(payload) {
			t.Fatalf("consumer got %v; want message %s with the agent's payload", got, rc.MessageID)
		}
		// The operator reads the audit trail (and the denied stream) with
		// direct gets through its account's imports.
		onc, _ := d.connect(t, m.Operator.Creds, "operator")
		ojs, err := jetstream.NewWithAPIPrefix(onc, client.OperatorAPIPrefix)
		must(t, err)
		for _, stream := range []string{gateway.StreamAudit, gateway.StreamDenied} {
			if err := client.ReadRecords(ctx, ojs, client.RecordQuery{Stream: stream}, func(*jetstream.RawStreamMsg) error { return nil }); err != nil {
				t.Errorf("operator read of %s: %v", stream, err)
			}
		}
	})

	t.Run("refuse/other-consumers", func(t *testing.T) {
		// A consumer for a target that is not the dev consumer's.
		_, err := admin.CreateOrUpdateConsumer(ctx, gateway.StreamCap, jetstream.ConsumerConfig{
			Durable: client.CapabilityConsumerName(devenv.Tenant, "other.tool"), FilterSubject: "agentgw.cap.tenant_a.other.tool", AckPolicy: jetstream.AckExplicitPolicy,
		})
		must(t, err)
		cases := []struct {
			who, seed, stream, durable string
		}{
			{"consumer", m.Consumer.Creds, gateway.StreamCap, client.CapabilityConsumerName(devenv.Tenant, "other.tool")},
			{"consumer", m.Consumer.Creds, gateway.StreamApproval, client.ApprovalConsumerName(devenv.Tenant)},
			{"approver", m.Approver.Creds, gateway.StreamCap, client.CapabilityConsumerName(devenv.Tenant, "refunds.draft_refund")},
			{"agent", m.Agent.Creds, gateway.StreamCap, client.CapabilityConsumerName(devenv.Tenant, "refunds.draft_refund")},
		}
		for _, c := range cases {
			nc, errs := d.connectErrs(t, c.seed, c.who)
			js, err := client.TenantJetStream(nc)
			must(t, err)
			pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			if _, err := js.Consumer(pctx, c.stream, c.durable); err == nil {
				t.Errorf("%s bound %s/%s", c.who, c.stream, c.durable)
			}
			cancel()
			errs.Violation(t, "publish", client.TenantAPIPrefix+".CONSUMER.INFO."+c.stream+"."+c.durable)
		}
		// The approver binds its own queue; the consumer creates nothing.
		anc, _ := d.connectErrs(t, m.Approver.Creds, "approver")
		ajs, err := client.TenantJetStream(anc)
		must(t, err)
		if _, err := ajs.Consumer(ctx, gateway.StreamApproval, client.ApprovalConsumerName(devenv.Tenant)); err != nil {
			t.Errorf("approver binding its own queue: %v", err)
		}
		cnc, _ := d.connectErrs(t, m.Consumer.Creds, "consumer")
		cjs, err := client.TenantJetStream(cnc)
		must(t, err)
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		if _, err := cjs.CreateOrUpdateConsumer(pctx, gateway.StreamCap, jetstream.ConsumerConfig{Durable: "wide", FilterSubject: "agentgw.cap.>"}); err == nil {
			t.Error("the consumer created a consumer")
		}
	})

	t.Run("refuse/operator", func(t *testing.T) {
		nc, errs := d.connectErrs(t, m.Operator.Creds, "operator")
		for _, api := range []string{"$JS.API", client.OperatorAPIPrefix} {
			js, err := jetstream.NewWithAPIPrefix(nc, api)
			must(t, err)
			for _, stream := range []string{gateway.StreamCap, gateway.StreamDenied, gateway.StreamAudit} {
				pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				if _, err := js.OrderedConsumer(pctx, stream, jetstream.OrderedConsumerConfig{}); err == nil {
					t.Errorf("the operator created a consumer on %s through %s", stream, api)
				}
				cancel()
			}
		}
		must(t, nc.Publish("agentgw.cap.tenant_a.kb.search", []byte(`{}`)))
		errs.Violation(t, "publish", "agentgw.cap.tenant_a.kb.search")

		// Nothing it may read can be made to land on ingress, capability,
		// approval or reply subjects: no push consumer (its deliver
		// subject is not checked against its creator's permissions), no
		// reply subject in AGENTGW.
		outputs := []string{gateway.StreamIngress, gateway.StreamCap, gateway.StreamApproval, gateway.StreamReply}
		before := map[string]uint64{}
		for _, s := range outputs {
			before[s] = msgs(t, admin, s)
		}
		targets := []string{
			"agentgw.in.tenant_a." + d.userKey(t, m.Consumer.Creds),
			"agentgw.cap.tenant_a.refunds.draft_refund",
			"agentgw.approval.tenant_a.payments.send",
			"agentgw.reply.tenant_a." + d.userKey(t, m.Agent.Creds),
		}
		created := natstest.Republish(t, nc, []string{"$JS.API", client.OperatorAPIPrefix},
			[]string{gateway.StreamDenied, gateway.StreamAudit}, targets, []string{"agentgw.ops.replay"})
		if len(created) > 0 {
			t.Errorf("the operator created consumers: %q; want none", created)
		}
		time.Sleep(500 * time.Millisecond)
		for _, s := range outputs {
			if n := msgs(t, admin, s); n != before[s] {
				t.Errorf("%s went from %d to %d messages while the operator tried to republish; want no change", s, before[s], n)
			}
		}
	})

	// The gateway's own connection never hit a refusal.
	if v := d.log.Violations("agentgw-gateway"); len(v) > 0 {
		t.Errorf("the gateway hit permission violations:\n%s", strings.Join(v, "\n"))
	}
	if v := d.log.Violations("Violation"); len(v) == 0 {
		t.Error("the server logged no permission violation at all: is its log captured?")
	}
}

// TestEnsureUpgradesOpenMaterial: material written when the dev server was
// open (no NATS keys, an open nats-server.conf) gets its NATS users and a
// strict config on the next start, without a new identity for anyone.
func TestEnsureUpgradesOpenMaterial(t *testing.T) {
	dir := t.TempDir()
	m, created, err := devenv.Ensure(dir)
	if err != nil || !created {
		t.Fatalf("Ensure = %v, created %v", err, created)
	}
	agent := m.Agent
	must(t, os.Remove(m.GatewayNATS))
	must(t, os.Remove(m.AdminNATS))
	must(t, os.WriteFile(m.NATSConf, []byte("host: 127.0.0.1\nport: 4222\njetstream {}\n"), 0o600))
	m2, created, err := devenv.Ensure(dir)
	if err != nil || created {
		t.Fatalf("second Ensure = %v, created %v; want the material kept", err, created)
	}
	for _, p := range []string{m2.GatewayNATS, m2.AdminNATS} {
		if _, err := client.UserKey(p); err != nil {
			t.Errorf("NATS user seed %s: %v", p, err)
		}
	}
	conf, err := os.ReadFile(m2.NATSConf)
	must(t, err)
	for _, want := range []string{"accounts {", d(t, m2.GatewayNATS), d(t, agent.Creds), "agentgw.js.CONSUMER.INFO.AGENTGW_CAP.tenant_a~refunds~draft_refund"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("rendered nats-server.conf lacks %q", want)
		}
	}
}

func d(t testing.TB, seed string) string {
	t.Helper()
	k, err := client.UserKey(seed)
	must(t, err)
	return k
}

// TestDevServerIsolatesTenants checks that the dev server's second tenant
// has its own account and users: its agent and tool reach their own
// ingress, replies and consumers, and none of tenant_a's: no publish onto
// tenant_a's ingress, no read of its capability subjects, replies or
// consumers. Nothing of those attempts lands on a stream.
func TestDevServerIsolatesTenants(t *testing.T) {
	d := startDev(t)
	m := d.m
	ctx := context.Background()
	_, admin := d.connect(t, m.AdminNATS, "admin")
	b, ok := m.Tenant(devenv.TenantB)
	if !ok {
		t.Fatalf("dev material has no %s; tenants %v", devenv.TenantB, m.Tenants)
	}
	if a, ok := m.Tenant(devenv.Tenant); !ok || a.Agent != m.Agent {
		t.Fatalf("Tenant(%s) = %+v; want the material's agent %+v", devenv.Tenant, a, m.Agent)
	}
	agentA, agentB := d.userKey(t, m.Agent.Creds), d.userKey(t, b.Agent.Creds)
	refundsA := client.CapabilityConsumerName(devenv.Tenant, "refunds.draft_refund")

	t.Run("refuse/tenant_b-agent", func(t *testing.T) {
		nc, errs := d.connectErrs(t, b.Agent.Creds, "agent_b")
		js, err := jetstream.New(nc)
		must(t, err)
		errs.RefusedJetStreamPublish(t, js,
			"agentgw.in.tenant_a."+agentB, // its own key under tenant_a
			"agentgw.in.tenant_a."+agentA, // tenant_a's agent's ingress
		)
		errs.RefusedPublish(t, nc,
			"agentgw.cap.tenant_a.refunds.draft_refund",
			"agentgw.js.CONSUMER.INFO.AGENTGW_CAP."+refundsA,
			"agentgw.js.CONSUMER.MSG.NEXT.AGENTGW_CAP."+refundsA,
			"agentgw.js.CONSUMER.INFO.AGENTGW_APPROVAL."+client.ApprovalConsumerName(devenv.Tenant),
		)
		errs.RefusedSubscribe(t, nc, "agentgw.cap.tenant_a.>", "agentgw.reply.tenant_a."+agentA, "agentgw.reply.>", "_INBOX."+agentA+".>")
	})

	t.Run("refuse/tenant_b-consumer-and-approver", func(t *testing.T) {
		for _, c := range []struct {
			who, seed, stream, durable string
		}{
			{"consumer_b", b.Consumer.Creds, gateway.StreamCap, refundsA},
			{"consumer_b", b.Consumer.Creds, gateway.StreamCap, client.CapabilityConsumerName(devenv.Tenant, "kb.search")},
			{"approver_b", b.Approver.Creds, gateway.StreamApproval, client.ApprovalConsumerName(devenv.Tenant)},
		} {
			nc, errs := d.connectErrs(t, c.seed, c.who)
			js, err := client.TenantJetStream(nc)
			must(t, err)
			pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			if _, err := js.Consumer(pctx, c.stream, c.durable); err == nil {
				t.Errorf("%s bound tenant_a's %s/%s", c.who, c.stream, c.durable)
			}
			cancel()
			errs.Violation(t, "publish", client.TenantAPIPrefix+".CONSUMER.INFO."+c.stream+"."+c.durable)
			errs.RefusedSubscribe(t, nc, "agentgw.cap.tenant_a.>", "agentgw.approval.tenant_a.>")
		}
	})

	t.Run("refuse/tenant_a-into-tenant_b", func(t *testing.T) {
		nc, errs := d.connectErrs(t, m.Agent.Creds, "agent_a")
		js, err := jetstream.New(nc)
		must(t, err)
		errs.RefusedJetStreamPublish(t, js, "agentgw.in.tenant_b."+agentB, "agentgw.in.tenant_b."+agentA)
		errs.RefusedSubscribe(t, nc, "agentgw.reply.tenant_b."+agentB, "agentgw.cap.tenant_b.>")
	})

	// None of the attempts reached a stream.
	for _, s := range []string{gateway.StreamIngress, gateway.StreamCap, gateway.StreamApproval} {
		if n := msgs(t, admin, s); n != 0 {
			t.Errorf("%s holds %d messages after the cross-tenant attempts; want 0", s, n)
		}
	}

	t.Run("allow/tenant_b-own-traffic", func(t *testing.T) {
		anc, _ := d.connect(t, b.Agent.Creds, "agent_b")
		cfg := client.DefaultAgentConfig()
		cfg.GatewayXKey = m.GatewayXKey
		agent, err := client.AgentFromCreds(anc, b.Agent.Creds, b.Agent.Curve, cfg)
		must(t, err)
		payload := []byte(`{"order_id":"ord_8","region":"eu"}`)
		rc, err := agent.Send(ctx, client.Request{Capability: envelope.ToolCall, Target: "orders.lookup", Sealed: payload})
		if err != nil {
			t.Fatalf("tenant_b agent Send on its own ingress subject = %v; want a PubAck through its import", err)
		}
		cnc, _ := d.connectErrs(t, b.Consumer.Creds, "consumer_b")
		cjs, err := client.TenantJetStream(cnc)
		must(t, err)
		curve, err := readSeed(b.Consumer.Curve)
		must(t, err)
		ccfg := client.DefaultConsumerConfig()
		ccfg.Tenant, ccfg.Targets, ccfg.Curve, ccfg.TrustedGateways = devenv.TenantB, []string{"orders.lookup"}, curve, []string{m.GatewayKey}
		ccfg.Bind, ccfg.Durable = true, client.CapabilityConsumerName(devenv.TenantB, "orders.lookup")
		cons, err := client.NewConsumer(cjs, ccfg)
		must(t, err)
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		var got *client.Delivery
		if err := cons.Consume(cctx, func(_ context.Context, dl *client.Delivery) error {
			got = dl
			cancel()
			return nil
		}); err != nil {
			t.Fatalf("tenant_b bound Consume = %v", err)
		}
		if got == nil || got.Envelope.MessageID != rc.MessageID || string(got.Payload) != string(payload) {
			t.Fatalf("tenant_b consumer got %v; want message %s with its agent's payload", got, rc.MessageID)
		}
		// tenant_b's approver binds its own queue.
		pnc, _ := d.connectErrs(t, b.Approver.Creds, "approver_b")
		pjs, err := client.TenantJetStream(pnc)
		must(t, err)
		if _, err := pjs.Consumer(ctx, gateway.StreamApproval, client.ApprovalConsumerName(devenv.TenantB)); err != nil {
			t.Errorf("tenant_b approver binding its own queue: %v", err)
		}
	})

	if v := d.log.Violations("agentgw-gateway"); len(v) > 0 {
		t.Errorf("the gateway hit permission violations:\n%s", strings.Join(v, "\n"))
	}
}

// TestEnsureAddsTenant: a tenant added to the dev gateway config without
// issuers gets, at the next start, a dev issuer written into the config,
// an agent, approver and consumer in creds/<tenant>/, and an account of
// its own with those users, through which its agent's message reaches the
// gateway and is decided.
func TestEnsureAddsTenant(t *testing.T) {
	dir := t.TempDir()
	m, _, err := devenv.Ensure(dir)
	must(t, err)
	conf, err := os.ReadFile(m.Config)
	must(t, err)
	conf = []byte(strings.Replace(string(conf), "\ntenants:\n", "\ntenants:\n  tenant_c: {}\n  tenant_d:\n    issuers: []\n", 1))
	must(t, os.WriteFile(m.Config, conf, 0o600))
	cat, err := os.ReadFile(m.Catalog)
	must(t, err)
	cat = []byte(strings.Replace(string(cat), "tenants: [tenant_a, tenant_b]", "tenants: [tenant_a, tenant_b, tenant_c]", 1))
	must(t, os.WriteFile(m.Catalog, cat, 0o600))
	if _, created, err := devenv.Ensure(dir); err != nil || created {
		t.Fatalf("Ensure after adding tenant_c = %v, created %v", err, created)
	}
	cfg, err := gateway.LoadConfig(m.Config)
	if err != nil {
		t.Fatalf("gateway.yaml after adding tenant_c: %v", err)
	}
	issuer, err := readSeed(filepath.Join(dir, "keys", "tenant_c-issuer.nk"))
	must(t, err)
	if pub, _ := issuer.PublicKey(); len(cfg.Tenants["tenant_c"].Issuers) != 1 || cfg.Tenants["tenant_c"].Issuers[0] != pub {
		t.Errorf("tenant_c issuers = %v; want its dev issuer %s", cfg.Tenants["tenant_c"].Issuers, pub)
	}
	if len(cfg.Tenants["tenant_d"].Issuers) != 1 || len(cfg.Tenants) != 4 {
		t.Errorf("tenants after Ensure = %v; want tenant_a to tenant_d, tenant_d with its dev issuer", cfg.Tenants)
	}
	agentCreds := filepath.Join(dir, "creds", "tenant_c", "agent.creds")
	agentKey := d(t, agentCreds)
	rendered, err := os.ReadFile(m.NATSConf)
	must(t, err)
	for _, want := range []string{`"TENANT_C" {`, agentKey, d(t, filepath.Join(dir, "creds", "tenant_c", "consumer.creds")),
		"agentgw.js.CONSUMER.INFO.AGENTGW_CAP.tenant_c~kb~search", "agentgw.js.CONSUMER.INFO.AGENTGW_APPROVAL.tenant_c"} {
		if !strings.Contains(string(rendered), want) {
			t.Errorf("rendered nats-server.conf lacks %q", want)
		}
	}

	// The new tenant's agent reaches the gateway through its own account.
	srv, err := devenv.StartServer(m.NATSConf, filepath.Join(dir, "jetstream"), -1)
	must(t, err)
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	gnc, err := devenv.Connect(srv.ClientURL(), cfg.NATS.NKey, "agentgw-gateway")
	must(t, err)
	t.Cleanup(gnc.Close)
	gw, err := gateway.New(cfg, gateway.WithConn(gnc), gateway.WithLogger(zerolog.Nop()))
	must(t, err)
	gwtest.Run(t, gw, "with tenant_c")
	anc, err := devenv.Connect(srv.ClientURL(), agentCreds, "agent_c")
	must(t, err)
	t.Cleanup(anc.Close)
	acfg := client.DefaultAgentConfig()
	acfg.GatewayXKey = m.GatewayXKey
	agent, err := client.AgentFromCreds(anc, agentCreds, filepath.Join(dir, "creds", "tenant_c", "agent.xk"), acfg)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, dec, err := agent.SendAndDecide(ctx, client.Request{Capability: envelope.Read, Target: "kb.search", Plain: map[string]string{"query": "returns"}},
		client.WaitOptions{TrustedGateways: []string{m.GatewayKey}})
	if err != nil || dec.Route != "allow" || dec.Target != "kb.search" {
		t.Fatalf("tenant_c agent's kb.search = %+v, %v; want delivered to kb.search", dec, err)
	}
}

// TestEnsureTenantDirUsers: any further .creds in a tenant's directory is
// a user of its account; a credential of another tenant there is refused,
// never rendered into the wrong account.
func TestEnsureTenantDirUsers(t *testing.T) {
	dir := t.TempDir()
	m, _, err := devenv.Ensure(dir)
	must(t, err)
	b, ok := m.Tenant(devenv.TenantB)
	if !ok {
		t.Fatalf("no %s in %v", devenv.TenantB, m.Tenants)
	}
	write := func(issuerSeed, tenant, path string) string {
		t.Helper()
		issuer, err := readSeed(issuerSeed)
		must(t, err)
		kp, err := nkeys.CreateUser()
		must(t, err)
		pub, _ := kp.PublicKey()
		ck, err := nkeys.CreateCurveKeys()
		must(t, err)
		xk, _ := ck.PublicKey()
		tok, err := identity.Issue(issuer, identity.IssueRequest{Subject: pub, Audience: devenv.Audience, Tenant: tenant,
			Service: "second-agent", Scopes: []string{"kb:read"}, XKey: xk, TTL: time.Hour}, time.Now())
		must(t, err)
		seed, err := kp.Seed()
		must(t, err)
		must(t, identity.WriteCreds(path, tok, identity.Seed(seed)))
		return pub
	}
	second := write(b.Issuer, devenv.TenantB, filepath.Join(b.Dir, "agent2.creds"))
	if _, _, err := devenv.Ensure(dir); err != nil {
		t.Fatalf("Ensure with creds/tenant_b/agent2.creds = %v", err)
	}
	conf, err := os.ReadFile(m.NATSConf)
	must(t, err)
	if !strings.Contains(string(conf), `"agentgw.in.tenant_b.`+second+`"`) {
		t.Errorf("rendered nats-server.conf does not make agent2.creds a tenant_b user")
	}
	// A file name goes into the rendered configuration: one with a line
	// break would add configuration of its own.
	injected := filepath.Join(b.Dir, "x\nauthorization { users: [] }\n.creds")
	write(b.Issuer, devenv.TenantB, injected)
	if _, _, err := devenv.Ensure(dir); err == nil || !strings.Contains(err.Error(), "file name must be") {
		t.Errorf("Ensure with a .creds file name holding line breaks = %v; want it refused", err)
	}
	must(t, os.Remove(injected))
	stray := filepath.Join(b.Dir, "stray.creds")
	write(m.Issuer, devenv.Tenant, stray)
	if _, _, err := devenv.Ensure(dir); err == nil || !strings.Contains(err.Error(), "stray.creds") {
		t.Errorf("Ensure with a tenant_a credential in creds/tenant_b/ = %v; want an error naming the file", err)
	}
}

// TestEnsureRewritesSeedsWithTheirMode: with its gateway.yaml gone,
// Ensure writes the material again; a seed file left world-readable
// (0644) is replaced by one of mode 0600, never rewritten in place with
// its old mode.
func TestEnsureRewritesSeedsWithTheirMode(t *testing.T) {
	dir := t.TempDir()
	m, _, err := devenv.Ensure(dir)
	must(t, err)
	must(t, os.Chmod(m.Issuer, 0o644))
	must(t, os.Remove(m.Config))
	m, created, err := devenv.Ensure(dir)
	if err != nil || !created {
		t.Fatalf("Ensure after gateway.yaml was removed = %v, created %v", err, created)
	}
	fi, err := os.Stat(m.Issuer)
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("issuer seed %s has mode %v; want 0600", m.Issuer, fi.Mode().Perm())
	}
}
