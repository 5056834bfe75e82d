package gateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/envelope"
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
