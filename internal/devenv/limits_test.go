package devenv_test

import (
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/internal/devenv"
	"github.com/agentgw/agentgw/internal/natstest"
)

// TestDevServerTenantLimits runs the tenant account limits of the server
// `agentgw run` starts, at their values (deploy/accounts.conf's): tenant_a's
// connection beyond 256 is refused while tenant_b, the gateway and the
// operator still connect; a connection's subscription beyond 512 is
// refused; a tenant user is told the 256 KiB payload limit.
func TestDevServerTenantLimits(t *testing.T) {
	dir := t.TempDir()
	m, _, err := devenv.Ensure(dir)
	must(t, err)
	srv, err := devenv.StartServer(m.NATSConf, filepath.Join(dir, "jetstream"), -1)
	must(t, err)
	srv.SetLoggerV2(&serverLog{}, false, false, false)
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	b, ok := m.Tenant(devenv.TenantB)
	if !ok {
		t.Fatalf("dev material has no %s", devenv.TenantB)
	}
	dial := func(seed, name string) natstest.Dial {
		return func() (*nats.Conn, error) { return devenv.Connect(srv.ClientURL(), seed, name) }
	}
	for _, a := range []struct {
		name string
		want int
	}{{"TENANT_A", 256}, {"TENANT_B", 256}, {"AGENTGW", -1}, {"OPS", -1}} {
		acc, err := srv.LookupAccount(a.name)
		must(t, err)
		if got := acc.MaxActiveConnections(); got != a.want {
			t.Errorf("account %s: max connections %d; want %d", a.name, got, a.want)
		}
	}

	d := &devServer{m: m, url: srv.ClientURL()}
	nc, errs := d.connectErrs(t, b.Agent.Creds, "agent_b")
	key := d.userKey(t, b.Agent.Creds)
	natstest.PayloadLimit(t, nc, 256<<10, "agentgw.in."+devenv.TenantB+"."+key)
	errs.SubscriptionLimit(t, nc, 512, "_INBOX."+key+".limit")

	natstest.AccountConnectionLimit(t, 256, dial(m.Agent.Creds, "agent"),
		dial(b.Consumer.Creds, "consumer_b"), dial(m.GatewayNATS, "agentgw-gateway"), dial(m.Operator.Creds, "operator"))
}
