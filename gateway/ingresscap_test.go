package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/header"
)

// TestIngressCapsRefuseRatherThanDrop: with streams.ingress_max_msgs_per_agent
// an agent at its cap has its next publish refused by JetStream (it gets
// the error), while another agent's messages are still taken; with
// streams.ingress_max_bytes a publish that does not fit is refused. No
// stored message is dropped: every one taken is decided, and the gateway
// still writes its outputs.
func TestIngressCapsRefuseRatherThanDrop(t *testing.T) {
	h := newHarness(t)
	h.cfg.Streams.IngressMaxMsgsPerAgent = 3
	h.cfg.Streams.IngressMaxBytes = 64 << 10
	h.start()

	publish := func(a *actor, size int) error {
		body := h.body(nil)
		if size > 0 {
			body = append(body, strings.Repeat(" ", size)...)
		}
		m := nats.NewMsg(h.ingress(a, "tenant_a"))
		m.Data = body
		for k, v := range h.signed(a, a.token, body) {
			m.Header[k] = v
		}
		_, err := h.js.PublishMsg(context.Background(), m)
		return err
	}
	var seqs []uint64
	for range 3 {
		seqs = append(seqs, h.send(h.body(nil)))
	}
	if err := publish(h.agent, 0); err == nil || !strings.Contains(err.Error(), "maximum messages per subject") {
		t.Fatalf("fourth publish of one agent: %v; want refused at its cap", err)
	}
	other := newActor(h.t)
	other.token = h.credential(h.issuer, other, "tenant_a", []string{"kb:read"}, time.Hour, "")
	if err := publish(other, 0); err != nil {
		t.Fatalf("another agent's publish: %v; want it taken", err)
	}
	if err := publish(other, 70<<10); err == nil {
		t.Fatal("a publish larger than the stream's room was taken")
	}
	for _, seq := range seqs {
		if out := h.outputFor(seq); out.Header.Get(header.Route) == "" {
			t.Errorf("ingress %d: output %s has no route", seq, out.Subject)
		}
	}
	st, err := h.js.Stream(context.Background(), StreamIngress)
	must(t, err)
	if n := st.CachedInfo().State.Msgs; n != 4 {
		t.Errorf("ingress stream holds %d messages; want the 4 taken", n)
	}
}
