package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestWaitReportsUntrustedGateway: an agent whose TrustedGateways miss
// the gateway's key (left out of a rotation) is told why its waits end
// empty: SendAndWait passes the notice and the reply of its request to
// OnReject, and SendAndDecide and Await the notice, each refused
// decision_token_invalid and marked client.ErrUnknownKey, and still
// believes none of them.
func TestWaitReportsUntrustedGateway(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	agent, stopConsumer := answeringRefunds(ctx, t, h, map[string]string{"refund_id": "r-1", "status": "drafted"})

	// rejects collects OnReject's errors; the wait ends once want came.
	wait := func(want int) (client.WaitOptions, context.Context, func() []error) {
		wctx, stop := context.WithCancel(ctx)
		errs := make(chan error, 8)
		opt := client.WaitOptions{TrustedGateways: []string{newActor(t).pub}, OnReject: func(err error) {
			errs <- err
			if len(errs) == want {
				stop()
			}
		}}
		return opt, wctx, func() []error {
			stop()
			close(errs)
			var got []error
			for err := range errs {
				got = append(got, err)
			}
			return got
		}
	}
	check := func(what string, got []error, want int) {
		t.Helper()
		if len(got) != want {
			t.Errorf("%s: OnReject called %d times; want %d (%v)", what, len(got), want, got)
		}
		for _, err := range got {
			if !errors.Is(err, client.ErrUnknownKey) || reason.Of(err) != reason.DecisionInvalid {
				t.Errorf("%s: OnReject(%v); want decision_token_invalid marked ErrUnknownKey", what, err)
			}
		}
	}

	// The delivery's notice, then the consumer's reply.
	opt, wctx, rejected := wait(2)
	_, reply, err := agent.SendAndWait(wctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund",
		Sealed: []byte(`{"order_id":"ord_7","amount_cents":700}`)}, opt)
	if !errors.Is(err, client.ErrNoReply) || reply != nil {
		t.Errorf("SendAndWait trusting another gateway = %v, %v; want ErrNoReply", reply, err)
	}
	check("SendAndWait", rejected(), 2)

	opt, wctx, rejected = wait(1)
	_, d, err := agent.SendAndDecide(wctx, client.Request{Capability: envelope.Read, Target: "kb.search",
		Plain: json.RawMessage(`{"q":"x"}`)}, opt)
	if !errors.Is(err, client.ErrNoDecision) || d != nil {
		t.Errorf("SendAndDecide trusting another gateway = %+v, %v; want ErrNoDecision", d, err)
	}
	check("SendAndDecide", rejected(), 1)

	opt, wctx, rejected = wait(1)
	watch, err := agent.WatchDecisions(opt)
	must(t, err)
	defer func() { _ = watch.Close() }()
	rc, err := agent.Send(ctx, client.Request{Capability: envelope.Read, Target: "kb.search", Plain: json.RawMessage(`{"q":"y"}`)})
	must(t, err)
	if d, err := watch.Await(wctx, rc.MessageID); !errors.Is(err, client.ErrNoDecision) || d != nil {
		t.Errorf("Await trusting another gateway = %+v, %v; want ErrNoDecision", d, err)
	}
	check("Await", rejected(), 1)

	stopConsumer()
	h.stop()
	h.scanSecrets()
}
