package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/subjects"
)

// TestResponseThroughSDK: the agent sends and awaits, the consumer
// answers in one call from its handler, the agent gets the redacted
// reply — all through the SDK and the real gateway.
func TestResponseThroughSDK(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	agent, stopConsumer := answeringRefunds(ctx, t, h, map[string]string{"refund_id": "r-9", "status": "drafted", "customer_email": "x@example.com"})
	h.secrets = append(h.secrets, "x@example.com")
	// The notice that the request was delivered does not end the wait.
	var seen []*client.Decision
	rc, reply, err := agent.SendAndWait(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund",
		Sealed: []byte(`{"order_id":"ord_3","amount_cents":300}`)}, client.WaitOptions{TrustedGateways: []string{h.gwSigning},
		OnDecision: func(d *client.Decision) { seen = append(seen, d) }})
	stopConsumer()
	must(t, err)
	if string(reply.Payload) != `{"refund_id":"r-9","status":"drafted"}` || reply.Responder != h.consumer.pub {
		t.Fatalf("reply = %s from %s; want the redacted answer from the consumer", reply.Payload, reply.Responder)
	}
	for _, d := range seen {
		if d.Route != notice.RouteAllow || d.Target != "refunds.draft_refund" || d.MessageID != rc.MessageID {
			t.Errorf("OnDecision saw %+v; want only the delivery of %s", d, rc.MessageID)
		}
	}
	h.stop()
	h.scanSecrets()
}

// TestConcurrentWaitsShareOneSubscription: an agent's calls in flight
// wait on one subscription to its reply subject, not one each, and each
// still gets its own reply. The consumer answers nothing until every
// call was delivered, so all of them are waiting when the server's
// subscriptions are counted.
func TestConcurrentWaitsShareOneSubscription(t *testing.T) {
	const calls = 8
	h := newHarness(t)
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.draft_refund"}, time.Hour, "")
	h.start()
	<-h.gw.Ready()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	agent, consumer := sdkAgentAndConsumer(t, h)
	release := make(chan struct{})
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- consumer.Consume(cctx, func(ctx context.Context, d *client.Delivery) error {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
			var req struct {
				OrderID string `json:"order_id"`
			}
			if err := json.Unmarshal(d.Payload, &req); err != nil {
				return err
			}
			_, err := consumer.Respond(ctx, d, map[string]string{"refund_id": "r-" + req.OrderID, "status": "drafted"})
			return err
		})
	}()

	var delivered sync.WaitGroup
	delivered.Add(calls)
	var wg sync.WaitGroup
	replies := make([]string, calls)
	errs := make([]error, calls)
	for i := range calls {
		wg.Go(func() {
			var once sync.Once
			_, reply, err := agent.SendAndWait(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund",
				Sealed: fmt.Appendf(nil, `{"order_id":"ord_%d","amount_cents":300}`, i)}, client.WaitOptions{TrustedGateways: []string{h.gwSigning},
				OnDecision: func(d *client.Decision) {
					if d.Route == notice.RouteAllow {
						once.Do(delivered.Done)
					}
				}})
			once.Do(delivered.Done) // a call that failed is not waiting either
			errs[i] = err
			if err == nil {
				replies[i] = string(reply.Payload)
			}
		})
	}
	delivered.Wait()
	reply, err := subjects.Reply("tenant_a", h.agent.pub)
	must(t, err)
	if n := subscriptionsTo(t, h.srv, reply); n != 1 {
		t.Errorf("%d subscriptions to the agent's reply subject with %d calls waiting; want one", n, calls)
	}
	close(release)
	wg.Wait()
	ccancel()
	if cerr := <-done; cerr != nil {
		t.Fatalf("Consume: %v", cerr)
	}
	for i := range calls {
		want := fmt.Sprintf(`{"refund_id":"r-ord_%d","status":"drafted"}`, i)
		if errs[i] != nil || replies[i] != want {
			t.Errorf("call %d: reply %s, %v; want %s", i, replies[i], errs[i], want)
		}
	}
	must(t, h.nc.Flush()) // the unsubscription reaches the server
	if n := subscriptionsTo(t, h.srv, reply); n != 0 {
		t.Errorf("%d subscriptions to the agent's reply subject after the calls; want none", n)
	}
	h.stop()
	h.scanSecrets()
}

// sdkAgentAndConsumer returns the harness's agent and its refunds
// consumer through the SDK, the consumer answering as its own agent
// (the consumer's curve key, the respond scope its credential must hold).
func sdkAgentAndConsumer(t *testing.T, h *harness) (*client.Agent, *client.Consumer) {
	t.Helper()
	agentCfg := func(a *actor) client.AgentConfig {
		c := client.DefaultAgentConfig()
		c.Credential, c.Key, c.Curve, c.GatewayXKey = a.token, a.kp, a.curve, h.gwCurve
		return c
	}
	agent, err := client.NewAgent(h.nc, agentCfg(h.agent), client.WithClock(h.clock.Now))
	must(t, err)
	responder, err := client.NewAgent(h.nc, agentCfg(h.consumer), client.WithClock(h.clock.Now))
	must(t, err)
	ccfg := client.DefaultConsumerConfig()
	ccfg.Tenant, ccfg.Targets, ccfg.Curve = "tenant_a", []string{"refunds.draft_refund"}, h.consumer.curve
	ccfg.TrustedGateways, ccfg.Responder = []string{h.gwSigning}, responder
	consumer, err := client.NewConsumer(h.js, ccfg, client.WithClock(h.clock.Now))
	must(t, err)
	return agent, consumer
}

// answeringRefunds starts h with its consumer, allowed to respond to
// refunds.draft_refund, answering every delivery with answer until stop,
// which fails the test on Consume's error; it returns the SDK agent.
func answeringRefunds(ctx context.Context, t *testing.T, h *harness, answer map[string]string) (agent *client.Agent, stop func()) {
	t.Helper()
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.draft_refund"}, time.Hour, "")
	h.start()
	<-h.gw.Ready() // the consumer needs the capability stream
	agent, consumer := sdkAgentAndConsumer(t, h)
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- consumer.Consume(cctx, func(ctx context.Context, d *client.Delivery) error {
			_, err := consumer.Respond(ctx, d, answer)
			return err
		})
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ccancel()
			if err := <-done; err != nil {
				t.Errorf("Consume: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return agent, stop
}

// subscriptionsTo counts the server's subscriptions to subject, over
// every connection.
func subscriptionsTo(t *testing.T, srv *server.Server, subject string) int {
	t.Helper()
	cz, err := srv.Connz(&server.ConnzOptions{Subscriptions: true, Limit: 1 << 12})
	must(t, err)
	n := 0
	for _, c := range cz.Conns {
		for _, s := range c.Subs {
			if s == subject {
				n++
			}
		}
	}
	return n
}
