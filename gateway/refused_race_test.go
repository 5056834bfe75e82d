package gateway

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
)

// TestRefusedApprovalNarrowedTwiceEndsOnce: a held request whose approval
// request the approval stream refuses as too large is denied instead,
// its hold removed with the narrowed outcome. Here the acker is slow with
// that first narrowing (a lost PubAck ahead of it, say), so the message
// is redelivered past ack_wait and decided from the full outcome, and its
// refused request narrowed a second time after the first narrowing
// committed: the hold is gone by then, by the message's own doing. The
// replacement recorded then is still its end: it ends once, in the
// denied stream, not acknowledged with no output.
func TestRefusedApprovalNarrowedTwiceEndsOnce(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true // the refusal is logged as an error
	var narrowings atomic.Int32
	h.beforeRun = func(gw *Gateway) {
		gw.hooks = &pipelineHooks{narrowing: func([]uint64) {
			if narrowings.Add(1) == 1 {
				time.Sleep(2*h.cfg.Consumer.AckWait - 500*time.Millisecond) // past ack_wait: redelivered meanwhile
			}
		}}
	}
	h.start()
	<-h.gw.Ready()
	ctx := context.Background()
	s, err := h.js.Stream(ctx, StreamApproval)
	must(t, err)
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = 512
	_, err = h.js.UpdateStream(ctx, cfg)
	must(t, err)
	held := h.send(h.body(func(b *envelope.Builder) {
		b.Capability, b.Target = envelope.ToolCall, "payments.send"
		b.Payload = envelope.Payload{Plain: []byte(`{"amount_cents":500}`)}
	}))
	want := strconv.FormatUint(held, 10)
	ends := func() (n int) {
		for _, st := range []string{StreamCap, StreamApproval, StreamDenied} {
			for _, m := range h.all(st) {
				if m.Header.Get(header.IngressSeq) == want {
					n++
				}
			}
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for narrowings.Load() < 2 || ends() == 0 {
		if time.Now().After(deadline) {
			c, err := h.js.Consumer(ctx, StreamIngress, h.cfg.Consumer.Durable)
			must(t, err)
			i := c.CachedInfo()
			t.Fatalf("after %d narrowings: %d terminal outputs of ingress %d (ack floor %d, ack pending %d); want it narrowed twice and ended",
				narrowings.Load(), ends(), held, i.AckFloor.Stream, i.NumAckPending)
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.stop()
	if n := ends(); n != 1 {
		t.Fatalf("ingress %d has %d terminal outputs; want 1", held, n)
	}
}
