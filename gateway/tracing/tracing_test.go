package tracing

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"
)

func TestExtractTrustsOnlyTheSignedTrace(t *testing.T) {
	const signed = "4bf92f3577b34da6a3ce929d0e0e4736"
	const parentSpan = "00f067aa0ba902b7"
	tests := []struct {
		name        string
		traceparent string
		wantSpan    string // "" means a synthetic parent
	}{
		{"same trace: header parent kept", "00-" + signed + "-" + parentSpan + "-01", parentSpan},
		{"other trace: header ignored", "00-0af7651916cd43dd8448eb211c80319c-" + parentSpan + "-01", ""},
		{"garbage header ignored", "not a traceparent", ""},
		{"no header", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := nats.Header{}
			if tt.traceparent != "" {
				hdr.Set("traceparent", tt.traceparent)
			}
			sc := trace.SpanContextFromContext(Extract(context.Background(), hdr, signed))
			if sc.TraceID().String() != signed {
				t.Fatalf("trace id = %s; want the signed %s", sc.TraceID(), signed)
			}
			if tt.wantSpan != "" && sc.SpanID().String() != tt.wantSpan {
				t.Errorf("parent span = %s; want %s", sc.SpanID(), tt.wantSpan)
			}
			if tt.wantSpan == "" && sc.SpanID().String() == parentSpan {
				t.Error("a header from another trace became the parent")
			}
		})
	}
	if sc := trace.SpanContextFromContext(Extract(context.Background(), nil, "zz")); sc.IsValid() {
		t.Error("an invalid signed trace id produced a parent")
	}
	hdr := nats.Header{}
	Inject(Extract(context.Background(), nil, signed), hdr)
	if got := hdr.Get("traceparent"); len(got) != 55 || got[3:35] != signed {
		t.Errorf("Inject wrote %q; want a traceparent in the signed trace", got)
	}
}

func TestInTrace(t *testing.T) {
	const signed = "4bf92f3577b34da6a3ce929d0e0e4736"
	tests := []struct {
		tp   string
		want bool
	}{
		{"00-" + signed + "-00f067aa0ba902b7-01", true},
		{"00-" + signed + "-00f067aa0ba902b7-00", true},
		{"00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01", false}, // another trace
		{"00-" + signed + "-0000000000000000-01", false},                   // zero span id
		{"01-" + signed + "-00f067aa0ba902b7-01", false},                   // unknown version
		{"00-" + signed + "-00f067aa0ba902b7-01\r\nX: y", false},
		{"00-" + signed + "-00F067AA0BA902B7-01", false}, // upper case
		{"", false},
	}
	for _, tt := range tests {
		if got := InTrace(tt.tp, signed); got != tt.want {
			t.Errorf("InTrace(%q) = %v; want %v", tt.tp, got, tt.want)
		}
	}
}

// TestAgentCannotSwitchOffGatewayTraces: a traceparent marked not
// sampled (as agents without a tracer send it) still gets recorded
// spans from a tracing gateway.
func TestAgentCannotSwitchOffGatewayTraces(t *testing.T) {
	tp, shutdown, err := Setup(context.Background(), Config{Exporter: "stdout"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = shutdown(context.Background()) }()
	const signed = "4bf92f3577b34da6a3ce929d0e0e4736"
	hdr := nats.Header{}
	hdr.Set("traceparent", Traceparent(signed))
	if got := hdr.Get("traceparent"); got[len(got)-3:] != "-00" {
		t.Fatalf("Traceparent = %q; want it not sampled", got)
	}
	_, span := tp.Tracer("t").Start(Extract(context.Background(), hdr, signed), "gate")
	if !span.IsRecording() {
		t.Error("a not-sampled remote parent switched off the gateway's span")
	}
	if span.SpanContext().TraceID().String() != signed {
		t.Errorf("span in trace %s; want %s", span.SpanContext().TraceID(), signed)
	}
}

// TestStdoutExporterWritesStdout: the "stdout" exporter writes to
// standard output, where its name says, not to standard error.
func TestStdoutExporterWritesStdout(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	saved := os.Stdout
	os.Stdout = w
	tp, shutdown, err := Setup(context.Background(), Config{Exporter: "stdout"}, "test")
	os.Stdout = saved
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("t").Start(context.Background(), "on-stdout")
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"Name":"on-stdout"`) {
		t.Errorf("stdout got %q; want the span", out)
	}
}

// TestFileExporter: the "file" exporter appends one JSON object per span
// to tracing.file, created 0600; the config is checked.
func TestFileExporter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spans.jsonl")
	for range 2 {
		tp, shutdown, err := Setup(context.Background(), Config{Exporter: "file", File: path}, "test")
		if err != nil {
			t.Fatal(err)
		}
		_, span := tp.Tracer("t").Start(context.Background(), "in-file")
		span.End()
		if err := shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), `"Name":"in-file"`); n != 2 {
		t.Errorf("file holds %d spans; want 2 (appended)\n%s", n, b)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"file/no_path", Config{Exporter: "file"}, "needs tracing.file"},
		{"stdout/with_path", Config{Exporter: "stdout", File: path}, "only for exporter file"},
		{"unknown", Config{Exporter: "jaeger"}, `"jaeger" is not none, stdout, file or otlp`},
	} {
		if _, _, err := Setup(context.Background(), tc.cfg, "test"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Setup(%+v) = %v; want an error containing %q", tc.name, tc.cfg, err, tc.want)
		}
	}
}
