package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
)

// TestSysUserMonitorsOnly: the system account's user, as deploy init
// issues it (sys/tls/), may ask the servers' monitoring endpoints and
// nothing more. Unrestricted, it could purge every stream of AGENTGW
// ($JS.API.ACCOUNT.PURGE.<account> is an API of the system account),
// kick the gateway's connection or reload the servers.
func TestSysUserMonitorsOnly(t *testing.T) {
	d := newDeployment(t, nil)
	admin, _ := d.connectCert(t, d.pki.admin)
	ajs, err := jetstream.New(admin)
	must(t, err)
	ctx := context.Background()
	must(t, gateway.EnsureStreams(ctx, ajs, gateway.DefaultConfig().Streams, 1))
	streams := func() int {
		n := 0
		for range ajs.StreamNames(ctx).Name() {
			n++
		}
		return n
	}
	before := streams()

	sys, ae := d.connectCert(t, d.pki.ca.client(t, d.dir, "sysadmin-1", "sys"))
	if m, err := sys.Request("$SYS.REQ.SERVER.PING.VARZ", nil, 5*time.Second); err != nil || len(m.Data) == 0 {
		t.Fatalf("monitoring request VARZ = %v; want an answer", err)
	}
	if m, err := sys.Request("$SYS.REQ.SERVER.PING.JSZ", nil, 5*time.Second); err != nil || len(m.Data) == 0 {
		t.Fatalf("monitoring request JSZ = %v; want an answer", err)
	}
	ae.RefusedPublish(t, sys, "$JS.API.ACCOUNT.PURGE.AGENTGW", "$SYS.REQ.SERVER."+d.srv.ID()+".KICK",
		"$SYS.REQ.SERVER."+d.srv.ID()+".RELOAD", "$SYS.REQ.SERVER."+d.srv.ID()+".LDM", "$SYS.REQ.SERVER.PING.PROFILEZ")
	time.Sleep(300 * time.Millisecond) // a purge would have begun by now
	if after := streams(); after != before {
		t.Errorf("AGENTGW streams: %d before the system user's requests, %d after", before, after)
	}
}
