package gateway

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
)

// Anyone who may publish on an ingress subject, with a credential that
// does not verify and no valid signature, names another tenant's trace
// id and a span of it: the message's span must not join that trace, nor
// carry the envelope's claimed tenant; the credential and signature
// gates of a message that passes them are still in its trace.
func TestUnsignedMessageGetsTraceOfItsOwn(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	h := newHarness(t)
	h.opts = append(h.opts, WithTracerProvider(tp))
	h.start()

	victim := h.body(nil)
	var e struct {
		TraceID string `json:"trace_id"`
	}
	must(t, json.Unmarshal(victim, &e))
	h.outputFor(h.send(victim))

	forged := h.body(func(b *envelope.Builder) { b.Target = "refunds.draft_refund"; b.TraceID = e.TraceID })
	hdr := nats.Header{}
	hdr.Set(header.Credential, "eyJnot.a.jwt")
	hdr.Set(header.Signature, "AAAA")
	hdr.Set(header.Traceparent, "00-"+e.TraceID+"-1111111111111111-01")
	out := h.outputFor(h.publish(h.ingress(newActor(t), "tenant_b"), forged, hdr))
	if tp := out.Header.Get(header.Traceparent); tp != "" && tp[3:35] == e.TraceID {
		t.Errorf("the denied record continues the victim's trace: %s", tp)
	}
	h.stop()

	roots, gates := 0, map[string]bool{}
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID().String() != e.TraceID {
			continue
		}
		switch s.Name {
		case "agentgw.message":
			roots++
		case "gate.credential", "gate.signature":
			gates[s.Name] = true
		}
		for _, a := range s.Attributes {
			if a.Key == "agentgw.reason" {
				t.Errorf("a denied message's span (%s) is in the victim's trace: %v", s.Name, s.Attributes)
			}
		}
	}
	if roots != 1 {
		t.Errorf("%d message spans in the victim's trace; want its own only", roots)
	}
	if !gates["gate.credential"] || !gates["gate.signature"] {
		t.Errorf("the victim's trace lacks its credential or signature gate: %v", gates)
	}
	for _, s := range exp.GetSpans() {
		if s.Name != "agentgw.message" || s.SpanContext.TraceID().String() == e.TraceID {
			continue
		}
		for _, a := range s.Attributes {
			if a.Key == "agentgw.tenant" || a.Key == "agentgw.trace_id" || a.Key == "agentgw.target" {
				t.Errorf("the unsigned message's span names its envelope's claim %s=%s", a.Key, a.Value.Emit())
			}
		}
	}
}
