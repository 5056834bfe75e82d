package transport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/internal/natstest"
)

// TENANT_LIMITS of deploy/accounts.conf, as shipped.
const (
	tenantMaxConnections   = 256
	tenantMaxSubscriptions = 512
	tenantMaxPayload       = 256 << 10
)

// TestDeployTenantLimits runs the limits deploy/accounts.conf gives every
// tenant account, at their shipped values: a tenant's connections beyond
// max_connections are refused while another tenant, the gateway and an
// operator still connect; a connection's subscriptions beyond
// max_subscriptions are refused; a publish over max_payload never leaves
// the client, while a body of twice the gateway's max_body_bytes still
// reaches the ingress stream and is denied `oversized`.
func TestDeployTenantLimits(t *testing.T) {
	d := newDeployment(t, nil)
	for _, a := range []struct {
		name string
		want int
	}{{"TENANT_A", tenantMaxConnections}, {"TENANT_B", tenantMaxConnections}, {"AGENTGW", -1}, {"OPS", -1}} {
		acc, err := d.srv.LookupAccount(a.name)
		must(t, err)
		if got := acc.MaxActiveConnections(); got != a.want {
			t.Errorf("account %s: max connections %d; want %d", a.name, got, a.want)
		}
	}
	d.startGateway(t)
	b := d.users[agentB1]
	ingress := "agentgw.in.tenant_b." + b.pub

	t.Run("payload", func(t *testing.T) {
		nc, _ := d.connectUser(t, agentB1)
		natstest.PayloadLimit(t, nc, tenantMaxPayload, ingress)
		body := bytes.Repeat([]byte("x"), 2*gateway.DefaultConfig().Limits.MaxBodyBytes)
		m, err := nc.Request(ingress, body, 10*time.Second)
		must(t, err)
		var ack jetstream.PubAck
		if err := json.Unmarshal(m.Data, &ack); err != nil || ack.Stream != gateway.StreamIngress {
			t.Fatalf("a body of twice max_body_bytes: answer %q; want a PubAck of %s", m.Data, gateway.StreamIngress)
		}
		admin, _ := d.connectCert(t, d.pki.admin)
		js, err := jetstream.New(admin)
		must(t, err)
		st, err := js.Stream(context.Background(), gateway.StreamDenied)
		must(t, err)
		deadline := time.Now().Add(15 * time.Second)
		for {
			r, err := st.GetLastMsgForSubject(context.Background(), "agentgw.denied.tenant_b.oversized")
			if err == nil && r.Header.Get(header.IngressSeq) == strconv.FormatUint(ack.Sequence, 10) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no oversized denial for ingress %d: %v", ack.Sequence, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("subscriptions", func(t *testing.T) {
		nc, errs := d.connectUser(t, agentB1)
		errs.SubscriptionLimit(t, nc, tenantMaxSubscriptions, "_INBOX."+b.pub+".limit")
	})

	t.Run("connections", func(t *testing.T) {
		cert := func(p pair) natstest.Dial {
			tc := d.pki.ca.tlsConfig(t, &p)
			return func() (*nats.Conn, error) { return nats.Connect(d.url, nats.Secure(tc)) }
		}
		natstest.AccountConnectionLimit(t, tenantMaxConnections, d.dialUser(t, agent1),
			d.dialUser(t, agentB1), cert(d.pki.gateway), cert(d.pki.operator))
	})
}
