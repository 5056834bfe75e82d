package gateway

import (
	"bytes"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestRecordedOutputsRoundTrip(t *testing.T) {
	a := nats.NewMsg("agentgw.cap.t.x")
	a.Header.Set("Nats-Msg-Id", "agw-1")
	a.Header["Multi"] = []string{"1", "2"}
	a.Data = []byte("body\x00bytes")
	b := nats.NewMsg("agentgw.audit.t")
	b.Data = []byte("the ingress body")
	ingress := []byte("the ingress body")
	c := nats.NewMsg("agentgw.cap.t.y") // a delivery: the body wraps the envelope
	c.Data = []byte(`{"v":1,"envelope":the ingress body}`)
	rec, err := encodeOutputs([]*nats.Msg{a, b, c}, ingress)
	must(t, err)
	if bytes.Contains(rec, ingress) {
		t.Error("the ingress body was recorded instead of referenced")
	}
	got, err := decodeOutputs(rec, ingress)
	must(t, err)
	if len(got) != 3 || !bytes.Equal(got[2].Data, c.Data) || got[0].Subject != a.Subject || !bytes.Equal(got[0].Data, a.Data) ||
		got[0].Header.Get("Nats-Msg-Id") != "agw-1" || len(got[0].Header["Multi"]) != 2 || got[1].Subject != b.Subject || string(got[1].Data) != "the ingress body" {
		t.Fatalf("round trip = %+v", got)
	}
	// Every truncation is an error, never a panic.
	for i := range rec {
		if _, err := decodeOutputs(rec[:i], ingress); err == nil {
			t.Fatalf("decodeOutputs(truncated to %d) = nil error", i)
		}
	}
}
