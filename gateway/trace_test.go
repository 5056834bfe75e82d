package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
)

// TestOneTraceFromAgentToConsumer follows a sealed request from the
// agent SDK through the gateway's gates to the consumer SDK: one trace,
// the envelope's signed trace id, every hop present.
func TestOneTraceFromAgentToConsumer(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	h := newHarness(t)
	h.opts = append(h.opts, WithTracerProvider(tp))
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cfg := client.DefaultAgentConfig()
	cfg.Credential, cfg.Key, cfg.Curve, cfg.GatewayXKey = h.agent.token, h.agent.kp, h.agent.curve, h.gwCurve
	agent, err := client.NewAgent(h.nc, cfg, client.WithClock(h.clock.Now), client.WithTracerProvider(tp))
	must(t, err)
	rcpt, err := agent.Send(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund",
		Sealed: []byte(`{"order_id":"ord_7","amount_cents":700}`)})
	must(t, err)
	h.secrets = append(h.secrets, `{"order_id":"ord_7","amount_cents":700}`)
	h.outputFor(rcpt.Seq)

	ccfg := client.DefaultConsumerConfig()
	ccfg.Tenant, ccfg.Targets, ccfg.Curve, ccfg.TrustedGateways = "tenant_a", []string{"refunds.draft_refund"}, h.consumer.curve, []string{h.gwSigning}
	consumer, err := client.NewConsumer(h.js, ccfg, client.WithClock(h.clock.Now), client.WithTracerProvider(tp))
	must(t, err)
	got := make(chan struct{})
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- consumer.Consume(cctx, func(context.Context, *client.Delivery) error { close(got); return nil })
	}()
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatal("consumer did not receive the delivery")
	}
	ccancel()
	<-done
	h.stop()

	spans := exp.GetSpans()
	names := map[string]bool{}
	for _, s := range spans {
		if s.SpanContext.TraceID().String() != rcpt.TraceID {
			continue
		}
		names[s.Name] = true
		h.emitted = append(h.emitted, fmt.Sprint(s.Attributes))
	}
	for _, want := range []string{"agentgw.send", "agentgw.message", "gate.credential", "gate.signature", "gate.ledger",
		"gate.catalog", "gate.policy", "gate.open", "gate.payload_schema", "gate.content_policy", "gate.reseal_sign", "agentgw.consume"} {
		if !names[want] {
			t.Errorf("trace %s lacks span %q (has %v)", rcpt.TraceID, want, names)
		}
	}
	h.scanSecrets()
}

// TestTraceparentWithoutTracer: a gateway without a tracer is not a hop of
// the trace. An output carries the agent's traceparent only when it names
// the signed trace id, exactly as sent, and never one the gateway made up.
func TestTraceparentWithoutTracer(t *testing.T) {
	h := newHarness(t)
	h.start()
	body := func() []byte { return h.body(nil) }
	traceOf := func(b []byte) string {
		var e struct {
			TraceID string `json:"trace_id"`
		}
		must(t, json.Unmarshal(b, &e))
		return e.TraceID
	}
	send := func(b []byte, tp string) *jetstream.RawStreamMsg {
		hdr := h.signed(h.agent, h.agent.token, b)
		if tp != "" {
			hdr.Set(header.Traceparent, tp)
		}
		m := h.outputFor(h.publish(h.ingress(h.agent, "tenant_a"), b, hdr))
		if m.Subject != "agentgw.cap.tenant_a.kb.search" {
			t.Fatalf("routed to %s; want the capability subject", m.Subject)
		}
		return m
	}

	b := body()
	same := "00-" + traceOf(b) + "-00f067aa0ba902b7-01"
	if got := send(b, same).Header.Get(header.Traceparent); got != same {
		t.Errorf("signed trace: output traceparent = %q; want the agent's %q", got, same)
	}
	other := "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
	if got := send(body(), other).Header.Get(header.Traceparent); got != "" {
		t.Errorf("another trace: output traceparent = %q; want none", got)
	}
	if got := send(body(), "").Header.Get(header.Traceparent); got != "" {
		t.Errorf("no traceparent: output has %q; want none made up", got)
	}
}
