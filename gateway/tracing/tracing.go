package tracing

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// Config selects an exporter.
type Config struct {
	// Exporter is "none" (default), "stdout" (one JSON object per span
	// on standard output), "file" (the same, appended to File) or
	// "otlp".
	Exporter string `yaml:"exporter"`
	// File is the file the "file" exporter appends to (created 0600).
	// Required with "file"; an error with any other exporter.
	File string `yaml:"file"`
	// Endpoint is the OTLP/HTTP endpoint (host:port) for "otlp"; empty
	// uses the OTEL_EXPORTER_OTLP_* environment.
	Endpoint string `yaml:"endpoint"`
	// Insecure sends OTLP without TLS (a local collector).
	Insecure bool `yaml:"insecure"`
}

// Validate reports every problem of cfg at once.
func (c Config) Validate() error {
	var errs []error
	switch c.Exporter {
	case "", "none", "stdout", "file", "otlp":
	default:
		errs = append(errs, fmt.Errorf("tracing: exporter %q is not none, stdout, file or otlp", c.Exporter))
	}
	if c.Exporter == "file" && c.File == "" {
		errs = append(errs, errors.New("tracing: exporter file needs tracing.file"))
	}
	if c.Exporter != "file" && c.File != "" {
		errs = append(errs, fmt.Errorf("tracing: tracing.file is only for exporter file, not %q", c.Exporter))
	}
	return errors.Join(errs...)
}

// Setup returns a tracer provider for cfg and its shutdown function,
// which flushes the spans still buffered (and closes the file).
func Setup(ctx context.Context, cfg Config, service string) (trace.TracerProvider, func(context.Context) error, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	var exp sdktrace.SpanExporter
	var err error
	var closeFile func() error
	switch cfg.Exporter {
	case "", "none":
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	case "stdout":
		exp, err = stdouttrace.New(stdouttrace.WithWriter(os.Stdout))
	case "file":
		f, ferr := os.OpenFile(cfg.File, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if ferr != nil {
			return nil, nil, fmt.Errorf("tracing: %w", ferr)
		}
		closeFile = f.Close
		if exp, err = stdouttrace.New(stdouttrace.WithWriter(f)); err != nil {
			_ = f.Close()
		}
	case "otlp":
		var opts []otlptracehttp.Option
		if cfg.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpoint(cfg.Endpoint))
		}
		if cfg.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		// A remote parent's sampled flag comes from the sender: an agent
		// must not be able to switch off the gateway's traces of its own
		// messages, so every span is recorded whatever the header says.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample(),
			sdktrace.WithRemoteParentNotSampled(sdktrace.AlwaysSample()))),
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(service))),
	)
	shutdown := tp.Shutdown
	if closeFile != nil {
		shutdown = func(ctx context.Context) error {
			return errors.Join(tp.Shutdown(ctx), closeFile())
		}
	}
	return tp, shutdown, nil
}

// carrier adapts nats.Header to the propagation interface.
type carrier nats.Header

func (c carrier) Get(k string) string { return nats.Header(c).Get(k) }
func (c carrier) Set(k, v string)     { nats.Header(c).Set(k, v) }
func (c carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

var propagator = propagation.TraceContext{}

// Extract returns ctx with the remote parent for a message whose signed
// trace id is traceID: the traceparent header's span when it belongs to
// that trace, else a synthetic parent in that trace. An invalid traceID
// yields ctx unchanged. The sender's tracestate is not kept: a span
// carries its parent's, and Inject would write that text, which no one
// checked, into every output of the message.
func Extract(ctx context.Context, hdr nats.Header, traceID string) context.Context {
	tid, err := trace.TraceIDFromHex(traceID)
	if err != nil {
		return ctx
	}
	if hdr != nil {
		pctx := propagator.Extract(ctx, carrier(hdr))
		if sc := trace.SpanContextFromContext(pctx); sc.IsValid() && sc.TraceID() == tid {
			return trace.ContextWithRemoteSpanContext(ctx, sc.WithTraceState(trace.TraceState{}))
		}
	}
	return trace.ContextWithRemoteSpanContext(ctx, Remote(tid))
}

// Remote is a sampled remote span context in trace tid with a random span
// id: the parent for a trace that starts from a signed trace id.
func Remote(tid trace.TraceID) trace.SpanContext {
	var sid trace.SpanID
	_, _ = rand.Read(sid[:])
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
}

// Inject writes ctx's span as the traceparent of hdr.
func Inject(ctx context.Context, hdr nats.Header) {
	propagator.Inject(ctx, carrier(hdr))
}

// Traceparent formats a W3C traceparent for a trace id with a new span,
// for agents that do not run a tracer. It is not marked sampled: nothing
// recorded the span, and a sampled traceparent makes nats-server parse
// every header of the message into a map on publish (message tracing).
// A tracing gateway records its spans anyway (see Setup).
func Traceparent(traceID string) string {
	var sid [8]byte
	_, _ = rand.Read(sid[:])
	return "00-" + traceID + "-" + hex.EncodeToString(sid[:]) + "-00"
}

// InTrace reports whether tp is a well-formed W3C traceparent (version
// 00) whose trace id is traceID.
func InTrace(tp, traceID string) bool {
	if len(tp) != 55 || tp[:3] != "00-" || tp[35] != '-' || tp[52] != '-' || tp[3:35] != traceID {
		return false
	}
	ctx := propagator.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
	return trace.SpanContextFromContext(ctx).IsValid()
}
