package scaffold_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/internal/scaffold"
)

// TestTenantLimits writes a one-node deployment with small tenant limits
// (deploy init --tenant-max-connections 3 --tenant-max-subscriptions 4),
// starts nats-server from the written config and runs them: acme's
// connection beyond three is refused while globex, the gateway and the
// operator still connect; a connection's subscription beyond four is
// refused; a tenant user is told the 256 KiB payload limit. The default
// values are deploy/accounts.conf's (TestPermissionsMatchDeploy).
func TestTenantLimits(t *testing.T) {
	dir := t.TempDir()
	d, err := scaffold.Write(scaffold.Options{
		Dir: dir, Tenants: []string{"acme", "globex"}, Hosts: []string{"localhost"}, ServerSANs: []string{"127.0.0.1"},
		TenantMaxConnections: 3, TenantMaxSubscriptions: 4,
	})
	must(t, err)
	w := &written{dir: dir, d: d}
	o := serverOptions(t, w.path(scaffold.NodeDir("localhost"), "nats-server.conf"))
	for _, a := range o.Accounts {
		want := -1
		if a.Name == "ACME" || a.Name == "GLOBEX" {
			want = 3
		}
		if got := a.MaxActiveConnections(); got != want {
			t.Errorf("written account %s: max connections %d; want %d", a.Name, got, want)
		}
	}
	w.urls = []string{clientURL(startServer(t, o, true))}

	globex := w.connectUser(t, "globex", "agent")
	pub, _ := globex.kp.PublicKey()
	natstest.PayloadLimit(t, globex.nc, 256<<10, "agentgw.in.globex."+pub)
	globex.errs.SubscriptionLimit(t, globex.nc, 4, "_INBOX."+pub+".limit")

	cert := func(dir, name string) natstest.Dial {
		tc := w.tlsConfig(t, dir, name)
		return func() (*nats.Conn, error) { return nats.Connect(strings.Join(w.urls, ","), nats.Secure(tc)) }
	}
	natstest.AccountConnectionLimit(t, 3, w.dialUser(t, "acme", "agent"),
		w.dialUser(t, "globex", "consumer"), cert(scaffold.GatewayDir, "gateway"), cert(scaffold.OperatorDir, "ops-1"))
}
