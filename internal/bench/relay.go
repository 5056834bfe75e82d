package bench

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/subjects"
)

// Relay output subjects: on the gateway's capability and denied streams,
// so the relays store into the same streams the gateway does.
const (
	relayOK  = "agentgw.cap.bench.relay"
	relayBad = "agentgw.denied.bench.bad_signature"
)

// relay is a baseline: the gateway's consume loop with the gates taken
// out. It fetches a batch from the ingress stream, (crypto only) verifies
// every agent signature in parallel, republishes each message with a
// Nats-Msg-Id derived from its ingress sequence, waits for every PubAck,
// then acks the batch — the same batch, publish and ack structure as the
// gateway, so the ratio measures the gates and the ledger.
//
// Unlike the gateway it fetches without waiting for a full batch: when
// nothing is pending it waits for one message, then takes what else has
// arrived (see fetch).
type relay struct {
	js      jetstream.JetStream
	cons    jetstream.Consumer
	verify  bool
	batch   int
	workers int
	wait    time.Duration
	keys    sync.Map // agent public key -> ed25519.PublicKey
	batches atomic.Uint64
}

func newRelay(ctx context.Context, nc *nats.Conn, verify bool, batch, workers int) (*relay, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4*batch))
	if err != nil {
		return nil, fmt.Errorf("bench: relay: %w", err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, gateway.StreamIngress, jetstream.ConsumerConfig{
		Durable:       "bench-relay",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxDeliver:    -1,
		MaxAckPending: 4 * batch,
		MaxWaiting:    64,
	})
	if err != nil {
		return nil, fmt.Errorf("bench: relay consumer: %w", err)
	}
	return &relay{js: js, cons: cons, verify: verify, batch: batch, workers: workers, wait: time.Second}, nil
}

func (r *relay) run(ctx context.Context) error {
	for ctx.Err() == nil {
		msgs, err := r.fetch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(msgs) == 0 {
			continue
		}
		if err := r.relayBatch(msgs); err != nil {
			return err
		}
	}
	return nil
}

// fetch takes what is pending, up to a batch; with nothing pending it
// waits at most r.wait for a first message and then takes what else has
// arrived. It never waits for a batch to fill.
func (r *relay) fetch(ctx context.Context) ([]jetstream.Msg, error) {
	msgs, err := drain(r.cons.FetchNoWait(r.batch))
	if err != nil || len(msgs) > 0 {
		return msgs, err
	}
	wctx, cancel := context.WithTimeout(ctx, r.wait)
	defer cancel()
	one, err := drain(r.cons.Fetch(1, jetstream.FetchContext(wctx)))
	if err != nil || len(one) == 0 {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			err = nil
		}
		return nil, err
	}
	more, err := drain(r.cons.FetchNoWait(r.batch - 1))
	return append(one, more...), err
}

func drain(b jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range b.Messages() {
		msgs = append(msgs, m)
	}
	if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return msgs, err
	}
	return msgs, nil
}

func (r *relay) relayBatch(msgs []jetstream.Msg) error {
	ok := make([]bool, len(msgs))
	if r.verify {
		parallel(len(msgs), r.workers, func(i int) { ok[i] = r.verifyOne(msgs[i]) })
	}
	futs := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("bench: relay: metadata: %w", err)
		}
		seq := strconv.FormatUint(md.Sequence.Stream, 10)
		subj := relayOK
		if r.verify && !ok[i] {
			subj = relayBad
		}
		out := &nats.Msg{Subject: subj, Data: m.Data(), Header: nats.Header{
			header.MsgID:      []string{"relay-" + seq},
			header.IngressSeq: []string{seq},
		}}
		if futs[i], err = r.js.PublishMsgAsync(out); err != nil {
			return fmt.Errorf("bench: relay: publish: %w", err)
		}
	}
	for i, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("bench: relay: output of message %d not stored: %w", i, err)
		}
	}
	for _, m := range msgs {
		if err := m.Ack(); err != nil {
			return fmt.Errorf("bench: relay: ack: %w", err)
		}
	}
	r.batches.Add(1)
	return nil
}

// verifyOne checks the agent's signature with the key named by the
// ingress subject: one Ed25519 verify (decoded keys are cached, as the
// gateway caches credentials).
func (r *relay) verifyOne(m jetstream.Msg) bool {
	ref, err := subjects.ParseIngress(m.Subject())
	if err != nil {
		return false
	}
	var pub ed25519.PublicKey
	if k, ok := r.keys.Load(ref.Agent); ok {
		pub = k.(ed25519.PublicKey)
	} else {
		raw, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(ref.Agent))
		if err != nil {
			return false
		}
		pub = ed25519.PublicKey(raw)
		r.keys.Store(ref.Agent, pub)
	}
	return envelope.Verify(pub, m.Data(), m.Headers().Get(header.Signature)) == nil
}

// parallel runs fn(0..n-1) on up to workers goroutines.
func parallel(n, workers int, fn func(int)) {
	if workers <= 1 || n < 4 {
		for i := range n {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	var next sync.Mutex
	i := 0
	for range min(workers, n) {
		wg.Go(func() {
			for {
				next.Lock()
				j := i
				i++
				next.Unlock()
				if j >= n {
					return
				}
				fn(j)
			}
		})
	}
	wg.Wait()
}
