package devenv_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/internal/devenv"
)

// TestEnsureGivesEveryPairItsConsumer: targets that differ only where a
// dot meets an underscore (refunds.issue, refunds_issue), and tenants
// whose name and target meet at a hyphen (tenant_a with kb-search,
// tenant_a-kb with search), each get a pre-created consumer of their own,
// filtered on their own subject, and a tenant's consumer user cannot bind
// the other tenant's. Two pairs on one name would be one durable, whose
// filter the last provisioned sets and whose exports both tenants hold.
func TestEnsureGivesEveryPairItsConsumer(t *testing.T) {
	const other = "tenant_a-kb"
	dir := t.TempDir()
	m, _, err := devenv.Ensure(dir)
	must(t, err)
	conf, err := os.ReadFile(m.Config)
	must(t, err)
	must(t, os.WriteFile(m.Config, []byte(strings.Replace(string(conf), "\ntenants:\n", "\ntenants:\n  "+other+": {}\n", 1)), 0o600))
	target := func(name, tenant string) string {
		return "  - name: " + name + "\n    kind: read\n    scope: kb:read\n    tenants: [" + tenant + "]\n    plain: true\n"
	}
	cat, err := os.ReadFile(m.Catalog)
	must(t, err)
	cat = append(cat, target("refunds.issue", devenv.Tenant)+target("refunds_issue", devenv.Tenant)+
		target("kb-search", devenv.Tenant)+target("search", other)...)
	must(t, os.WriteFile(m.Catalog, cat, 0o600))
	m, _, err = devenv.Ensure(dir)
	must(t, err)

	pairs := [][2]string{{devenv.Tenant, "refunds.issue"}, {devenv.Tenant, "refunds_issue"}, {devenv.Tenant, "kb-search"}, {other, "search"}}
	names := map[string]devenv.Consumer{}
	for _, c := range m.Consumers {
		if prev, dup := names[c.Stream+" "+c.Name]; dup {
			t.Errorf("consumer %s on %s planned for %s %s and %s %s", c.Name, c.Stream, prev.Tenant, prev.Target, c.Tenant, c.Target)
		}
		names[c.Stream+" "+c.Name] = c
	}
	for _, p := range pairs {
		if c, ok := names[client.StreamCapability+" "+client.CapabilityConsumerName(p[0], p[1])]; !ok || c.Tenant != p[0] || c.Target != p[1] {
			t.Errorf("consumer %s is %+v; want tenant %s's consumer of %s", client.CapabilityConsumerName(p[0], p[1]), c, p[0], p[1])
		}
	}

	srv, err := devenv.StartServer(m.NATSConf, filepath.Join(dir, "jetstream"), -1)
	must(t, err)
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	d := &devServer{m: m, url: srv.ClientURL(), log: &serverLog{}}
	_, admin := d.connect(t, m.AdminNATS, "agentgw-admin")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for stream, subject := range map[string]string{client.StreamCapability: "agentgw.cap.>", client.StreamApproval: "agentgw.approval.>"} {
		_, err := admin.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{subject}})
		must(t, err)
	}
	must(t, devenv.Provision(ctx, admin, m))
	for _, p := range pairs {
		c, err := admin.Consumer(ctx, client.StreamCapability, client.CapabilityConsumerName(p[0], p[1]))
		must(t, err)
		if got, want := c.CachedInfo().Config.FilterSubject, "agentgw.cap."+p[0]+"."+p[1]; got != want {
			t.Errorf("consumer %s filters %s; want %s", c.CachedInfo().Name, got, want)
		}
	}

	a, ok := m.Tenant(devenv.Tenant)
	if !ok {
		t.Fatalf("no %s in %v", devenv.Tenant, m.Tenants)
	}
	nc, _ := d.connectErrs(t, a.Consumer.Creds, "consumer_a")
	js, err := client.TenantJetStream(nc)
	must(t, err)
	if _, err := js.Consumer(ctx, client.StreamCapability, client.CapabilityConsumerName(devenv.Tenant, "kb-search")); err != nil {
		t.Errorf("%s's consumer binding its own kb-search consumer: %v", devenv.Tenant, err)
	}
	bctx, bcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer bcancel()
	if _, err := js.Consumer(bctx, client.StreamCapability, client.CapabilityConsumerName(other, "search")); err == nil {
		t.Errorf("%s's consumer bound %s's consumer of search", devenv.Tenant, other)
	}
}
