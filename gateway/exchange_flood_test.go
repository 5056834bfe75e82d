package gateway

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/exchange"
	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/subjects"
)

// TestExchangeGarbageAuditBounded: anyone who may publish on the
// exchange subject sends requests that are refused before any token is
// verified. Each is answered, but at most exchange.UnverifiedEventsPerSecond
// of them a second are audited: unbounded, they filled the audit stream
// (kept for streams.max_age), and with a message limit its discard-new
// policy refused every decision's own event, stalling every tenant.
func TestExchangeGarbageAuditBounded(t *testing.T) {
	h := newHarness(t)
	h.cfg.Streams.MaxMsgsPerOutput = 2000
	writeSeed(t, filepath.Join(h.dir, "issuer_a.nk"), h.issuer)
	h.cfg.Exchange = &exchange.Config{
		IssuerSeeds: map[string]string{"tenant_a": filepath.Join(h.dir, "issuer_a.nk")},
		IdPs: []exchange.IdPConfig{{Name: "corp", Issuer: "https://idp.example.com", Audience: "api",
			Tenants: []string{"tenant_a"}, Tenant: "tenant_a",
			Rules: []exchange.Rule{{ID: "all", Claim: "sub", Equals: "x", Scopes: []string{"kb:read"}}}}},
	}
	h.start()
	<-h.gw.Ready()

	attacker := natstest.Connect(t, h.srv)
	start := time.Now()
	// The exchange answers once its service is subscribed.
	for {
		_, err := attacker.Request("agentgw.exchange", []byte("x"), time.Second)
		if !errors.Is(err, nats.ErrNoResponders) {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the exchange never answered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	inbox := attacker.NewInbox()
	sub, err := attacker.SubscribeSync(inbox)
	must(t, err)
	const n = 5000
	for range n {
		m := nats.NewMsg("agentgw.exchange")
		m.Reply, m.Data = inbox, []byte("x")
		must(t, attacker.PublishMsg(m))
	}
	must(t, attacker.Flush())
	for i := range n {
		if _, err := sub.NextMsg(10 * time.Second); err != nil {
			t.Fatalf("%d of %d requests answered: %v", i, n, err)
		}
	}
	seconds := int(time.Since(start)/time.Second) + 2 // the seconds the answers spanned, at most
	unroutable, err := subjects.Audit(subjects.UnroutableTenant)
	must(t, err)
	audited := 0
	for _, m := range h.all(StreamAudit) {
		if m.Subject == unroutable {
			audited++
		}
	}
	if audited == 0 || audited > seconds*exchange.UnverifiedEventsPerSecond {
		t.Errorf("%d refusals of unverified requests audited in at most %d s; want between 1 and %d", audited, seconds, seconds*exchange.UnverifiedEventsPerSecond)
	}
	// The decisions' own events still have room.
	h.outputFor(h.send(h.body(nil)))
	h.stop()
}
