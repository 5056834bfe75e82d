package transport_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
)

// fetchOne binds to a pre-created consumer through the tenant account's
// imports and fetches one message.
func fetchOne(t testing.TB, js jetstream.JetStream, stream, durable string) jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, stream, durable)
	if err != nil {
		t.Fatalf("bind %s/%s: %v", stream, durable, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		b, err := c.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatalf("fetch %s/%s: %v", stream, durable, err)
		}
		for m := range b.Messages() {
			return m
		}
	}
	t.Fatalf("nothing on %s/%s", stream, durable)
	return nil
}

// approvalRoundTrip sends a payment that needs approval from a1, reads
// the request as approver1 from its pre-created queue, grants it with
// the SDK and waits for the held payment on its capability subject.
func (d *deployment) approvalRoundTrip(t *testing.T, ctx context.Context, a1 *client.Agent) {
	t.Helper()
	rcpt, err := a1.Send(ctx, client.Request{Capability: envelope.ToolCall, Target: "payments.send", Plain: map[string]any{"amount_cents": 12500}})
	must(t, err)
	nc, _ := d.connectUser(t, approver1)
	js := tenantJS(t, nc)
	m := fetchOne(t, js, gateway.StreamApproval, durableApprovals)
	var req approval.Request
	must(t, json.Unmarshal(m.Data(), &req))
	if req.HeldMessageID != rcpt.MessageID || req.Tenant != "tenant_a" {
		t.Fatalf("approval request %+v; want the held payment %s", req, rcpt.MessageID)
	}
	must(t, m.DoubleAck(ctx))
	cfg := client.ApproverConfig{AgentConfig: client.DefaultAgentConfig()}
	u := d.users[approver1]
	cfg.Credential = d.credential(t, u, "approve:payments.*")
	cfg.Key, cfg.Curve, cfg.GatewayXKey = u.kp, u.curve, d.gwCurve
	cfg.TrustedGateways = []string{d.gwSigning}
	ap, err := client.NewApprover(nc, js, cfg)
	must(t, err)
	if _, err := ap.Grant(ctx, req, "within limits"); err != nil {
		t.Fatalf("approver Grant on its own ingress subject = %v", err)
	}
	// The gateway releases the held payment to its capability subject.
	admin, _ := d.connectCert(t, d.pki.admin)
	ajs, _ := jetstream.New(admin)
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := ajs.Stream(ctx, gateway.StreamCap)
		must(t, err)
		if raw, err := st.GetLastMsgForSubject(ctx, "agentgw.cap.tenant_a.payments.send"); err == nil {
			if raw.Header.Get(header.MessageID) != rcpt.MessageID {
				t.Fatalf("released message %s; want %s", raw.Header.Get(header.MessageID), rcpt.MessageID)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("granted payment never reached its capability subject")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDeployPermissions runs the real gateway against the deploy
// configuration and checks every role's boundary.
func TestDeployPermissions(t *testing.T) {
	d := newDeployment(t, nil)
	d.startGateway(t)
	d.provision(t)
	ctx := context.Background()

	agentNC, _ := d.connectUser(t, agent1)
	a1 := d.agent(t, agentNC, d.users[agent1], "refund:draft", "kb:read", "pay:send")

	t.Run("allow/agent-to-consumer", func(t *testing.T) {
		plain := []byte(`{"order_id":"ord_1","amount_cents":1200}`)
		rcpt, err := a1.Send(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund", Sealed: plain})
		if err != nil {
			t.Fatalf("agent Send on its own ingress subject = %v; want a PubAck", err)
		}
		if rcpt.Stream != gateway.StreamIngress {
			t.Fatalf("receipt stream = %q; want %q", rcpt.Stream, gateway.StreamIngress)
		}
		nc, _ := d.connectUser(t, refundsConsumr)
		m := fetchOne(t, tenantJS(t, nc), gateway.StreamCap, durableRefunds)
		dl, err := client.VerifyDelivery(m.Subject(), m.Headers(), m.Data(), d.verifyOptions(d.users[refundsConsumr], "refunds.draft_refund"))
		if err != nil {
			t.Fatalf("VerifyDelivery = %v; want a genuine delivery", err)
		}
		if string(dl.Payload) != string(plain) || dl.Agent != d.users[agent1].pub {
			t.Fatalf("delivery = %v from %s; want the agent's payload", dl, dl.Agent)
		}
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatalf("ack through the import: %v", err)
		}
	})

	t.Run("refuse/agent", func(t *testing.T) {
		nc, errs := d.connectUser(t, agent2)
		js, err := jetstream.New(nc)
		must(t, err)
		other := "agentgw.in.tenant_a." + d.users[agent1].pub
		// A JetStream publish gets no acknowledgement: the server drops it.
		errs.RefusedJetStreamPublish(t, js,
			"agentgw.cap.tenant_a.refunds.draft_refund", // straight to a capability
			other,                              // another agent's ingress
			"$JS.API.STREAM.DELETE.AGENTGW_IN", // stream management
		)
		errs.RefusedPublish(t, nc,
			"agentgw.approval.tenant_a.payments.send",
			"agentgw.denied.tenant_a.bad_signature",
			"agentgw.audit.tenant_a",
			"agentgw.reply.tenant_a."+d.users[agent1].pub,
			"agentgw.in.tenant_b."+d.users[agentB1].pub, // another tenant's ingress
			"$JS.API.STREAM.PURGE.AGENTGW_IN",
			"$JS.API.CONSUMER.CREATE.AGENTGW_CAP.mine.agentgw.cap.tenant_a.refunds.draft_refund",
			"agentgw.ops.replay",
		)
		// A plain publish to another agent's ingress never reaches the stream.
		must(t, nc.Publish(other, []byte("forged")))
		errs.RefusedSubscribe(t, nc, "agentgw.denied.>", "agentgw.cap.>", "agentgw.audit.*", "_INBOX.>", "agentgw.reply.tenant_a."+d.users[agent1].pub)
	})

	t.Run("refuse/consumer-other-target", func(t *testing.T) {
		nc, errs := d.connectUser(t, refundsConsumr)
		js := tenantJS(t, nc)
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		if _, err := js.Consumer(pctx, gateway.StreamCap, durableKB); err == nil {
			t.Errorf("refunds consumer bound to %s", durableKB)
		}
		errs.Violation(t, "publish", apiPrefix+".CONSUMER.INFO.AGENTGW_CAP."+durableKB)
		// Creating its own consumer (any filter, pull or push) is refused:
		// only the admin provisions consumers.
		for _, cc := range []jetstream.ConsumerConfig{
			{Durable: durableRefunds, FilterSubject: "agentgw.cap.tenant_a.refunds.draft_refund"},
			{Durable: "wide", FilterSubject: "agentgw.cap.>"},
			{Durable: durableRefunds, FilterSubject: "agentgw.cap.tenant_a.refunds.draft_refund", DeliverSubject: "agentgw.audit.tenant_a"},
		} {
			cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			if _, err := js.CreateOrUpdateConsumer(cctx, gateway.StreamCap, cc); err == nil {
				t.Errorf("consumer user created %+v", cc)
			}
			cancel()
		}
		errs.Violation(t, "publish", apiPrefix+".CONSUMER.CREATE.AGENTGW_CAP."+durableRefunds+".agentgw.cap.tenant_a.refunds.draft_refund")
		// client.Consumer creates its consumer (CreateOrUpdateConsumer):
		// under the deploy permissions it cannot start.
		c, err := client.NewConsumer(js, client.ConsumerConfig{
			Tenant: "tenant_a", Targets: []string{"refunds.draft_refund"}, TrustedGateways: []string{d.gwSigning},
			Curve: d.users[refundsConsumr].curve, Durable: durableRefunds,
		})
		must(t, err)
		cctx, cancel2 := context.WithTimeout(ctx, time.Second)
		defer cancel2()
		if err := c.Consume(cctx, func(context.Context, *client.Delivery) error { return nil }); !errors.Is(err, client.ErrStream) {
			t.Errorf("client.Consumer.Consume under deploy permissions = %v; want %v (it must bind, not create)", err, client.ErrStream)
		}
		for _, subj := range []string{"agentgw.cap.tenant_a.kb.search", "agentgw.cap.>"} {
			_, err := nc.SubscribeSync(subj)
			must(t, err)
			must(t, nc.Flush())
			errs.Violation(t, "subscription", subj)
		}
	})

	t.Run("allow/approval", func(t *testing.T) { d.approvalRoundTrip(t, ctx, a1) })

	t.Run("operator", func(t *testing.T) {
		// Something denied to read: a target outside the catalog.
		if _, err := a1.Send(ctx, client.Request{Capability: envelope.Read, Target: "no.such_target", Plain: map[string]any{}}); err != nil {
			t.Fatal(err)
		}
		nc, errs := d.connectCert(t, d.pki.operator)
		// The same reads as `agentgw denied ls|show` and `agentgw audit
		// tail`: direct gets through the OPS account's imports.
		js, err := jetstream.NewWithAPIPrefix(nc, client.OperatorAPIPrefix)
		must(t, err)
		first := map[string]uint64{} // the first sequence read of each
		for _, stream := range []string{gateway.StreamDenied, gateway.StreamAudit} {
			deadline := time.Now().Add(15 * time.Second)
			for ; first[stream] == 0; time.Sleep(50 * time.Millisecond) {
				err := client.ReadRecords(ctx, js, client.RecordQuery{Stream: stream}, func(m *jetstream.RawStreamMsg) error {
					first[stream] = m.Sequence
					return errors.New("one is enough")
				})
				if first[stream] == 0 && (err != nil || time.Now().After(deadline)) {
					t.Fatalf("operator read of %s = %v; want a message", stream, err)
				}
			}
			st, err := js.Stream(ctx, stream)
			must(t, err)
			if _, err := st.GetMsg(ctx, first[stream]); err != nil {
				t.Errorf("operator message get on %s: %v", stream, err)
			}
		}
		// A dry-run replay of it through the imported replay service.
		opKey, err := identity.NewAgent()
		must(t, err)
		opPub, _ := opKey.PublicKey()
		opSeed, err := opKey.Seed()
		must(t, err)
		opCurve, err := identity.NewCurve()
		must(t, err)
		opXKey, _ := opCurve.PublicKey()
		opTok, err := identity.Issue(d.issuerA, identity.IssueRequest{
			Subject: opPub, Audience: audience, Tenant: "tenant_a", Service: "transport-test", Name: "ops-1",
			Scopes: []string{"operator:replay"}, XKey: opXKey, TTL: time.Hour,
		}, time.Now())
		must(t, err)
		credsPath := filepath.Join(t.TempDir(), "operator.creds")
		must(t, identity.WriteCreds(credsPath, opTok, identity.Seed(opSeed)))
		op, err := client.NewOperator(nc, credsPath, "tenant_a")
		must(t, err)
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		if res, err := op.Replay(rctx, first[gateway.StreamDenied], true); err != nil || res == nil {
			t.Errorf("operator dry-run replay of denied %d = %v, %v; want the gateway's answer", first[gateway.StreamDenied], res, err)
		}
		// No consumer of its own, on any stream, through either API.
		for _, api := range []string{"$JS.API", client.OperatorAPIPrefix} {
			ojs, err := jetstream.NewWithAPIPrefix(nc, api)
			must(t, err)
			for _, stream := range []string{gateway.StreamDenied, gateway.StreamAudit, gateway.StreamCap} {
				pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				if _, err := ojs.OrderedConsumer(pctx, stream, jetstream.OrderedConsumerConfig{}); err == nil {
					t.Errorf("operator created a consumer on %s through %s", stream, api)
				}
				cancel()
			}
		}
		errs.Violation(t, "publish", "$JS.API.CONSUMER.CREATE."+gateway.StreamDenied+".")
		// Capability messages are not readable either.
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		if _, err := js.Stream(pctx, gateway.StreamCap); err == nil {
			t.Errorf("operator read the info of %s", gateway.StreamCap)
		}
		must(t, nc.Publish("agentgw.cap.tenant_a.kb.search", []byte("{}")))
		errs.Violation(t, "publish", "agentgw.cap.tenant_a.kb.search")
	})

	t.Run("refuse/gateway-stream-delete", func(t *testing.T) {
		nc, errs := d.connectCert(t, d.pki.gateway)
		js, _ := jetstream.New(nc)
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		if err := js.DeleteStream(pctx, gateway.StreamIngress); err == nil {
			t.Errorf("the gateway user deleted %s", gateway.StreamIngress)
		}
		errs.Violation(t, "publish", "$JS.API.STREAM.DELETE."+gateway.StreamIngress)
	})

	// The gateway's own connection (named by gateway.Connect) and the
	// approver never hit a refusal: their permissions are sufficient.
	if v := d.log.Violations(`go:agentgw-gateway"`); len(v) > 0 {
		t.Errorf("the running gateway hit permission violations:\n%s", strings.Join(v, "\n"))
	}
	if v := d.log.Violations(`go:` + approver1 + `"`); len(v) > 0 {
		t.Errorf("the approver hit permission violations:\n%s", strings.Join(v, "\n"))
	}
}
