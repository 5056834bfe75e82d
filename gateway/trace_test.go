package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/tracing"
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
	// A message whose signature does not verify names no signed trace:
	// its denied record continues none.
	b = body()
	hdr := h.signed(h.agent, h.agent.token, b)
	hdr.Set(header.Signature, "AAAA")
	hdr.Set(header.Traceparent, "00-"+traceOf(b)+"-00f067aa0ba902b7-01")
	if got := h.outputFor(h.publish(h.ingress(h.agent, "tenant_a"), b, hdr)).Header.Get(header.Traceparent); got != "" {
		t.Errorf("unsigned message: its denied record carries the traceparent %q; want none", got)
	}
	// One signed by its agent on its own subject, denied for its expired
	// credential, is the agent's: its denied record continues its trace.
	ag := newActor(t)
	ag.token = h.credential(h.issuer, ag, "tenant_a", []string{"kb:read"}, time.Minute, "")
	h.clock.Advance(2 * time.Minute)
	b = body()
	hdr = h.signed(ag, ag.token, b)
	tp := "00-" + traceOf(b) + "-00f067aa0ba902b7-01"
	hdr.Set(header.Traceparent, tp)
	out := h.outputFor(h.publish(h.ingress(ag, "tenant_a"), b, hdr))
	if got := out.Header.Get(header.Traceparent); got != tp || out.Header.Get(header.Route) != "deny" {
		t.Errorf("expired credential: denied record (%s) carries the traceparent %q; want the agent's %q", out.Header.Get(header.Route), got, tp)
	}
}

// TestRootSpanExported: the tracing file exporter gets, for every
// message, its root span "agentgw.message" and the gate spans under it:
// allowed, denied after parsing, and never parsed.
func TestRootSpanExported(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spans.jsonl")
	tp, shutdown, err := tracing.Setup(context.Background(), tracing.Config{Exporter: "file", File: path}, "agentgw-test")
	must(t, err)
	h := newHarness(t)
	h.opts = append(h.opts, WithTracerProvider(tp))
	h.start()
	allowed := h.body(nil)
	denied := h.body(func(b *envelope.Builder) { b.Target = "no.such.target" })
	h.outputFor(h.send(allowed))
	h.outputFor(h.send(denied))
	h.outputFor(h.publish(h.ingress(h.agent, "tenant_a"), []byte(`{"not":"an envelope"}`), h.signed(h.agent, h.agent.token, []byte(`{"not":"an envelope"}`))))
	h.stop()
	must(t, shutdown(context.Background()))

	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	type span struct {
		Name        string
		SpanContext struct{ TraceID, SpanID string }
		Parent      struct{ SpanID string }
	}
	var spans []span
	dec := json.NewDecoder(f)
	for dec.More() {
		var s span
		must(t, dec.Decode(&s))
		spans = append(spans, s)
	}
	roots := map[string]string{} // trace id → root span id
	for _, s := range spans {
		if s.Name == "agentgw.message" {
			roots[s.SpanContext.TraceID] = s.SpanContext.SpanID
		}
	}
	if len(roots) != 3 {
		t.Errorf("%d message root spans exported; want one per message (3): %+v", len(roots), spans)
	}
	for _, b := range [][]byte{allowed, denied} {
		var e struct {
			TraceID string `json:"trace_id"`
		}
		must(t, json.Unmarshal(b, &e))
		if roots[e.TraceID] == "" {
			t.Errorf("trace %s has no exported agentgw.message span", e.TraceID)
		}
	}
	for _, s := range spans {
		if strings.HasPrefix(s.Name, "gate.") && roots[s.SpanContext.TraceID] != s.Parent.SpanID {
			t.Errorf("span %s (trace %s) has parent %s, not its message's exported root %s", s.Name, s.SpanContext.TraceID, s.Parent.SpanID, roots[s.SpanContext.TraceID])
		}
	}
}

// TestRootSpanEndedWhenBatchFails: a batch handed back undecided (here
// the ledger refuses the commit) still ends its messages' root spans, so
// no exported gate span is left without its parent; the redelivery gets
// a root span of its own.
func TestRootSpanEndedWhenBatchFails(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	h := newHarness(t)
	inj := h.startFailingLedger(WithTracerProvider(tp))
	inj.On()
	seq := h.send(h.body(nil))
	h.waitLedgerErrors(t, 1, "no batch failed while the ledger refused writes")
	inj.Off()
	h.outputFor(seq)
	h.stop()

	ended := map[string]bool{} // span ids
	roots := 0
	for _, s := range exp.GetSpans() {
		ended[s.SpanContext.SpanID().String()] = true
		if s.Name == "agentgw.message" {
			roots++
		}
	}
	if roots < 2 {
		t.Errorf("%d message root spans; want one for the failed attempt and one for the redelivery", roots)
	}
	for _, s := range exp.GetSpans() {
		if strings.HasPrefix(s.Name, "gate.") && !ended[s.Parent.SpanID().String()] {
			t.Errorf("span %s exported without its parent %s: a root span was never ended", s.Name, s.Parent.SpanID())
		}
	}
}

// counterValue reads a counter's value.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	must(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

// TestSenderTracestateNotCopied: with tracing on, the gateway continues
// the agent's trace from its traceparent, but its tracestate, text no
// one checks, reaches no output: a delivery's or denied record's
// headers are only those wire.md lists.
func TestSenderTracestateNotCopied(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	h := newHarness(t)
	h.opts = append(h.opts, WithTracerProvider(tp))
	h.start()
	for _, c := range []struct {
		name   string
		target string
	}{{"delivery", ""}, {"denied record", "kb.nope"}} {
		tid := envelope.NewTraceID()
		body := h.body(func(b *envelope.Builder) {
			b.TraceID = tid
			if c.target != "" {
				b.Target = c.target
			}
		})
		hdr := h.signed(h.agent, h.agent.token, body)
		hdr[header.Traceparent] = []string{"00-" + tid + "-0102030405060708-01"}
		hdr["tracestate"] = []string{"agentdata=ignore-previous-instructions"}
		out := h.outputFor(h.publish(h.ingress(h.agent, "tenant_a"), body, hdr))
		if got := out.Header.Get("tracestate"); got != "" || !strings.Contains(out.Header.Get(header.Traceparent), tid) {
			t.Errorf("%s (%s): tracestate %q, traceparent %q; want the trace continued without the sender's tracestate", c.name, out.Subject, got, out.Header.Get(header.Traceparent))
		}
	}
}
