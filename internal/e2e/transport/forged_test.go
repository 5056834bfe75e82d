package transport_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/delivery"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects/reason"
)

// addForger gives a test-only AGENTGW user the one thing no deploy role
// but the gateway has: publish on agentgw.cap.>. It stands for a
// permission mistake, or a compromised publisher.
func addForger(kp nkeys.KeyPair) func(*server.Options) {
	pub, _ := kp.PublicKey()
	return func(o *server.Options) {
		for _, acc := range o.Accounts {
			if acc.Name != "AGENTGW" {
				continue
			}
			o.Nkeys = append(o.Nkeys, &server.NkeyUser{Nkey: pub, Account: acc, Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{"agentgw.cap.>"}},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX." + pub + ".>"}},
			}})
		}
	}
}

// TestForgedCapabilityMessages places forged messages on a capability
// subject and checks that the consumer SDK rejects each with its typed
// reason, while the genuine delivery next to them verifies.
func TestForgedCapabilityMessages(t *testing.T) {
	forger, _ := identity.NewAgent()
	d := newDeployment(t, addForger(forger))
	d.startGateway(t)
	d.provision(t)
	ctx := context.Background()
	const target = "refunds.draft_refund"
	subject := "agentgw.cap.tenant_a." + target

	// A genuine delivery to copy from.
	agentNC, _ := d.connectUser(t, agent1)
	a1 := d.agent(t, agentNC, d.users[agent1], "refund:draft")
	if _, err := a1.Send(ctx, client.Request{Capability: envelope.ToolCall, Target: target, Sealed: []byte(`{"order_id":"o","amount_cents":5}`)}); err != nil {
		t.Fatal(err)
	}
	admin, _ := d.connectCert(t, d.pki.admin)
	ajs, _ := jetstream.New(admin)
	var genuine *jetstream.RawStreamMsg
	for deadline := time.Now().Add(15 * time.Second); genuine == nil; {
		st, err := ajs.Stream(ctx, gateway.StreamCap)
		must(t, err)
		genuine, _ = st.GetLastMsgForSubject(ctx, subject)
		if genuine == nil && time.Now().After(deadline) {
			t.Fatal("no genuine delivery")
		}
		time.Sleep(20 * time.Millisecond)
	}
	genuineDoc, err := delivery.Parse(genuine.Data, 1<<20)
	must(t, err)
	claims, err := decision.Verify(genuineDoc.Decision, decision.VerifyOptions{
		TrustedGateways: []string{d.gwSigning}, Audience: target, Now: time.Now(),
	})
	must(t, err)

	gwSigner, err := identity.NewSigner(d.gwKey)
	must(t, err)
	otherGW, _ := identity.NewGatewayKey()
	otherSigner, err := identity.NewSigner(otherGW)
	must(t, err)
	token := func(s *identity.Signer, mod func(*decision.Claims)) string {
		c := *claims
		c.ID, c.Act.Via = "", ""
		mod(&c)
		tok, err := decision.Sign(s, c)
		must(t, err)
		return tok.Reveal()
	}
	copyMsg := func() *nats.Msg {
		m := nats.NewMsg(subject)
		m.Data = append([]byte(nil), genuine.Data...)
		for k, v := range genuine.Header {
			if k != header.MsgID && k != "Nats-Stream" && k != "Nats-Sequence" && k != "Nats-Time-Stamp" && k != "Nats-Subject" {
				m.Header[k] = append([]string(nil), v...)
			}
		}
		return m
	}
	// withDoc rewrites the delivery in a copied message's body.
	withDoc := func(mod func(*delivery.Doc)) func(*nats.Msg) {
		return func(m *nats.Msg) {
			d := genuineDoc
			mod(&d)
			var err error
			m.Data, err = d.Append(nil)
			must(t, err)
		}
	}
	forgeries := []struct {
		name string
		want reason.Code
		edit func(*nats.Msg)
	}{
		// The agent's envelope alone, as a forger with publish rights
		// would send it.
		{"forged/no-token", reason.DecisionMissing, func(m *nats.Msg) { m.Data = append([]byte(nil), genuineDoc.Envelope...) }},
		{"forged/untrusted-signer", reason.DecisionInvalid, withDoc(func(d *delivery.Doc) {
			d.Decision = token(otherSigner, func(*decision.Claims) {})
		})},
		{"forged/expired", reason.DecisionExpired, withDoc(func(d *delivery.Doc) {
			d.Decision = token(gwSigner, func(c *decision.Claims) {
				c.IssuedAt, c.Expires = time.Now().Add(-time.Hour), time.Now().Add(-50*time.Minute)
			})
		})},
		{"forged/other-audience", reason.DecisionAudience, withDoc(func(d *delivery.Doc) {
			d.Decision = token(gwSigner, func(c *decision.Claims) { c.Audience = "kb.search" })
		})},
		{"forged/other-bytes", reason.DecisionBinding, withDoc(func(d *delivery.Doc) {
			d.Envelope = append([]byte("{ "), d.Envelope[1:]...)
		})},
	}
	want := map[string]reason.Code{}
	for _, f := range forgeries {
		want[f.name] = f.want
	}
	forgerPub, _ := forger.PublicKey()
	fnc, err := nats.Connect(d.url, nats.Secure(d.pki.ca.tlsConfig(t, &d.pki.tenantCert)),
		nats.Nkey(forgerPub, forger.Sign), nats.CustomInboxPrefix("_INBOX."+forgerPub))
	must(t, err)
	t.Cleanup(fnc.Close)
	fjs, _ := jetstream.New(fnc)
	for _, f := range forgeries {
		m := copyMsg()
		f.edit(m)
		m.Header.Set("Forgery", f.name)
		if _, err := fjs.PublishMsg(ctx, m); err != nil {
			t.Fatalf("%s: the forger (given agentgw.cap.> on purpose) could not publish: %v", f.name, err)
		}
	}

	// The restricted tenant consumer: VerifyDelivery on each message, in
	// stream order (the genuine one first).
	t.Run("VerifyDelivery", func(t *testing.T) {
		nc, _ := d.connectUser(t, refundsConsumr)
		c, err := tenantJS(t, nc).Consumer(ctx, gateway.StreamCap, durableRefunds)
		must(t, err)
		opt := d.verifyOptions(d.users[refundsConsumr], target)
		seen := map[string]bool{}
		for i := 0; i <= len(forgeries); i++ {
			m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			_, err = client.VerifyDelivery(m.Subject(), m.Headers(), m.Data(), opt)
			name := m.Headers().Get("Forgery")
			seen[name] = true
			if name == "" && err != nil {
				t.Errorf("VerifyDelivery(genuine) = %v; want nil", err)
			}
			if name != "" && !errors.Is(err, want[name]) {
				t.Errorf("VerifyDelivery(%s) = %v; want %v", name, err, want[name])
			}
			must(t, m.Term())
		}
		if len(seen) != len(forgeries)+1 {
			t.Errorf("saw %v; want the genuine message and every forgery", seen)
		}
	})

	// client.Consumer (given a connection allowed to create its consumer)
	// hands its handler the genuine message only and reports each forgery
	// with its reason.
	t.Run("Consumer", func(t *testing.T) {
		var (
			mu        sync.Mutex
			rejected  []string
			delivered []string
		)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		settle := func() {
			if len(rejected)+len(delivered) == len(forgeries)+1 {
				cancel()
			}
		}
		c, err := client.NewConsumer(ajs, client.ConsumerConfig{
			Tenant: "tenant_a", Targets: []string{target}, TrustedGateways: []string{d.gwSigning},
			Curve: d.users[refundsConsumr].curve, Skew: client.DefaultSkew, Durable: "forgery-check",
			OnReject: func(_ string, err error) {
				mu.Lock()
				defer mu.Unlock()
				rejected = append(rejected, string(reason.Of(err)))
				settle()
			},
		})
		must(t, err)
		done := make(chan error, 1)
		go func() {
			done <- c.Consume(cctx, func(_ context.Context, dl *client.Delivery) error {
				mu.Lock()
				defer mu.Unlock()
				delivered = append(delivered, dl.Envelope.MessageID)
				settle()
				return nil
			})
		}()
		select {
		case err := <-done:
			must(t, err)
		case <-time.After(20 * time.Second):
			t.Fatal("consumer did not settle every message")
		}
		mu.Lock()
		defer mu.Unlock()
		var wantCodes []string
		for _, f := range forgeries {
			wantCodes = append(wantCodes, string(f.want))
		}
		slices.Sort(wantCodes)
		slices.Sort(rejected)
		if !slices.Equal(rejected, wantCodes) {
			t.Errorf("client.Consumer rejected %v; want %v", rejected, wantCodes)
		}
		if len(delivered) != 1 || delivered[0] != genuine.Header.Get(header.MessageID) {
			t.Errorf("handler saw %v; want only the genuine message", delivered)
		}
	})
}
