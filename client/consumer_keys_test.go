package client

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects/reason"
)

// consumerCurve is a consumer's curve key pair and its box.
func consumerCurve(t *testing.T) (nkeys.KeyPair, *identity.Box) {
	t.Helper()
	curve := mustKey(t, identity.NewCurve)
	box, err := identity.NewBox(curve)
	if err != nil {
		t.Fatal(err)
	}
	return curve, box
}

// TestConsumerHandsBackUnknownKeys: a reader that shares a durable but
// lacks a key (it trusts another gateway key only, or has no curve key
// for a sealed target) hands the delivery back with HandBackUnknownKeys,
// and a reader with the right keys then handles it. Without the option
// the delivery is terminated for every reader of the durable.
func TestConsumerHandsBackUnknownKeys(t *testing.T) {
	otherGW, err := identity.NewSigner(mustKey(t, identity.NewGatewayKey))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		edit     func(*ConsumerConfig)
		handBack bool
		code     reason.Code
	}{
		{"untrusted gateway handed back", func(c *ConsumerConfig) {
			c.TrustedGateways, c.HandBackUnknownKeys = []string{otherGW.PublicKey()}, true
		}, true, reason.DecisionInvalid},
		{"no curve key handed back", func(c *ConsumerConfig) { c.Curve, c.HandBackUnknownKeys = nil, true }, true, reason.SealBroken},
		{"untrusted gateway terminated by default", func(c *ConsumerConfig) {
			c.TrustedGateways = []string{otherGW.PublicKey()}
		}, false, reason.DecisionInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.capStream()
			curve, box := consumerCurve(t)
			w.publish(forward{w: w, a: w.newActor(testTenant), target: testTarget, plain: []byte(`{"refund":"R-9"}`), sealed: true, consumer: box}.msg())

			lacking := &recorder{}
			c := plainConsumer(t, w, w.js, "shared", lacking, testClock, func(cfg *ConsumerConfig) {
				cfg.Curve, cfg.NakDelay = curve, 100*time.Millisecond
				tc.edit(cfg)
			})
			stop := consumeInBackground(t, c, lacking)
			eventually(t, "the reader lacking a key reported nothing", func() bool { return lacking.rejections(tc.code) > 0 })
			if err := stop(); err != nil {
				t.Fatalf("Consume = %v", err)
			}
			lacking.mu.Lock()
			rj := lacking.rejected[0]
			lacking.mu.Unlock()
			if !errors.Is(rj.err, ErrUnknownKey) {
				t.Fatalf("OnReject got %v; want it marked ErrUnknownKey", rj.err)
			}
			if !tc.handBack {
				// Terminated: settled, nothing left for any reader.
				w.waitSettled("shared", 1)
				return
			}
			info, err := w.js.Consumer(context.Background(), StreamCapability, "shared")
			if err != nil {
				t.Fatal(err)
			}
			if f := info.CachedInfo().AckFloor.Stream; f != 0 {
				t.Fatalf("ack floor %d after the reader lacking a key; want 0: the delivery was settled, not handed back", f)
			}
			right := &recorder{}
			stop = consumeInBackground(t, plainConsumer(t, w, w.js, "shared", right, testClock, func(cfg *ConsumerConfig) { cfg.Curve = curve }), right)
			w.waitSettled("shared", 1)
			if err := stop(); err != nil {
				t.Fatalf("Consume = %v", err)
			}
			right.mu.Lock()
			defer right.mu.Unlock()
			if len(right.calls) != 1 || len(right.rejected) != 0 {
				t.Errorf("the reader with the right keys handled %d, rejected %v; want 1 and none", len(right.calls), right.rejected)
			}
		})
	}
}

// TestConsumerHandBackStillTerminatesForgeries: HandBackUnknownKeys hands
// back only what a key could lift. A delivery that a trusted gateway's
// token proves altered, or whose re-sealed payload is not base64, is
// still terminated.
func TestConsumerHandBackStillTerminatesForgeries(t *testing.T) {
	w := newWorld(t)
	w.capStream()
	curve, box := consumerCurve(t)
	f := forward{w: w, a: w.newActor(testTenant), target: testTarget, plain: []byte(`{"refund":"R-10"}`), sealed: true, consumer: box}
	altered := f.msg()
	altered.Data = bytes.Replace(altered.Data, []byte(`"idem-1"`), []byte(`"idem-2"`), 1)
	w.publish(altered)
	w.publish(editDoc(t, f.msg(), func(d *docFields) { d.Sealed = "not base64!" }))

	r := &recorder{}
	c := plainConsumer(t, w, w.js, "forged", r, testClock, func(cfg *ConsumerConfig) {
		cfg.Curve, cfg.HandBackUnknownKeys, cfg.NakDelay = curve, true, 100*time.Millisecond
	})
	stop := consumeInBackground(t, c, r)
	w.waitSettled("forged", 2)
	if err := stop(); err != nil {
		t.Fatalf("Consume = %v", err)
	}
	if r.rejections(reason.DecisionBinding) != 1 || r.rejections(reason.SealBroken) != 1 || len(r.calls) != 0 {
		t.Errorf("rejections %v, %d handled; want one decision_binding and one seal_broken, terminated, none handled", r.rejected, len(r.calls))
	}
}

// TestConsumerEphemeralTerminatesUnknownKeys: HandBackUnknownKeys applies
// to a durable only. An ephemeral consumer is this process's alone:
// handing back what it cannot verify would only bring it back to the
// same keys, again and again. It is terminated, and reported once.
func TestConsumerEphemeralTerminatesUnknownKeys(t *testing.T) {
	w := newWorld(t)
	w.capStream()
	w.publish(forward{w: w, a: w.newActor(testTenant), target: testTarget, plain: []byte(`{"refund":"R-11"}`)}.msg())
	otherGW, err := identity.NewSigner(mustKey(t, identity.NewGatewayKey))
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	c := plainConsumer(t, w, w.js, "", r, testClock, func(cfg *ConsumerConfig) {
		cfg.TrustedGateways, cfg.HandBackUnknownKeys, cfg.NakDelay = []string{otherGW.PublicKey()}, true, 50*time.Millisecond
	})
	stop := consumeInBackground(t, c, r)
	eventually(t, "the ephemeral consumer reported nothing", func() bool { return r.rejections(reason.DecisionInvalid) > 0 })
	// Handed back, it would come again every 50 ms.
	time.Sleep(time.Second)
	if err := stop(); err != nil {
		t.Fatalf("Consume = %v", err)
	}
	if n := r.rejections(reason.DecisionInvalid); n != 1 {
		t.Errorf("the ephemeral consumer refused the delivery %d times; want once: terminated, not handed back", n)
	}
}
