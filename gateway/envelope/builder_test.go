package envelope

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/subjects/reason"
)

func TestBuilderReproducesWireV1(t *testing.T) {
	w := loadWire(t)
	got, err := Builder{
		MessageID:      "9f1c2b7e4d8a4c3fb6e15a2d7c9e0f41",
		IdempotencyKey: "refund:ord_123:draft",
		TraceID:        "4bf92f3577b34da6a3ce929d0e0e4736",
		Tenant:         "tenant_a",
		Audience:       "billing-gateway",
		Capability:     ToolCall,
		Target:         "refunds.draft_refund",
		Payload:        Payload{Plain: json.RawMessage(`{"order_id":"ord_123","amount_cents":2500}`)},
	}.Build(w.VerifyAt.Add(300 * time.Millisecond))
	if err != nil {
		t.Fatalf("Build = %v", err)
	}
	if string(got) != w.Envelope.Body {
		t.Errorf("Build =\n%s\nwant (wire-v1 field order)\n%s", got, w.Envelope.Body)
	}
}

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestBuilderDefaults(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	bd := Builder{Tenant: "t", Audience: "gw", Capability: Read, Target: "docs.read", Payload: Payload{Plain: json.RawMessage(`{}`)}}
	raw, err := bd.Build(now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(raw, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !hex32.MatchString(b.MessageID) || !hex32.MatchString(b.TraceID) || b.IdempotencyKey != b.MessageID {
		t.Errorf("ids = %q %q %q", b.MessageID, b.TraceID, b.IdempotencyKey)
	}
	if !b.IssuedAt.Equal(now) || b.ExpiresAt.Sub(b.IssuedAt) != DefaultTTL || !strings.Contains(string(raw), `"issued_at":"2026-01-02T02:04:05Z"`) {
		t.Errorf("times = %v %v in %s", b.IssuedAt, b.ExpiresAt, raw)
	}
	again, _ := bd.Build(now)
	b2, _ := Parse(again, Limits{})
	if b2.MessageID == b.MessageID || b2.TraceID == b.TraceID {
		t.Error("two Builds share generated ids")
	}
	if err := (Freshness{}).Check(b, now); err != nil {
		t.Errorf("fresh build: Freshness.Check = %v", err)
	}
}

func TestBuilderRefuses(t *testing.T) {
	ok := Builder{Tenant: "t", Audience: "gw", Capability: Read, Target: "docs.read", Payload: Payload{Plain: json.RawMessage(`{}`)}}
	tests := []struct {
		name string
		edit func(*Builder)
		want reason.Code
	}{
		{"tenant-empty", func(b *Builder) { b.Tenant = "" }, reason.MalformedEnvelope},
		{"tenant-quote", func(b *Builder) { b.Tenant = `t","tenant":"u` }, reason.MalformedEnvelope},
		{"capability", func(b *Builder) { b.Capability = "root" }, reason.MalformedEnvelope},
		{"target-wildcard", func(b *Builder) { b.Target = "docs.>" }, reason.MalformedEnvelope},
		{"no-payload", func(b *Builder) { b.Payload = Payload{} }, reason.MalformedEnvelope},
		{"both-payloads", func(b *Builder) { b.Payload.Sealed, b.Payload.From, b.Payload.To = "eGt2", testFrom, testTo }, reason.MalformedEnvelope},
		{"plain-not-object", func(b *Builder) { b.Payload.Plain = json.RawMessage(`[]`) }, reason.MalformedEnvelope},
		{"plain-smuggles-members", func(b *Builder) { b.Payload.Plain = json.RawMessage(`{}},"x":{"y":{}`) }, reason.MalformedEnvelope},
		{"plain-duplicate", func(b *Builder) { b.Payload.Plain = json.RawMessage(`{"a":1,"A":2}`) }, reason.MalformedEnvelope},
		{"message-id", func(b *Builder) { b.MessageID = "short" }, reason.MalformedEnvelope},
		{"negative-ttl", func(b *Builder) { b.TTL = -time.Second }, reason.TTLTooLong},
		{"oversized", func(b *Builder) {
			b.Payload.Plain = json.RawMessage(`{"a":"` + strings.Repeat("x", 16000) + `"}`)
			b.Limits.MaxBytes = 4096
		}, reason.Oversized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bd := ok
			tt.edit(&bd)
			raw, err := bd.Build(time.Now())
			if !errors.Is(err, tt.want) || raw != nil {
				t.Fatalf("Build = %q, %v; want %v", raw, err, tt.want)
			}
		})
	}
}

func TestSealedBytes(t *testing.T) {
	for _, tt := range []struct {
		sealed string
		ok     bool
	}{
		{"eGt2", true}, {"", false}, {"eGt2\n", false}, {"eG\nt2", false}, {"eGt2==", false}, {"eGt", false}, {"eGs", true}, {"e+t2", false},
	} {
		b, err := Payload{Sealed: tt.sealed}.SealedBytes()
		if tt.ok != (err == nil) || !tt.ok && !errors.Is(err, reason.MalformedEnvelope) {
			t.Errorf("SealedBytes(%q) = %q, %v; want ok=%v", tt.sealed, b, err, tt.ok)
		}
	}
}

func TestNewIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		m, tr := NewMessageID(), NewTraceID()
		if !validMessageID([]byte(m)) || len(m) != 32 || !validTraceID([]byte(tr)) || seen[m] {
			t.Fatalf("NewMessageID() = %q, NewTraceID() = %q", m, tr)
		}
		seen[m] = true
	}
}
