package client

import (
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Option injects a collaborator into an Agent, Consumer or Approver.
type Option func(*options)

type options struct {
	now    func() time.Time
	tracer trace.Tracer
}

// WithTracerProvider records a span per sent envelope ("agentgw.send",
// in the envelope's trace) and per delivery ("agentgw.consume", child of
// the gateway's span), with W3C context in the NATS headers. Default: no
// spans; the traceparent header still carries the trace id.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) {
		if tp != nil {
			o.tracer = tp.Tracer("github.com/agentgw/agentgw/client")
		}
	}
}

// WithClock replaces time.Now: for issued_at of sent envelopes and for
// the expiry checks of decision tokens. A nil clock is ignored.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

func applyOptions(opts []Option) options {
	o := options{now: time.Now, tracer: noop.NewTracerProvider().Tracer("")}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}
