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
	rec, err := encodeOutputs([]*nats.Msg{a, b})
	must(t, err)
	got, err := decodeOutputs(rec)
	must(t, err)
	if len(got) != 2 || got[0].Subject != a.Subject || !bytes.Equal(got[0].Data, a.Data) ||
		got[0].Header.Get("Nats-Msg-Id") != "agw-1" || len(got[0].Header["Multi"]) != 2 || got[1].Subject != b.Subject {
		t.Fatalf("round trip = %+v", got)
	}
	// Every truncation is an error, never a panic.
	for i := range rec {
		if _, err := decodeOutputs(rec[:i]); err == nil {
			t.Fatalf("decodeOutputs(truncated to %d) = nil error", i)
		}
	}
}
