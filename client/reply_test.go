package client

import (
	"bytes"
	"testing"

	"github.com/agentgw/agentgw/gateway/envelope"
)

// TestRespondNamesRequestByAgentAndID: a response names the request by
// its agent and message id (a message id is unique per agent only), in
// the request's trace, sealed to the gateway from the responder's curve
// key.
func TestRespondNamesRequestByAgentAndID(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	requester := w.newActor(testTenant, "refund:draft")
	tool := w.newActor(testTenant, "respond:"+testTarget)
	d := &Delivery{
		Envelope: &envelope.Body{MessageID: "9f1c2b7e4d8a4c3fb6e15a2d7c9e0f41", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"},
		Agent:    requester.pub,
	}
	answer := []byte(`{"status":"drafted"}`)
	if _, err := w.agent(tool).Respond(ctxT(t), d, answer); err != nil {
		t.Fatalf("Respond = %v", err)
	}
	msgs := w.all("AGENTGW_IN")
	if len(msgs) != 1 {
		t.Fatalf("stream holds %d messages; want 1", len(msgs))
	}
	body := w.checkIngress(msgs[0], tool)
	if want := requester.pub + "/" + d.Envelope.MessageID; body.Capability != envelope.Respond || body.Target != want || body.TraceID != d.Envelope.TraceID {
		t.Fatalf("response = %s %s in trace %s; want respond %s in trace %s", body.Capability, body.Target, body.TraceID, want, d.Envelope.TraceID)
	}
	ct, err := body.Payload.SealedBytes()
	if err != nil {
		t.Fatal(err)
	}
	if body.Payload.From != tool.xkey {
		t.Errorf("answer sealed from %s; want the responder's curve key", body.Payload.From)
	}
	if got, err := w.gwCurve.Open(ct, body.Payload.From); err != nil || !bytes.Equal(got, answer) {
		t.Errorf("gateway Open = %q, %v; want the answer", got, err)
	}
}
