package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/envelope"
)

// failThenBlock, once armed, holds the first hold lookup until gathered
// (the decider waits in it while the next messages gather in one
// batch), fails the second (its batch comes back as a redelivery),
// blocks the third until release (a bucket call that stalls), then
// passes through.
type failThenBlock struct {
	holdStore
	armed    atomic.Bool
	n        atomic.Int32
	waiting  chan struct{}
	gathered chan struct{}
	blocked  chan struct{}
	release  chan struct{}
	rel      sync.Once
}

func (x *failThenBlock) hold(b *ledgerBatch, id string, seq uint64) (foundHold, bool, error) {
	if x.armed.Load() {
		switch x.n.Add(1) {
		case 1:
			close(x.waiting)
			<-x.gathered
		case 2:
			return foundHold{}, false, errors.New("holds bucket: timeout")
		case 3:
			close(x.blocked)
			<-x.release
		}
	}
	return x.holdStore.hold(b, id, seq)
}

func (x *failThenBlock) open() {
	x.rel.Do(func() {
		select {
		case <-x.gathered:
		default:
			close(x.gathered)
		}
		close(x.release)
	})
}

// TestScaleOutStaleOwnerWritesNoHold: an instance whose batch stalls in a
// call to the holds bucket past its lease's deadline must write nothing
// more to the bucket when the call returns: by then the partition's next
// owner decides the same messages. Here the next owner, judging a
// recovered message as of up to ack_wait back, holds it; the stale batch,
// judging it at its later clock as expired, would retire that hold, and
// the request whose approval request was published would have no hold to
// grant and no expiry to end it. The stale batch's writes are refused
// once its lease is gone, the hold stands, and a grant releases the
// request once.
func TestScaleOutStaleOwnerWritesNoHold(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true
	h.cfg.Consumer.Partitions = 1
	// Longer than the lease takeover under load, as with the defaults
	// (30 s, 15 s): a redelivery before the next owner reads what was in
	// flight would make it judge m at the clock, as expired.
	h.cfg.Consumer.AckWait = 30 * time.Second
	h.opts = append(h.opts, func(g *Gateway) { g.expireEvery = 100 * time.Millisecond })
	var fb *failThenBlock
	old := h.startInstance("old", func(in *instance) {
		fb = &failThenBlock{holdStore: in.gw.holds, waiting: make(chan struct{}), gathered: make(chan struct{}), blocked: make(chan struct{}), release: make(chan struct{})}
		in.gw.holds = fb
	})
	t.Cleanup(fb.open)
	waitFor(t, func() bool { return old.held() == 1 })

	m0 := h.heldRequest()
	// m's last fresh instant is a second before now: the old owner, at
	// its clock, finds it expired when it decides it again; the new
	// owner judges it as of its delivery, when it was fresh.
	back := h.cfg.Limits.Skew + 11*time.Second
	h.clock.Advance(-back)
	m := h.body(func(b *envelope.Builder) {
		b.Capability, b.Target = envelope.ToolCall, "payments.send"
		b.Payload = envelope.Payload{Plain: json.RawMessage(`{"amount_cents":990001,"iban":"DE00123"}`)}
		b.TTL = 10 * time.Second
	})
	h.clock.Advance(back)
	env, err := envelope.Parse(m, envelope.Limits{})
	must(t, err)
	fb.armed.Store(true)
	// A held request first: while the old owner's decider waits in its
	// hold lookup, m0 and m are delivered and gather in the batch after
	// it, so that one batch holds both, whatever the machine's load.
	h.send(h.heldRequest())
	<-fb.waiting
	var acks []jetstream.PubAckFuture
	for _, body := range [][]byte{m0, m} {
		msg := nats.NewMsg(h.ingress(h.agent, "tenant_a"))
		msg.Data = body
		for k, v := range h.signed(h.agent, h.agent.token, body) {
			msg.Header[k] = v
		}
		f, err := h.js.PublishMsgAsync(msg)
		must(t, err)
		acks = append(acks, f)
	}
	var mSeq uint64
	for _, f := range acks {
		mSeq = (<-f.Ok()).Sequence
	}
	cons, err := h.js.Consumer(context.Background(), StreamIngress, h.cfg.Consumer.Durable)
	must(t, err)
	waitFor(t, func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.Delivered.Stream >= mSeq
	})
	close(fb.gathered)
	<-fb.blocked // the old owner decides both again, and stalls

	next := h.startInstance("next")
	waitFor(t, func() bool { return next.held() == 1 })
	out := h.outputFor(mSeq)
	if !strings.HasPrefix(out.Subject, "agentgw.approval.") {
		t.Fatalf("the next owner decided m: %s; want the approval queue", out.Subject)
	}
	var req approval.Request
	must(t, json.Unmarshal(out.Data, &req))

	// The stalled call returns, past the old owner's lease; the lease is
	// given up once the old owner's partition, its batch included, ended.
	fb.open()
	waitFor(t, func() bool { return strings.Contains(h.logs.String(), `"message":"lease given up"`) })
	kv, err := h.js.KeyValue(context.Background(), HoldsBucket)
	must(t, err)
	e, err := kv.Get(context.Background(), holdKey(holdID("tenant_a", env.MessageID)))
	if err != nil || !strings.Contains(string(e.Value()), `"state":"held"`) {
		t.Fatalf("m's hold after the stale batch: %v; want it held still", err)
	}
	if g := h.outputFor(h.grant(req)); !strings.HasPrefix(g.Subject, "agentgw.cap.") {
		t.Fatalf("grant of m: %s; want it released", g.Subject)
	}
	if rel, exp := h.fates(env.MessageID); rel != 1 || exp != 0 {
		t.Fatalf("m released %d times, expired %d times; want released once", rel, exp)
	}
}
