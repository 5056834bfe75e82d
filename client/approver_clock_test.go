package client

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestApproverBehindHandsBackShortLivedRequest: an approver whose clock
// runs a minute behind the gateway's hands back, not terminates, a live
// request on the shared durable, whose token verifies by a clock up to 5
// minutes ahead: one that verifies a minute ahead, though with an
// approval_ttl of 3 minutes not 5 minutes ahead, is then shown to an
// approver whose clock is right.
func TestApproverBehindHandsBackShortLivedRequest(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	w.approvalStream()
	durable := w.approvalDurable()
	requester := w.newActor(testTenant, "refund:draft")
	behind, right := w.newActor(testTenant, "approve:refunds.*"), w.newActor(testTenant, "approve:refunds.*")
	req := heldRequest(requester, "held-message-id-short")
	req.RequestedAt, req.Deadline = testClock, testClock.Add(3*time.Minute)
	w.publishRequest(req)

	watch := func(a *actor, now time.Time, wait time.Duration) ([]string, []reason.Code) {
		return w.watchDurable(durable, a, now, wait)
	}
	if _, rejected := watch(behind, testClock.Add(-time.Minute), time.Second); len(rejected) == 0 {
		t.Error("the approver a minute behind was shown the request, or neither showed nor handed it back")
	}
	seen, _ := watch(right, testClock, 5*time.Second)
	if !slices.Equal(seen, []string{req.HeldMessageID}) {
		t.Errorf("approver on time shown %v; want %s, handed back by the approver a minute behind", seen, req.HeldMessageID)
	}
}

// TestRebuiltExpiredRequestConsumed: a request rebuilt after its hold
// ended (docs/wire.md, "Approvals": its token issued at the rebuild,
// after the deadline, for a second) is checked, past its deadline, as of
// when the gateway decided it (Agentgw-Decided-At), and consumed, not
// handed back on the durable every two seconds for as long as the stream
// keeps it.
func TestRebuiltExpiredRequestConsumed(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	w.approvalStream()
	durable := w.approvalDurable()
	requester := w.newActor(testTenant, "refund:draft")
	approver := w.newActor(testTenant, "approve:refunds.*")
	req := heldRequest(requester, "held-message-id-rebuilt")
	req.RequestedAt = testClock.Add(-40 * time.Minute)
	req.Deadline = testClock.Add(-30 * time.Minute)
	rebuiltAt := req.Deadline.Add(300 * time.Second)
	w.publish(w.requestMsg(req, func(c *decision.Claims) {
		c.IssuedAt, c.Expires = rebuiltAt, rebuiltAt.Add(time.Second)
	}, nil))

	cfg := w.approverConfig(approver)
	cfg.Durable, cfg.Bind = durable, true
	rejects := 0
	cfg.OnReject = func(string, error) { rejects++ }
	ap, err := NewApprover(w.nc, w.js, cfg, WithClock(func() time.Time { return testClock })) // 30 min past the deadline
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctxT(t), 7*time.Second)
	defer cancel()
	if err := ap.Watch(ctx, func(context.Context, approval.Request) error {
		t.Error("an expired request was shown")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cons, _ := w.js.Consumer(ctxT(t), StreamApproval, durable)
	ci, _ := cons.Info(ctxT(t))
	if rejects > 1 || ci.NumRedelivered > 0 || ci.NumAckPending+int(ci.NumPending) > 0 {
		t.Errorf("expired, gateway-signed request: handed back %d times in 7 s (redelivered %d, still pending %d); want it acknowledged (30 min past its deadline) or terminated once",
			rejects, ci.NumRedelivered, ci.NumAckPending+int(ci.NumPending))
	}
}
