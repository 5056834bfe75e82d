package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/internal/procs"
)

// TestClusterLeaderKill runs the gateway on a 3-node cluster with every
// stream at 3 replicas and sync_interval: always, and under load kills
// (SIGKILL) the ingress stream's leader, then the node the gateway is
// connected to, then the capability stream's leader, restarting each.
// Leadership moves, the gateway and the agents fail over to the other
// nodes, and still every ingress message ends in exactly one place.
func TestClusterLeaderKill(t *testing.T) {
	t.Parallel()
	start := time.Now()
	rng := newRand(t)
	e := newEnv(t, envOptions{nodes: 3, syncAlways: true, fair: true})
	e.startGateway()
	l := newLoad(t, e, 80)
	l.start()
	defer l.stop()
	l.waitSent(80, 60*time.Second)
	faults := map[string]int{}
	victims := []struct {
		what string
		find func() (*procs.NATS, error)
	}{
		{"kill9_ingress_leader", func() (*procs.NATS, error) { return e.streamLeader(gateway.StreamIngress) }},
		{"kill9_gateway_server", func() (*procs.NATS, error) { return e.nodeWithClient("agentgw-gateway") }},
		{"kill9_capability_leader", func() (*procs.NATS, error) { return e.streamLeader(gateway.StreamCap) }},
	}
	for _, v := range victims {
		time.Sleep(jitter(rng, 500*time.Millisecond, 2*time.Second))
		n, err := v.find()
		must(t, err)
		t.Logf("%s: %s", v.what, n.Opts.Name)
		must(t, n.Kill())
		faults[v.what]++
		time.Sleep(jitter(rng, time.Second, 3*time.Second))
		must(t, n.StartReady(90*time.Second))
	}
	time.Sleep(2 * time.Second)
	l.stop()
	settle(t, e, 150*time.Second)
	r := check(t, e, l)
	report(t, r, faults, start)
}

// streamLeader returns the node leading a stream.
func (e *env) streamLeader(stream string) (*procs.NATS, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		// One attempt must not use up the whole wait: a request sent to a
		// node that is going away is never answered.
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		s, err := e.js.Stream(actx, stream)
		if err == nil {
			info, err := s.Info(actx)
			if err == nil && info.Cluster != nil {
				for _, n := range e.nodes {
					if n.Opts.Name == info.Cluster.Leader {
						acancel()
						return n, nil
					}
				}
			}
		}
		acancel()
		time.Sleep(200 * time.Millisecond)
	}
	return nil, fmt.Errorf("no leader for %s", stream)
}

// nodeWithClient returns the node a named client is connected to.
func (e *env) nodeWithClient(name string) (*procs.NATS, error) {
	for _, n := range e.nodes {
		if ok, err := n.HasClient(name); err == nil && ok {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no node has a client named %s", name)
}
