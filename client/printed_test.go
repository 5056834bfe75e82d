package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/gateway/envelope"
)

// TestPrintedFormsHoldNoPayload: a Delivery or Reply handed to fmt (any
// verb, value or pointer), to encoding/json or to log/slog's JSON
// handler shows ids and the payload's length, never the payload.
func TestPrintedFormsHoldNoPayload(t *testing.T) {
	const secret = `{"card":"4111111111111111"}`
	d := Delivery{Envelope: &envelope.Body{MessageID: "m-0123456789abcdef"}, Payload: []byte(secret), Sealed: true,
		Agent: "UAGENT", Subject: "agentgw.cap.tenant_a.refunds.draft_refund", Target: "refunds.draft_refund"}
	r := Reply{RequestID: "r-0123456789abcdef", Responder: "URESPONDER", MessageID: "m-reply", Payload: []byte(secret)}
	sealed := Request{Capability: envelope.ToolCall, Target: "payments.charge", Sealed: []byte(secret)}
	plain := Request{Capability: envelope.ToolCall, Target: "payments.charge", Plain: json.RawMessage(secret)}
	plainValue := Request{Capability: envelope.ToolCall, Target: "payments.charge", Plain: map[string]string{"card": "4111111111111111"}}
	type wrapped struct {
		D Delivery
		R Reply
		Q Request
	}
	var out []string
	for _, v := range []any{d, &d, r, &r, sealed, &sealed, plain, plainValue, wrapped{d, r, sealed}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
			out = append(out, fmt.Sprintf(verb, v))
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", v, err)
		}
		out = append(out, string(b))
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("handled", "value", v)
		out = append(out, buf.String())
	}
	b64 := []string{"4111111111111111", "eyJjYXJkIjoi", "3431313131"} // plain, base64 and hex of the payload
	for _, s := range out {
		for _, leak := range b64 {
			if strings.Contains(s, leak) {
				t.Errorf("printed form shows the payload: %s", s)
			}
		}
	}
	var got map[string]any
	b, _ := json.Marshal(d)
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["message_id"] != "m-0123456789abcdef" || got["payload_bytes"] != float64(len(secret)) || got["subject"] != d.Subject {
		t.Errorf("Delivery as JSON = %s; want its ids and payload_bytes", b)
	}
	b, _ = json.Marshal(r)
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["request_id"] != "r-0123456789abcdef" || got["payload_bytes"] != float64(len(secret)) {
		t.Errorf("Reply as JSON = %s; want its ids and payload_bytes", b)
	}
	b, _ = json.Marshal(sealed)
	if string(b) != `{"capability":"tool_call","target":"payments.charge","payload":"sealed, 27 bytes"}` {
		t.Errorf("Request as JSON = %s; want its capability, target and payload kind", b)
	}
}
