package client

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/exchange/protocol"
)

// TestSendSealedRefusesNonObject: a sealed plaintext that is not one
// strict JSON object is refused with ErrRequest before anything is sealed
// or published, and the error does not quote it. The agent's curve key
// also seals the token exchange's xkey proof to the gateway: a box of
// XKeyProofInput from this agent would be a valid proof for whoever reads
// it off the denied stream.
func TestSendSealedRefusesNonObject(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	a := w.newActor(testTenant, "refund:draft")
	ag := w.agent(a)
	l := &lossy{real: ag.pubFn}
	ag.pubFn = l.publish
	const secret = "hunter2-sealed-secret"
	cases := []struct {
		name   string
		sealed []byte
	}{
		{"xkey_proof_input", protocol.XKeyProofInput(a.pub, "req-0123456789abcdef")},
		{"xkey_proof_input_attacker", protocol.XKeyProofInput(mustPubKey(t, w.newActor(testTenant).kp), "req-"+secret)},
		{"array", []byte(`[1]`)},
		{"array_secret", []byte(`["` + secret + `"]`)},
		{"string", []byte(`"x"`)},
		{"string_secret", []byte(`"` + secret + `"`)},
		{"number", []byte(`1`)},
		{"null", []byte(`null`)},
		{"raw_text", []byte(secret)},
		{"empty", []byte{}},
		{"duplicate_member", []byte(`{"a":"` + secret + `","a":1}`)},
		{"case_variant_duplicate", []byte(`{"amount":1,"Amount":"` + secret + `"}`)},
		{"data_after_object", []byte(`{"a":1} ` + secret)},
		{"two_objects", []byte(`{"a":1}{"b":2}`)},
		{"invalid_utf8", []byte("{\"a\":\"\xff" + secret + "\"}")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ag.Send(ctxT(t), Request{Capability: envelope.ToolCall, Target: testTarget, Sealed: tc.sealed})
			if !errors.Is(err, ErrRequest) {
				t.Fatalf("Send(sealed %s) = %v; want %v", tc.name, err, ErrRequest)
			}
			if !strings.Contains(err.Error(), "sealed payload is not one strict JSON object") {
				t.Errorf("error %q does not say the sealed payload is not a JSON object", err)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "agentgw-exchange") {
				t.Errorf("error %q quotes the plaintext", err)
			}
		})
	}
	// Respond seals its answer through the same path.
	d := &Delivery{Agent: a.pub, Envelope: &envelope.Body{MessageID: "0123456789abcdef0123456789abcdef", TraceID: envelope.NewTraceID()}}
	if _, err := ag.Respond(ctxT(t), d, []byte(`[1]`)); !errors.Is(err, ErrRequest) {
		t.Errorf("Respond([1]) = %v; want %v", err, ErrRequest)
	}
	if len(l.bodies) != 0 {
		t.Errorf("%d messages published; want none", len(l.bodies))
	}
	if n := len(w.all("AGENTGW_IN")); n != 0 {
		t.Errorf("stream holds %d messages; want none", n)
	}
}

// TestSendSealedObjectSeals: a JSON object, in any strict spelling, is
// sealed to the gateway verbatim and published.
func TestSendSealedObjectSeals(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	a := w.newActor(testTenant, "refund:draft")
	ag := w.agent(a)
	for i, plaintext := range [][]byte{
		[]byte(`{"order":"A-1","amount_cents":2500}`),
		[]byte(`{}`),
		[]byte(" {\"nested\":{\"a\":[1,2,{\"b\":null}]}}\n"),
	} {
		if _, err := ag.Send(ctxT(t), Request{Capability: envelope.ToolCall, Target: testTarget, Sealed: plaintext}); err != nil {
			t.Fatalf("Send(%s) = %v", plaintext, err)
		}
		msgs := w.all("AGENTGW_IN")
		if len(msgs) != i+1 {
			t.Fatalf("stream holds %d messages; want %d", len(msgs), i+1)
		}
		body := w.checkIngress(msgs[i], a)
		ct, err := base64.RawURLEncoding.DecodeString(body.Payload.Sealed)
		if err != nil {
			t.Fatal(err)
		}
		got, err := w.gwCurve.Open(ct, body.Payload.From)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		if !bytes.Equal(got, plaintext) {
			t.Errorf("opened %q; want %q", got, plaintext)
		}
	}
}
