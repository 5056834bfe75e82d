package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/header"
)

// TestIngressCapRefusesRatherThanDrops: with streams.ingress_max_bytes a
// publish that does not fit is refused by JetStream (the publisher gets
// the error). No stored message is dropped, not even when the cap is set
// below what the stream already holds: every message taken is decided,
// and the gateway still writes its outputs.
func TestIngressCapRefusesRatherThanDrops(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	// Stored before there is a cap, and more than the cap set below.
	must(t, EnsureStreams(ctx, h.js, h.cfg.Streams, h.cfg.Consumer.Partitions))
	var seqs []uint64
	for range 8 {
		seqs = append(seqs, h.send(append(h.body(nil), strings.Repeat(" ", 2<<10)...)))
	}
	st, err := h.js.Stream(ctx, StreamIngress)
	must(t, err)
	held := st.CachedInfo().State.Bytes
	h.cfg.Streams.IngressMaxBytes = int64(held / 2)
	h.start()
	select {
	case <-h.gw.Ready(): // the streams are updated, the cap set
	case <-time.After(15 * time.Second):
		t.Fatal("gateway not ready")
	}

	st, err = h.js.Stream(ctx, StreamIngress)
	must(t, err)
	if n := st.CachedInfo().State.Msgs; n != uint64(len(seqs)) {
		t.Fatalf("ingress holds %d messages after the cap (%d bytes) was set below its %d bytes; want all %d kept", n, h.cfg.Streams.IngressMaxBytes, held, len(seqs))
	}
	body := h.body(nil)
	m := nats.NewMsg(h.ingress(h.agent, "tenant_a"))
	m.Data = body
	for k, v := range h.signed(h.agent, h.agent.token, body) {
		m.Header[k] = v
	}
	if _, err := h.js.PublishMsg(ctx, m); err == nil || !strings.Contains(err.Error(), "maximum bytes") {
		t.Fatalf("publish to a full ingress stream: %v; want refused", err)
	}
	for _, seq := range seqs {
		if out := h.outputFor(seq); out.Header.Get(header.Route) == "" {
			t.Errorf("ingress %d: output %s has no route", seq, out.Subject)
		}
	}
}
