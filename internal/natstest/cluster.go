package natstest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/agentgw/agentgw/internal/procs"
)

// StartCluster runs n embedded nats-servers clustered over routes, with
// JetStream, and waits for a JetStream meta leader, so replicated assets
// can be created. The servers stop when the test ends.
func StartCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	ports, err := procs.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	servers := make([]*server.Server, n)
	for i := range n {
		// Each node is ready for clients before the cluster forms.
		servers[i] = Start(t, Options{Configure: func(o *server.Options) {
			o.ServerName = fmt.Sprintf("n%d", i)
			o.Cluster = server.ClusterOpts{Name: "agentgw-test", Host: "127.0.0.1", Port: ports[i]}
			o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		}})
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, s := range servers {
			if s.JetStreamIsLeader() {
				return servers
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("natstest: no JetStream meta leader in the cluster")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreePorts returns n distinct ports for servers that must know their
// ports before they start (procs.FreePorts), or ends the test.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := procs.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}
