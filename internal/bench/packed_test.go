package bench

import (
	"reflect"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
)

// TestPackedMsgsRoundTrip: every message a corpus packs comes back from
// At as it was built (subject, body, each header and value, nothing
// added), whichever headers it had, and a slice keeps its messages.
func TestPackedMsgsRoundTrip(t *testing.T) {
	h := func(kv ...string) nats.Header {
		h := nats.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	msgs := []*nats.Msg{
		{Subject: "agentgw.in.t1.a", Data: []byte(`{"a":1}`), Header: h(header.Credential, "cred-a", header.Signature, "sig-1", header.MsgID, "m1")},
		{Subject: "agentgw.in.t1.b", Data: []byte(`{"b":2}`), Header: h(header.Credential, "cred-b", header.Signature, "sig-2", header.MsgID, "m2", header.Notify, notice.NotifyNone)},
		// A replay: no Nats-Msg-Id.
		{Subject: "agentgw.in.t1.a", Data: []byte(`{"a":1}`), Header: h(header.Credential, "cred-a", header.Signature, "sig-1")},
		// No headers, an empty body.
		{Subject: "agentgw.in.t2.c", Data: []byte{}, Header: nats.Header{}},
	}
	p, err := packMsgs(msgs)
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != len(msgs) {
		t.Fatalf("Len %d, want %d", p.Len(), len(msgs))
	}
	for i, want := range msgs {
		got := p.At(i)
		if got.Subject != want.Subject || string(got.Data) != string(want.Data) || !reflect.DeepEqual(got.Header, want.Header) {
			t.Errorf("message %d: got %s %q %v, want %s %q %v", i, got.Subject, got.Data, got.Header, want.Subject, want.Data, want.Header)
		}
		if cap(got.Data) != len(got.Data) {
			t.Errorf("message %d: Data has room past its end (cap %d, len %d): an append would write the next message", i, cap(got.Data), len(got.Data))
		}
	}
	s := p.slice(1, 3)
	if s.Len() != 2 || s.At(0).Header.Get(header.Notify) != notice.NotifyNone || s.At(1).Header.Get(header.MsgID) != "" {
		t.Errorf("slice(1, 3) does not hold messages 1 and 2")
	}
}

// TestPackedMsgsRefusesOtherHeaders: a header packMsgs does not keep, or
// one with several values or an empty one, is an error rather than a
// message published without it.
func TestPackedMsgsRefusesOtherHeaders(t *testing.T) {
	for name, hdr := range map[string]nats.Header{
		"other header": {"Traceparent": {"00-x"}},
		"two values":   {header.Signature: {"a", "b"}},
		"no value":     {header.MsgID: {}},
		"empty value":  {header.Signature: {""}},
	} {
		if _, err := packMsgs([]*nats.Msg{{Subject: "s", Header: hdr}}); err == nil {
			t.Errorf("%s: packed", name)
		}
	}
}
