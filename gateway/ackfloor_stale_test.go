package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/internal/invariant"
)

// staleConsumer answers Info with an earlier answer of the server's: what
// a consumer whose replica of the stream has not caught up with the
// stream leader reports (nothing pending, nothing unacknowledged).
type staleConsumer struct {
	jetstream.Consumer
	info *jetstream.ConsumerInfo
}

func (s staleConsumer) Info(context.Context) (*jetstream.ConsumerInfo, error) {
	return s.info, nil
}

// TestStaleIdleConsumerKeepsUnackedOutcome: in a cluster a consumer may
// read idle from a replica that lags the stream leader, while it
// delivers a message at or below the stream's last sequence. The prune
// floor must not pass that message's outcome while it is unacknowledged:
// here a held request's outcome is pruned, if the floor trusts the
// stale read, between its commit and its acknowledgement, and after a
// crash its redelivery is decided again (denied approval_invalid beside
// the approval request, then released by a grant). The floor holds an
// idle consumer to its ack floor while the leader has a message for it
// past that floor, so the redelivery re-emits the recorded outcome.
func TestStaleIdleConsumerKeepsUnackedOutcome(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true // the failed acknowledgement is logged
	h.start()
	<-h.gw.Ready()
	ctx := context.Background()
	cons, err := h.js.Consumer(ctx, StreamIngress, h.cfg.Consumer.Durable)
	must(t, err)
	idle, err := cons.Info(ctx)
	must(t, err)
	if idle.NumPending != 0 || idle.NumAckPending != 0 {
		t.Fatalf("consumer not idle: %+v", idle)
	}
	pruned := make(chan struct{})
	var once sync.Once
	h.gw.beforeAck = func() error {
		once.Do(func() {
			// The prune loop's step (maintain.go) with the stale read.
			floor, _, ok := h.gw.floorOf(ctx, []jetstream.Consumer{staleConsumer{cons, idle}})
			if ok {
				must(t, h.gw.ledger.PruneOutcomes(floor))
			}
			close(pruned)
		})
		return errors.New("the gateway stops before its acknowledgement")
	}
	seq := h.send(h.heldRequest())
	<-pruned
	h.stop()
	h.start()
	// The redelivery decided (or re-emitted) and acknowledged.
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := cons.Info(ctx)
		must(t, err)
		if info.AckFloor.Stream >= seq && info.NumAckPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingress %d not acknowledged after the restart: %+v", seq, info.AckFloor)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var req approval.Request
	must(t, json.Unmarshal(h.all(StreamApproval)[0].Data, &req))
	if out := h.outputFor(h.grant(req)); out.Header.Get(header.Route) != "allow" {
		t.Errorf("the grant's output: %s (%s); want the held request released once", out.Subject, out.Header.Get(header.Reason))
	}
	r, err := invariant.Wait(ctx, h.js, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("ingress %d: %v (outputs %+v)", seq, err, r.Outputs[seq])
	}
}
