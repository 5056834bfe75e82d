package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

func (w *world) capStream() {
	w.t.Helper()
	w.stream(jetstream.StreamConfig{Name: StreamCapability, Subjects: []string{"agentgw.cap.>"}, Storage: jetstream.FileStorage})
}

// capDeliveries creates the capability stream and publishes n genuine
// deliveries of the test target, payloads {"i":0} to {"i":n-1}.
func (w *world) capDeliveries(n int) {
	w.t.Helper()
	w.capStream()
	a := w.newActor(testTenant)
	for i := range n {
		w.publish(forward{w: w, a: a, target: testTarget, plain: fmt.Appendf(nil, `{"i":%d}`, i)}.msg())
	}
}

func (w *world) publish(m *nats.Msg) {
	w.t.Helper()
	if _, err := w.js.PublishMsg(context.Background(), m); err != nil {
		w.t.Fatal(err)
	}
}

// rejection is one OnReject call.
type rejection struct {
	subject string
	err     error
}

func TestConsumerTermsForgedDeliversGenuine(t *testing.T) {
	w := newWorld(t)
	w.capStream()
	a := w.newActor(testTenant)
	consumerKey := mustKey(t, identity.NewCurve)
	box, err := identity.NewBox(consumerKey)
	if err != nil {
		t.Fatal(err)
	}
	plaintext := []byte(`{"order":"A-1"}`)
	genuine := forward{w: w, a: a, target: testTarget, plain: plaintext, sealed: true, consumer: box}

	// A forgery: a genuine message whose decision token was stripped, as
	// if published to agentgw.cap.> without the gateway.
	forged := editDoc(t, genuine.msg(), func(d *docFields) { d.Decision = "" })
	w.publish(forged)
	w.publish(genuine.msg())

	var (
		mu       sync.Mutex
		got      []*Delivery
		rejected []rejection
		calls    int
	)
	ctx, cancel := context.WithCancel(ctxT(t))
	cfg := DefaultConsumerConfig()
	cfg.Tenant, cfg.Targets, cfg.Curve = testTenant, []string{testTarget}, consumerKey
	cfg.TrustedGateways, cfg.Durable = []string{w.gwSign.PublicKey()}, "refunds"
	cfg.OnReject = func(subject string, err error) {
		mu.Lock()
		rejected = append(rejected, rejection{subject, err})
		mu.Unlock()
	}
	c, err := NewConsumer(w.js, cfg, WithClock(func() time.Time { return testClock }))
	if err != nil {
		t.Fatal(err)
	}
	consumeUntil(t, ctx, cancel, c, func(_ context.Context, d *Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return errors.New("transient") // nak: must come back
		}
		got = append(got, d)
		cancel()
		return nil
	})

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || string(got[0].Payload) != string(plaintext) || calls != 2 {
		t.Fatalf("handler saw %d deliveries in %d calls; want the genuine one, redelivered once after its nak", len(got), calls)
	}
	if len(rejected) != 1 || !errors.Is(rejected[0].err, reason.DecisionMissing) || rejected[0].subject != forged.Subject {
		t.Fatalf("OnReject calls = %v; want one %v for %s", rejected, reason.DecisionMissing, forged.Subject)
	}

	// Terminated and acknowledged: nothing pending, nothing to redeliver.
	w.waitSettled("refunds", 2)
}

// consumeUntil runs c.Consume with handle until the handler cancels ctx
// (cancel), and fails the test if it does not within 30 s or Consume
// fails.
func consumeUntil(t *testing.T, ctx context.Context, cancel context.CancelFunc, c *Consumer, handle func(context.Context, *Delivery) error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Consume(ctx, handle) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Consume = %v", err)
		}
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		t.Fatal("the handler never finished")
	}
}

