package client

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestApproverHandsBackUnknownKeys: on the shared approval durable, an
// approver that trusts only another gateway key terminates the real
// request for every approver, unless HandBackUnknownKeys: then it hands
// it back, and an approver trusting the gateway is shown it. A request
// the trusted gateway's token proves altered is terminated either way.
func TestApproverHandsBackUnknownKeys(t *testing.T) {
	otherGW, err := identity.NewSigner(mustKey(t, identity.NewGatewayKey))
	if err != nil {
		t.Fatal(err)
	}
	for _, handBack := range []bool{true, false} {
		name := "terminated by default"
		if handBack {
			name = "handed back"
		}
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			w.ingressStream()
			w.approvalStream()
			durable := w.approvalDurable()
			requester := w.newActor(testTenant, "refund:draft")
			const live = "held-message-id-0400"
			w.publishRequest(heldRequest(requester, live))
			altered := heldRequest(requester, "held-message-id-0401")
			w.publish(w.requestMsg(altered, nil, func(b []byte) []byte { return append(b, ' ') }))

			// watch runs an approver until done says so or wait passes.
			watch := func(a *actor, edit func(*ApproverConfig), wait time.Duration, done func(seen []string, rejected []error) bool) (seen []string, rejected []error) {
				ctx, cancel := context.WithTimeout(ctxT(t), wait)
				defer cancel()
				cfg := w.approverConfig(a)
				cfg.Durable, cfg.Bind = durable, true
				cfg.OnReject = func(_ string, err error) {
					if rejected = append(rejected, err); done(seen, rejected) {
						cancel()
					}
				}
				if edit != nil {
					edit(&cfg)
				}
				ap, err := NewApprover(w.nc, w.js, cfg, WithClock(func() time.Time { return testClock }))
				if err != nil {
					t.Fatal(err)
				}
				if err := ap.Watch(ctx, func(_ context.Context, req approval.Request) error {
					if seen = append(seen, req.HeldMessageID); done(seen, rejected) {
						cancel()
					}
					return nil
				}); err != nil {
					t.Fatalf("Watch = %v", err)
				}
				return seen, rejected
			}
			seen, rejected := watch(w.newActor(testTenant, "approve:refunds.*"), func(cfg *ApproverConfig) {
				cfg.TrustedGateways, cfg.HandBackUnknownKeys = []string{otherGW.PublicKey()}, handBack
			}, time.Second, func(_ []string, rejected []error) bool { return len(rejected) == 2 })
			// Both tokens name the gateway this approver does not trust:
			// it cannot tell the altered one apart.
			if len(seen) != 0 || len(rejected) < 2 || !errors.Is(rejected[0], ErrUnknownKey) || reason.Of(rejected[0]) != reason.DecisionInvalid {
				t.Fatalf("approver lacking the key: shown %v, rejected %v; want none shown, both refused decision_token_invalid, marked ErrUnknownKey", seen, rejected)
			}
			ackFloor := func() uint64 {
				info, err := w.js.Consumer(ctxT(t), StreamApproval, durable)
				if err != nil {
					t.Fatal(err)
				}
				return info.CachedInfo().AckFloor.Stream
			}
			if !handBack {
				eventually(t, "the ack floor did not reach 2: not both terminated", func() bool { return ackFloor() == 2 })
				return
			}
			if floor := ackFloor(); floor != 0 {
				t.Fatalf("ack floor %d; want 0: both handed back", floor)
			}
			codesOf := func(rejected []error) []reason.Code {
				codes := make([]reason.Code, len(rejected))
				for i, err := range rejected {
					codes[i] = reason.Of(err)
				}
				return codes
			}
			// With the option too: what the gateway's key proves altered
			// is still terminated.
			seen, rejected = watch(w.newActor(testTenant, "approve:refunds.*"), func(cfg *ApproverConfig) { cfg.HandBackUnknownKeys = true }, 10*time.Second, func(seen []string, rejected []error) bool {
				return len(seen) > 0 && slices.Contains(codesOf(rejected), reason.DecisionBinding)
			})
			codes := codesOf(rejected)
			if !slices.Equal(seen, []string{live}) || !slices.Contains(codes, reason.DecisionBinding) {
				t.Errorf("approver trusting the gateway: shown %v, rejected %v; want %s shown and the altered request refused decision_token_binding", seen, codes, live)
			}
			eventually(t, "the ack floor did not reach 2: the altered request was not terminated", func() bool { return ackFloor() == 2 })
		})
	}
}

// TestApproverEphemeralTerminatesUnknownKeys: HandBackUnknownKeys applies
// to a shared durable only. An approver's ephemeral consumer is its own:
// a request it cannot verify is terminated, not brought back to it
// every two seconds.
func TestApproverEphemeralTerminatesUnknownKeys(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	w.approvalStream()
	w.publishRequest(heldRequest(w.newActor(testTenant, "refund:draft"), "held-message-id-0402"))
	otherGW, err := identity.NewSigner(mustKey(t, identity.NewGatewayKey))
	if err != nil {
		t.Fatal(err)
	}
	cfg := w.approverConfig(w.newActor(testTenant, "approve:refunds.*"))
	cfg.TrustedGateways, cfg.HandBackUnknownKeys = []string{otherGW.PublicKey()}, true
	var rejected atomic.Int32
	cfg.OnReject = func(string, error) { rejected.Add(1) }
	ap, err := NewApprover(w.nc, w.js, cfg, WithClock(func() time.Time { return testClock }))
	if err != nil {
		t.Fatal(err)
	}
	// Handed back, the request would come again after two seconds.
	ctx, cancel := context.WithTimeout(ctxT(t), 3*time.Second)
	defer cancel()
	if err := ap.Watch(ctx, func(context.Context, approval.Request) error {
		t.Error("a request no trusted gateway signed was shown")
		return nil
	}); err != nil {
		t.Fatalf("Watch = %v", err)
	}
	if n := rejected.Load(); n != 1 {
		t.Errorf("the ephemeral approver refused the request %d times; want once: terminated, not handed back", n)
	}
}
