package gateway

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/agentgw/agentgw/gateway/tracing"
)

// WithTracerProvider records a span per message ("agentgw.message", in
// the envelope's signed trace) with a child per gate, and carries the
// context to the outputs. Default, and with a no-op provider: no spans,
// and an output carries the agent's traceparent only when it belongs to
// the signed trace (see traceHeaders).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(g *Gateway) {
		switch tp.(type) {
		case nil, noop.TracerProvider, *noop.TracerProvider:
			return
		}
		g.tracer = tp.Tracer("github.com/agentgw/agentgw/gateway")
		g.tracing = true
	}
}

var noopTracer = noop.NewTracerProvider().Tracer("")

// startSpan opens the message span once its signed trace id is known:
// the signature verified and bound the message to its signer's subject
// (traceID "" starts a new trace, for a message denied before that).
func (g *Gateway) startSpan(it *item, traceID string) { g.startSpanAt(it, traceID, time.Time{}) }

// startSpanAt is startSpan with the span's start time (zero: now).
func (g *Gateway) startSpanAt(it *item, traceID string, at time.Time) {
	if it.span != nil || !g.tracing || it.untraced {
		return
	}
	ctx := context.Background()
	if traceID != "" {
		ctx = tracing.Extract(ctx, it.hdr, traceID)
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.Int64("agentgw.ingress_seq", int64(it.seq)), attribute.String("agentgw.subject", it.subject))}
	if !at.IsZero() {
		opts = append(opts, trace.WithTimestamp(at))
	}
	it.ctx, it.span = g.tracer.Start(ctx, "agentgw.message", opts...)
}

// tracedGates holds the start and end of the credential and signature
// gates, which run before the message span opens; read only when
// tracing.
type tracedGates struct{ at [4]time.Time }

func (t *tracedGates) mark(g *Gateway, i int) {
	if g.tracing {
		t.at[i] = time.Now()
	}
}

// pastGate records a gate that ran, from from to to, before the message
// span opened.
func (g *Gateway) pastGate(it *item, name string, from, to time.Time) {
	if it.span == nil || !it.span.IsRecording() || from.IsZero() {
		return
	}
	_, s := g.tracer.Start(it.ctx, "gate."+name, trace.WithTimestamp(from))
	s.End(trace.WithTimestamp(to))
}

// gate starts a child span for one gate; call the result when it is done.
func (g *Gateway) gate(it *item, name string) func() {
	if it.span == nil || !it.span.IsRecording() {
		return func() {}
	}
	_, s := g.tracer.Start(it.ctx, "gate."+name)
	return func() { s.End() }
}

// endUndecided closes the message span of an item handed back for
// redelivery without a decision (its batch failed, or the gateway
// stopped before deciding it): its gate spans are exported, so the root
// must be too. The redelivery gets a span of its own.
func (g *Gateway) endUndecided(it *item) {
	if it.span == nil {
		return
	}
	if it.span.IsRecording() {
		it.span.SetAttributes(attribute.Bool("agentgw.redelivered_undecided", true))
		it.span.SetStatus(codes.Error, "handed back undecided; redelivered")
	}
	it.span.End()
	it.span = nil
}

// endSpan records the outcome on the message span and closes it.
func (g *Gateway) endSpan(it *item) {
	if it.span == nil {
		return
	}
	if it.span.IsRecording() {
		attrs := []attribute.KeyValue{attribute.String("agentgw.route", string(it.route)), attribute.Bool("agentgw.output_acked", it.outputOK)}
		// What the envelope and the credential claim is the message's
		// only once its signature bound it to its signer's subject.
		if it.env != nil && it.bound {
			attrs = append(attrs, attribute.String("agentgw.trace_id", it.env.TraceID), attribute.String("agentgw.message_id", it.env.MessageID),
				attribute.String("agentgw.tenant", it.env.Tenant), attribute.String("agentgw.target", it.env.Target),
				attribute.String("agentgw.capability", string(it.env.Capability)))
		}
		if it.cred != nil && it.bound {
			attrs = append(attrs, attribute.String("agentgw.agent", it.cred.Subject), attribute.String("agentgw.credential_jti", it.cred.ID))
		}
		if len(it.pol.PolicyIDs) > 0 {
			attrs = append(attrs, attribute.StringSlice("agentgw.policy_ids", it.pol.PolicyIDs))
		}
		if it.denial != nil {
			attrs = append(attrs, attribute.String("agentgw.reason", string(it.denial.Code)))
			it.span.SetStatus(codes.Error, string(it.denial.Code))
		}
		it.span.SetAttributes(attrs...)
	}
	it.span.End()
}