// plainConsumer is a consumer of the test target trusting w's gateway.
func (w *world) plainConsumer(t *testing.T) *Consumer {
	t.Helper()
	cfg := DefaultConsumerConfig()
	cfg.Tenant, cfg.Targets, cfg.TrustedGateways = testTenant, []string{testTarget}, []string{w.gwSign.PublicKey()}
	c, err := NewConsumer(w.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConsumeMissingStream(t *testing.T) {
	w := newWorld(t)
	c := w.plainConsumer(t)
	err := c.Consume(ctxT(t), func(context.Context, *Delivery) error { return nil })
	if !errors.Is(err, ErrStream) {
		t.Fatalf("Consume(no stream) = %v; want %v", err, ErrStream)
	}
}

// TestConsumeEndedBeforeItStarts: a Consume whose context is cancelled while
// the consumer is still being created returns nil, as one that ends
// later does: the caller stopped it, nothing failed.
func TestConsumeEndedBeforeItStarts(t *testing.T) {
	w := newWorld(t)
	c := w.plainConsumer(t)
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	if err := c.Consume(ctx, func(context.Context, *Delivery) error { return nil }); err != nil {
		t.Fatalf("Consume(ended context) = %v; want nil", err)
	}
}

func TestConsumerConfigValidate(t *testing.T) {
	w := newWorld(t)
	good := func() ConsumerConfig {
		c := DefaultConsumerConfig()
		c.Tenant, c.Targets, c.TrustedGateways = testTenant, []string{testTarget}, []string{w.gwSign.PublicKey()}
		return c
	}
	cases := []struct {
		name string
		edit func(*ConsumerConfig)
	}{
		{"no_tenant", func(c *ConsumerConfig) { c.Tenant = "" }},
		{"wildcard_target", func(c *ConsumerConfig) { c.Targets = []string{"refunds.>"} }},
		{"no_targets", func(c *ConsumerConfig) { c.Targets = nil }},
		{"no_gateways", func(c *ConsumerConfig) { c.TrustedGateways = nil }},
		{"issuer_as_gateway", func(c *ConsumerConfig) { c.TrustedGateways = []string{mustPubKey(t, w.issuer)} }},
		// nkeys' base32 decoding skips line breaks; a key with one would
		// be trusted and then match no token's iss.
		{"gateway_key_line_break", func(c *ConsumerConfig) {
			k := w.gwSign.PublicKey()
			c.TrustedGateways = []string{k[:20] + "\n" + k[20:]}
		}},
		{"negative_skew", func(c *ConsumerConfig) { c.Skew = -time.Second }},
		{"negative_max_tokens", func(c *ConsumerConfig) { c.MaxTokens = -1 }},
		{"negative_concurrency", func(c *ConsumerConfig) { c.Concurrency = -1 }},
		{"concurrency_past_max", func(c *ConsumerConfig) { c.Concurrency = MaxConcurrency + 1 }},
		{"in_progress_not_under_ack_wait", func(c *ConsumerConfig) { c.AckWait, c.InProgress = time.Second, time.Second }},
		{"agent_key_as_curve", func(c *ConsumerConfig) { c.Curve = mustKey(t, identity.NewAgent) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.edit(&cfg)
			if _, err := NewConsumer(w.js, cfg); !errors.Is(err, ErrConfig) {
				t.Fatalf("NewConsumer(%s) = %v; want %v", tc.name, err, ErrConfig)
			}
		})
	}
	if _, err := NewConsumer(w.js, good()); err != nil {
		t.Fatalf("NewConsumer(good) = %v", err)
	}
	// The Responder answers from the consumer's curve key, or not at all.
	tool := w.newActor(testTenant, "respond:"+testTarget)
	cfg := good()
	cfg.Curve, cfg.Responder = mustKey(t, identity.NewCurve), w.agent(tool)
	if _, err := NewConsumer(w.js, cfg); !errors.Is(err, ErrConfig) {
		t.Fatalf("NewConsumer(responder with another curve key) = %v; want %v", err, ErrConfig)
	}
	cfg.Curve = tool.curve
	if _, err := NewConsumer(w.js, cfg); err != nil {
		t.Fatalf("NewConsumer(responder with the consumer's curve key) = %v", err)
	}
}

// TestConsumerBindsToAdministeredDurable: with Bind the consumer uses a
// durable an administrator created and never creates one itself.
func TestConsumerBindsToAdministeredDurable(t *testing.T) {
	w := newWorld(t)
	w.capStream()
	a := w.newActor(testTenant)
	consumerKey := mustKey(t, identity.NewCurve)
	box, err := identity.NewBox(consumerKey)
	if err != nil {
		t.Fatal(err)
	}
	genuine := forward{w: w, a: a, target: testTarget, plain: []byte(`{"order":"B-2"}`), sealed: true, consumer: box}
	w.publish(genuine.msg())
	cfg := DefaultConsumerConfig()
	cfg.Tenant, cfg.Targets, cfg.Curve = testTenant, []string{testTarget}, consumerKey
	cfg.TrustedGateways, cfg.Durable, cfg.Bind = []string{w.gwSign.PublicKey()}, "admin-made", true
	c, err := NewConsumer(w.js, cfg, WithClock(func() time.Time { return testClock }))
	if err != nil {
		t.Fatal(err)
	}
	// Not created by the administrator yet: binding fails, nothing is created.
	if err := c.Consume(ctxT(t), func(context.Context, *Delivery) error { return nil }); !errors.Is(err, ErrStream) {
		t.Fatalf("Consume without the durable = %v; want ErrStream", err)
	}
	if _, err := w.js.Consumer(context.Background(), StreamCapability, "admin-made"); err == nil {
		t.Fatal("a binding consumer created its durable")
	}
	subj, _ := subjects.Capability(testTenant, testTarget)
	if _, err := w.js.CreateConsumer(context.Background(), StreamCapability, jetstream.ConsumerConfig{
		Durable: "admin-made", FilterSubject: subj, AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	var got *Delivery
	err = c.Consume(ctx, func(_ context.Context, d *Delivery) error { got = d; cancel(); return nil })
	if err != nil || got == nil || string(got.Payload) != `{"order":"B-2"}` {
		t.Fatalf("Consume bound = %v, delivery %v; want the genuine message", err, got)
	}
}

// TestConsumeHandsOverConcurrently: with Concurrency 4 the handler holds
// four deliveries at once, never more, and every delivery is handled
// and acknowledged. The first four handlers wait until all four run, so
// a Consume that handed over one at a time would never get there.
func TestConsumeHandsOverConcurrently(t *testing.T) {
	const n, concurrency = 10, 4
	w := newWorld(t)
	w.capDeliveries(n)
	cfg := DefaultConsumerConfig()
	cfg.Tenant, cfg.Targets, cfg.TrustedGateways = testTenant, []string{testTarget}, []string{w.gwSign.PublicKey()}
	cfg.Durable, cfg.Concurrency = "refunds", concurrency
	c, err := NewConsumer(w.js, cfg, WithClock(func() time.Time { return testClock }))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu          sync.Mutex
		active, top int
		handled     = map[string]bool{}
		full        = make(chan struct{})
	)
	ctx, cancel := context.WithCancel(ctxT(t))
	consumeUntil(t, ctx, cancel, c, func(_ context.Context, d *Delivery) error {
		mu.Lock()
		active++
		top = max(top, active)
		if active == concurrency && len(handled) == 0 {
			close(full)
		}
		mu.Unlock()
		select {
		case <-full:
		case <-time.After(3 * time.Second):
		}
		mu.Lock()
		defer mu.Unlock()
		active--
		handled[string(d.Payload)] = true
		if len(handled) == n {
			cancel()
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if top != concurrency || len(handled) != n {
		t.Errorf("at most %d handlers at once, %d deliveries handled; want %d at once and all %d", top, len(handled), concurrency, n)
	}
	w.waitSettled("refunds", n)
}

// TestConsumeClaimsOneAtATime: with Concurrency above one, deliveries
// are still verified and claimed one at a time, on the consuming
// goroutine in the order they arrive, so a redelivery cannot claim its
// token before the delivery it repeats and have that one terminated as
// a copy. The consumer's clock, read once per claim, sees no two claims
// at once, though the handlers of four run together.
func TestConsumeClaimsOneAtATime(t *testing.T) {
	const n = 8
	w := newWorld(t)
	w.capDeliveries(n)
	var claiming, overlaps atomic.Int32
	clock := func() time.Time {
		if claiming.Add(1) > 1 {
			overlaps.Add(1)
		}
		time.Sleep(5 * time.Millisecond)
		claiming.Add(-1)
		return testClock
	}
	cfg := DefaultConsumerConfig()
	cfg.Tenant, cfg.Targets, cfg.TrustedGateways = testTenant, []string{testTarget}, []string{w.gwSign.PublicKey()}
	cfg.Durable, cfg.Concurrency = "refunds", 4
	var rejected atomic.Int32
	cfg.OnReject = func(string, error) { rejected.Add(1) }
	c, err := NewConsumer(w.js, cfg, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int32
	ctx, cancel := context.WithCancel(ctxT(t))
	consumeUntil(t, ctx, cancel, c, func(context.Context, *Delivery) error {
		time.Sleep(20 * time.Millisecond)
		if handled.Add(1) == n {
			cancel()
		}
		return nil
	})
	if o := overlaps.Load(); o != 0 || rejected.Load() != 0 {
		t.Errorf("%d claims overlapped another, %d deliveries rejected; want none", o, rejected.Load())
	}
	w.waitSettled("refunds", n)
}
