package main

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/internal/natstest"
)

// TestScanStoppedEarlyIsAnError: a read of a stream without follow that
// is interrupted (ctx done) before its end returns an error wrapping the
// context's, never nil: approvals ls would print a partial table and
// exit 0, and approvals answer would not find the request it was asked
// about. With follow, ctx done is how the read stops.
func TestScanStoppedEarlyIsAnError(t *testing.T) {
	srv, js := streams(t)
	nc := natstest.Connect(t, srv)
	bg := context.Background()
	const total = 100 // more than one fetch of scanBound's
	for range total {
		if _, err := js.Publish(bg, "agentgw.approval.tenant_a.payments.send", []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.CreateConsumer(bg, gateway.StreamApproval, jetstream.ConsumerConfig{Durable: "lister", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	reads := map[string]func(ctx context.Context, follow bool, fn func(jetstream.Msg) error) error{
		"ordered": func(ctx context.Context, follow bool, fn func(jetstream.Msg) error) error {
			return scanOrdered(ctx, js, gateway.StreamApproval, jetstream.OrderedConsumerConfig{}, follow, fn)
		},
		"bound": func(ctx context.Context, follow bool, fn func(jetstream.Msg) error) error {
			return scanBound(ctx, nc, js, gateway.StreamApproval, "lister", follow, fn)
		},
	}
	for name, read := range reads {
		for _, follow := range []bool{false, true} {
			ctx, cancel := context.WithCancel(bg)
			n := 0
			err := read(ctx, follow, func(jetstream.Msg) error {
				n++
				cancel() // interrupted after the first message
				return nil
			})
			cancel()
			switch {
			case n == 0:
				t.Errorf("%s, follow %v: no message read", name, follow)
			case !follow && n == total && err == nil:
				// All were read (nats.go may hand over what it holds
				// already after the interrupt): the read was whole.
			case !follow && !errors.Is(err, context.Canceled):
				t.Errorf("%s, interrupted after %d of %d messages: %v; want an error wrapping context.Canceled", name, n, total, err)
			case follow && err != nil:
				t.Errorf("%s, following, stopped: %v; want nil", name, err)
			}
		}
	}
}
