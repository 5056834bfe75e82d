package mcp

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/envelope"
)

// issueTools maps the catalog's refunds.issue and refunds_issue to the
// upstream's search tool.
func issueTools(url string) []Tool {
	return []Tool{
		{Name: "issue_dot", Target: "refunds.issue", Capability: envelope.Read, Scope: "refund:issue", Upstream: Upstream{URL: url, Tool: "search"}},
		{Name: "issue_underscore", Target: "refunds_issue", Capability: envelope.Read, Scope: "refund:issue", Upstream: Upstream{URL: url, Tool: "search"}},
	}
}

// TestBridgeTargetsDifferingByADot: two targets that differ only where a
// dot meets an underscore are each read by a durable consumer of their
// own, created by the bridge or pre-created and bound, and each request
// is answered by its tool, none rejected. On one shared durable, the
// second consumer would change the durable's filter to its own subject
// and take the first target's deliveries, which fail its subject check
// and are terminated.
func TestBridgeTargetsDifferingByADot(t *testing.T) {
	h := newHarness(t)
	h.cfg.Tools = append(h.cfg.Tools, issueTools(h.upstream.URL)...)
	must(t, h.cfg.Validate())
	ag := h.agent(newActor(t), "refund:issue")
	ask := func(target, query string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
		defer cancel()
		_, reply, err := ag.SendAndWait(ctx, client.Request{Capability: envelope.Read, Target: target,
			Sealed: []byte(`{"query":"` + query + `"}`)}, client.WaitOptions{TrustedGateways: []string{h.gwSigning}})
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		if want := "3 articles about " + query; !strings.Contains(string(reply.Payload), want) {
			t.Errorf("%s: reply %s; want the tool's answer %q", target, reply.Payload, want)
		}
	}
	filters := func(durable string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
		defer cancel()
		for _, target := range []string{"refunds.issue", "refunds_issue"} {
			c, err := h.js.Consumer(ctx, gateway.StreamCap, BridgeConsumerName(durable, target))
			must(t, err)
			if got, want := c.CachedInfo().Config.FilterSubject, "agentgw.cap."+tenant+"."+target; got != want {
				t.Errorf("consumer %s filters %s; want %s", c.CachedInfo().Name, got, want)
			}
		}
	}
	noRejects := func() {
		t.Helper()
		select {
		case err := <-h.rejected:
			t.Errorf("the bridge rejected a delivery: %v", err)
		default:
		}
	}

	_, stop := h.startBridgeWith(nil)
	ask("refunds.issue", "dot")
	ask("refunds_issue", "underscore")
	ask("refunds.issue", "dot-again")
	stop()
	filters("mcp-bridge")
	noRejects()

	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	for _, tool := range h.cfg.Tools {
		_, err := h.js.CreateOrUpdateConsumer(ctx, gateway.StreamCap, jetstream.ConsumerConfig{
			Durable: client.CapabilityConsumerName(tenant, tool.Target), FilterSubject: "agentgw.cap." + tenant + "." + tool.Target,
			AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverNewPolicy,
		})
		must(t, err)
	}
	h.startBridgeWith(func(c *client.ConsumerConfig) { c.Durable, c.Bind = tenant, true })
	ask("refunds_issue", "bound-underscore")
	ask("refunds.issue", "bound-dot")
	filters(tenant)
	noRejects()
}

// TestBridgeRefusesUnusableConsumerNames: a durable holding "~" (its
// names would read as another tenant's consumers) and names longer than
// nats-server takes are refused before any consumer is made, and so is a
// mapping whose pre-created consumer name would be too long.
func TestBridgeRefusesUnusableConsumerNames(t *testing.T) {
	h := newHarness(t)
	ccfg := client.DefaultConsumerConfig()
	ccfg.Curve, ccfg.TrustedGateways = h.bridgeID.curve, []string{h.gwSigning}
	ccfg.Responder = h.agent(h.bridgeID, "respond:refunds.draft_refund", "respond:payments.send", "respond:kb.search")
	for _, durable := range []string{"tenant_b~refunds", "~", strings.Repeat("d", client.MaxConsumerNameLen-len("~refunds~draft_refund")+1)} {
		ccfg.Durable = durable
		if _, err := NewBridge(h.js, h.cfg, ccfg); !errors.Is(err, ErrConfig) || !errors.Is(err, client.ErrConsumerName) {
			t.Errorf("NewBridge with durable %.20q… = %v; want ErrConfig and client.ErrConsumerName", durable, err)
		}
	}
	ccfg.Durable = strings.Repeat("d", client.MaxConsumerNameLen-len("~refunds~draft_refund"))
	if _, err := NewBridge(h.js, h.cfg, ccfg); err != nil {
		t.Errorf("NewBridge with the longest durable = %v", err)
	}

	long := strings.Repeat("x", 64) + "." + strings.Repeat("y", 64) + "." + strings.Repeat("z", 64) + "." + strings.Repeat("w", 60)
	c := &Config{Tenant: tenant, Tools: []Tool{{Name: "long", Target: long, Scope: "s", Upstream: Upstream{URL: h.upstream.URL}}}}
	if err := c.Validate(); !errors.Is(err, ErrConfig) || !errors.Is(err, client.ErrConsumerName) || !strings.Contains(err.Error(), `tool "long"`) {
		t.Errorf("Validate of a target whose consumer name is %d bytes = %v; want ErrConfig and client.ErrConsumerName naming the tool",
			len(BridgeConsumerName(tenant, long)), err)
	}
	c.Tools[0].Upstream = Upstream{}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate of the same target served by the endpoint only = %v; it needs no consumer", err)
	}
}
