package client

import (
	"context"
	"testing"
	"time"
)

// TestConsumeOneAtATimeBuffersTwo: a consumer handling one delivery at
// a time holds at most two delivered and unacknowledged while its
// handler runs. A delivery buffered behind a slow handler has no
// in-progress word until its turn, so a deep buffer lets AckWait pass
// for many and hands them to another instance of the same durable,
// which runs the tool for them again.
func TestConsumeOneAtATimeBuffersTwo(t *testing.T) {
	const n = 20
	w := newWorld(t)
	w.capDeliveries(n)
	cfg := DefaultConsumerConfig()
	cfg.Tenant, cfg.Targets, cfg.TrustedGateways = testTenant, []string{testTarget}, []string{w.gwSign.PublicKey()}
	cfg.Durable = "refunds"
	c, err := NewConsumer(w.js, cfg, WithClock(func() time.Time { return testClock }))
	if err != nil {
		t.Fatal(err)
	}
	var handled int
	var top int
	ctx, cancel := context.WithCancel(ctxT(t))
	consumeUntil(t, ctx, cancel, c, func(context.Context, *Delivery) error {
		// Let the client's pulls settle, then read what the server
		// counts as delivered and not acknowledged: this delivery and
		// whatever is buffered behind it.
		time.Sleep(100 * time.Millisecond)
		info, err := w.js.Consumer(context.Background(), StreamCapability, "refunds")
		if err != nil {
			t.Error(err)
		} else {
			top = max(top, info.CachedInfo().NumAckPending)
		}
		if handled++; handled == n {
			cancel()
		}
		return nil
	})
	if top > 2 {
		t.Errorf("up to %d deliveries pending acknowledgement while one handler ran; want at most 2", top)
	}
	w.waitSettled("refunds", n)
}
