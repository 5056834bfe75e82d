package audit

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func full() Event {
	return Event{
		Time: time.Date(2026, 11, 26, 8, 1, 2, 345678900, time.UTC), Kind: KindDecision, Gateway: "NGW", Route: "deny",
		Reason: "replay_detected", Stage: "ledger", Detail: `message "m1" <first> & seen` + "\n\t\u2028é\xff",
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", MessageID: "m1", Tenant: "acme", Agent: "UAGENT", Service: "svc",
		CredentialID: "jti", Issuer: "AISS", Scopes: []string{"a:b", "c"}, Capability: "tool_call", Target: "refunds.draft",
		PolicyIDs: []string{"p1", "p2"}, PolicyVersion: "sha256:ab", IngressSeq: 42, Delivery: 2, Output: "agentgw.denied.acme.x",
		BodyDigest: "00ff", PayloadDigest: "ff00", Approver: "UAPP", HeldMessageID: "h1", HeldOperator: "hop", Operator: "op", DeniedSeq: 7,
		DryRun: true, LatencyMicros: -5, IdPIssuer: "https://idp", IdPSubject: "sub", IdPActors: []string{"x"},
		Rules: []string{"r"}, RequestID: "req",
	}
}

func TestAppendJSONMatchesMarshal(t *testing.T) {
	// full sets every field, so that a field AppendJSON leaves out fails.
	v := reflect.ValueOf(full())
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("full() leaves %s zero; set it, so that its encoding is checked", v.Type().Field(i).Name)
		}
	}
	events := []Event{{}, full(), {Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)), Kind: KindResponse}}
	// Each field alone, so every omission is checked.
	f := full()
	events = append(events,
		Event{Time: f.Time, Scopes: []string{}}, Event{DryRun: true}, Event{LatencyMicros: 1}, Event{IngressSeq: 1},
		Event{Detail: "<>&"}, Event{Detail: "\x00"}, Event{Rules: []string{""}},
		Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	for i, e := range events {
		want, werr := json.Marshal(e)
		got := e.AppendJSON(nil)
		if werr != nil {
			// json.Marshal refuses a year past 9999; AppendJSON then
			// writes what it can, which nothing reads: the gateway's
			// clock never gets there.
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("decision", `detail "q" <x>`, "a:b", int64(3), uint64(9), int64(1700000000), true)
	f.Add("", "\xff\u2028", "", int64(0), uint64(0), int64(0), false)
	f.Fuzz(func(t *testing.T, kind, detail, scope string, lat int64, seq uint64, unix int64, dry bool) {
		e := full()
		e.Kind, e.Detail, e.Scopes, e.LatencyMicros, e.IngressSeq, e.DryRun = kind, detail, []string{scope, detail}, lat, seq, dry
		e.Time = time.Unix(unix%(1<<35), lat%1e9).UTC()
		want, err := json.Marshal(e)
		if err != nil {
			return
		}
		if got := e.AppendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}

// TestClipDetail: a detail longer than MaxDetail is cut to at most
// MaxDetail bytes, at a rune boundary, and a shorter one is kept whole.
func TestClipDetail(t *testing.T) {
	short := strings.Repeat("é", 100)
	if got := ClipDetail(short); got != short {
		t.Errorf("a short detail changed: %q", got)
	}
	for _, s := range []string{strings.Repeat("x", 5000), "x" + strings.Repeat("é", 1000), strings.Repeat("\U000E0001", 300)} {
		got := ClipDetail(s)
		if len(got) > MaxDetail || len(got) < MaxDetail-3 || !utf8.ValidString(got) || !strings.HasPrefix(s, got) {
			t.Errorf("ClipDetail of %d bytes: %d bytes, valid UTF-8 %v", len(s), len(got), utf8.ValidString(got))
		}
	}
}
