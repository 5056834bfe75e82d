package client

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/subjects/reason"
)

// plainConsumer is a Consumer of testTarget on durable for w's
// gateway, at the clock now, reporting to r.
func plainConsumer(t *testing.T, w *world, js jetstream.JetStream, durable string, r *recorder, now time.Time, edit func(*ConsumerConfig)) *Consumer {
	t.Helper()
	cfg := DefaultConsumerConfig()
	cfg.Tenant, cfg.Targets, cfg.TrustedGateways = testTenant, []string{testTarget}, []string{w.gwSign.PublicKey()}
	cfg.Durable, cfg.OnReject = durable, r.reject
	if edit != nil {
		edit(&cfg)
	}
	c, err := NewConsumer(js, cfg, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventually fails t with what unless cond holds within 15 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConsumerHandlerPastAckWaitHandsOverOnce: a handler that runs past
// AckWait and then succeeds sees the decision once. With the consumer's
// in-progress word lost (InProgress off here), JetStream redelivers
// the message while the handler runs; the redelivery reaches the
// Consumer while the handler still runs and is left to it, or after its
// acknowledgement and is acknowledged: either way it is not handed over
// a second time.
func TestConsumerHandlerPastAckWaitHandsOverOnce(t *testing.T) {
	w := newWorld(t)
	w.capStream()
	w.publish(forward{w: w, a: w.newActor(testTenant), target: testTarget, plain: []byte(`{"refund":"R-1"}`)}.msg())
	r := &recorder{}
	// Two slots: a second is free while the handler runs, so the
	// redelivery reaches this instance and is handed to no handler.
	c := plainConsumer(t, w, w.js, "slow", r, testClock, func(cfg *ConsumerConfig) {
		cfg.AckWait, cfg.InProgress, cfg.Concurrency = time.Second, -1, 2
	})
	var calls atomic.Int32
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan error, 1)
	go func() {
		done <- c.Consume(ctx, func(ctx context.Context, d *Delivery) error {
			calls.Add(1)
			// Return only once JetStream has redelivered the message.
			for {
				info, err := w.js.Consumer(ctx, StreamCapability, "slow")
				if err == nil && info.CachedInfo().NumRedelivered > 0 {
					return nil
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
	}()
	w.waitSettled("slow", 1)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Consume = %v", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler called %d times; want once: the redelivery came after it had succeeded", n)
	}
}

// TestConsumerFailedThenDurableCreatedAgain: a decision whose handler
// failed was never handled. A durable deleted and created again delivers
// it as a first delivery under the same name: it is handed over again,
// not terminated as a duplicate and lost.
func TestConsumerFailedThenDurableCreatedAgain(t *testing.T) {
	w := newWorld(t)
	w.capStream()
	w.publish(forward{w: w, a: w.newActor(testTenant), target: testTarget, plain: []byte(`{"refund":"R-2"}`)}.msg())
	r := &recorder{fail: 1}
	c := plainConsumer(t, w, w.js, "again", r, testClock, func(cfg *ConsumerConfig) { cfg.NakDelay = time.Hour })
	stop := consumeInBackground(t, c, r)
	eventually(t, "the handler was not called", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.calls) == 1
	})
	if err := stop(); err != nil {
		t.Fatalf("Consume = %v", err)
	}
	if err := w.js.DeleteConsumer(context.Background(), StreamCapability, "again"); err != nil {
		t.Fatal(err)
	}
	stop = consumeInBackground(t, c, r) // creates "again" anew
	w.waitSettled("again", 1)
	if err := stop(); err != nil {
		t.Fatalf("Consume = %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.calls) != 2 || len(r.rejected) != 0 {
		t.Errorf("handler called %d times, %d rejections (%v); want 2 calls, the second one handling it, and none", len(r.calls), len(r.rejected), r.rejected)
	}
}

// TestConsumerClockBehindHandsBack: to a Consumer whose clock runs a
// minute behind the gateway's (more than its 30 s skew), a live
// delivery's token is issued in the future. It is handed back and
// reported, not terminated: a Consumer whose clock is right handles it.
func TestConsumerClockBehindHandsBack(t *testing.T) {
	w := newWorld(t)
	w.capStream()
	w.publish(forward{w: w, a: w.newActor(testTenant), target: testTarget, plain: []byte(`{"refund":"R-3"}`)}.msg())
	behind := &recorder{}
	c := plainConsumer(t, w, w.js, "shared", behind, testClock.Add(-time.Minute), func(cfg *ConsumerConfig) { cfg.NakDelay = 100 * time.Millisecond })
	stop := consumeInBackground(t, c, behind)
	eventually(t, "the lagging consumer reported nothing", func() bool { return behind.rejections(reason.DecisionInvalid) > 0 })
	if err := stop(); err != nil {
		t.Fatalf("Consume = %v", err)
	}
	right := &recorder{}
	stop = consumeInBackground(t, plainConsumer(t, w, w.js, "shared", right, testClock, nil), right)
	w.waitSettled("shared", 1)
	if err := stop(); err != nil {
		t.Fatalf("Consume = %v", err)
	}
	behind.mu.Lock()
	defer behind.mu.Unlock()
	right.mu.Lock()
	defer right.mu.Unlock()
	if len(behind.calls) != 0 || len(right.calls) != 1 {
		t.Errorf("lagging consumer handled %d, right one %d; want 0 and 1: the delivery was handed back, not terminated (%v)", len(behind.calls), len(right.calls), right.rejected)
	}
}

// TestConsumeReturnsWhenConnectionCloses: Consume returns an ErrStream
// error once its connection is closed for good, instead of waiting for a
// context nobody will cancel.
func TestConsumeReturnsWhenConnectionCloses(t *testing.T) {
	w := newWorld(t)
	w.capStream()
	nc := natstest.Connect(t, w.srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	c := plainConsumer(t, w, js, "closing", r, testClock, nil)
	done := make(chan error, 1)
	go func() { done <- c.Consume(ctxT(t), r.handle) }()
	eventually(t, "the consumer was not created", func() bool {
		_, err := w.js.Consumer(context.Background(), StreamCapability, "closing")
		return err == nil
	})
	nc.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrStream) {
			t.Errorf("Consume after its connection closed = %v; want ErrStream", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Consume did not return after its connection closed")
	}
}

// TestConsumerKeepsSlowHandlerInProgress: while a handler runs three
// times the durable's AckWait, the Consumer tells JetStream the
// delivery is in progress, so JetStream does not redeliver it (to
// another instance of the durable, whose record would hand it over a
// second time).
func TestConsumerKeepsSlowHandlerInProgress(t *testing.T) {
	w := newWorld(t)
	w.capStream()
	w.publish(forward{w: w, a: w.newActor(testTenant), target: testTarget, plain: []byte(`{"refund":"R-1"}`)}.msg())
	r := &recorder{}
	c := plainConsumer(t, w, w.js, "slow", r, testClock, func(cfg *ConsumerConfig) { cfg.AckWait = time.Second })
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan error, 1)
	var redelivered atomic.Int64
	go func() {
		done <- c.Consume(ctx, func(ctx context.Context, d *Delivery) error {
			time.Sleep(3 * time.Second)
			info, err := w.js.Consumer(ctx, StreamCapability, "slow")
			if err != nil {
				return err
			}
			redelivered.Store(int64(info.CachedInfo().NumRedelivered))
			return nil
		})
	}()
	w.waitSettled("slow", 1)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Consume = %v", err)
	}
	if n := redelivered.Load(); n != 0 {
		t.Errorf("%d redelivered while the handler ran 3 × AckWait; want none", n)
	}
}
