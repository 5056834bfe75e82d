package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names the gateway publishes to. The gateway owns the streams;
// the SDK only reads them.
const (
	StreamCapability = "AGENTGW_CAP"
	StreamApproval   = "AGENTGW_APPROVAL"
)

// ErrStream: the stream or the consumer could not be used (missing
// stream, consumer creation refused, consumer deleted while consuming).
// The cause is wrapped.
var ErrStream = errors.New("client: stream")

// consume creates or updates the pull consumer cc on stream and calls
// handle for each message until ctx is done, the consumer disappears or
// the connection closes for good.
// handle runs on one goroutine, one message at a time, and must settle
// (ack, nak or term) every message itself. pull bounds the messages
// buffered ahead of handle (0: nats.go's default, 500).
//
// On ctx done the subscription is stopped rather than drained: messages
// buffered but not yet handled are left unacknowledged and come back after
// AckWait, instead of being handed to a handler whose context is already
// cancelled. The message being handled, if any, finishes first: consume
// returns once handle has returned, and calls it no more. stopping is
// closed when consume stops, for a handle waiting on something else.
//
// With bind, the durable named cc.Durable must already exist (created by
// an administrator) and is used as it is: under least-privilege NATS
// permissions a consumer or approver may read its own durable but not
// create or change consumers (a push consumer's deliver subject, or an
// unfiltered create, would escape its permissions).
func consume(ctx context.Context, js jetstream.JetStream, stream string, cc jetstream.ConsumerConfig, bind bool, pull int,
	handle func(ctx context.Context, m jetstream.Msg, stopping <-chan struct{})) error {
	var cons jetstream.Consumer
	var err error
	if bind {
		if cc.Durable == "" {
			return fmt.Errorf("%w: binding needs a durable name", ErrConfig)
		}
		cons, err = js.Consumer(ctx, stream, cc.Durable)
	} else {
		cons, err = js.CreateOrUpdateConsumer(ctx, stream, cc)
	}
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil // stopped by the caller while it was being created
		}
		return fmt.Errorf("%w: consumer on %s: %w", ErrStream, stream, err)
	}
	gone := make(chan error, 1)
	// nats.go's Closed reports a stopped subscription whose callback may
	// still run: consume waits for handle itself.
	var (
		mu       sync.Mutex
		stopped  bool
		handling sync.WaitGroup
		stopping = make(chan struct{})
	)
	opts := []jetstream.PullConsumeOpt{jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		// A consumer gone, or the connection closed for good (nats.go
		// then stops the subscription): nothing more will come, and the
		// caller, not this loop, can start again.
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
			errors.Is(err, jetstream.ErrConnectionClosed) {
			select {
			case gone <- err:
			default:
			}
		}
	})}
	if pull > 0 {
		opts = append(opts, jetstream.PullMaxMessages(pull))
	}
	ctx = context.WithValue(ctx, ackWaitKey{}, cmp.Or(cons.CachedInfo().Config.AckWait, defaultAckWait))
	cctx, err := cons.Consume(func(m jetstream.Msg) {
		mu.Lock()
		if stopped {
			mu.Unlock()
			return // left unacknowledged, to come back after AckWait
		}
		handling.Add(1)
		mu.Unlock()
		defer handling.Done()
		handle(ctx, m, stopping)
	}, opts...)
	if err != nil {
		return fmt.Errorf("%w: consume %s: %w", ErrStream, stream, err)
	}
	var result error
	select {
	case <-ctx.Done():
	case err := <-gone:
		result = fmt.Errorf("%w: consumer on %s: %w", ErrStream, stream, err)
	}
	mu.Lock()
	stopped = true
	close(stopping)
	mu.Unlock()
	cctx.Stop()
	<-cctx.Closed()
	handling.Wait()
	return result
}

// minInProgress is the shortest interval between in-progress words.
const minInProgress = 10 * time.Millisecond

// defaultAckWait is JetStream's AckWait for a consumer created without one.
const defaultAckWait = 30 * time.Second

// ackWaitKey keys the bound consumer's AckWait in the context consume
// hands to its callback.
type ackWaitKey struct{}

// keptMsg is a delivery kept in progress (keepAlive) until it is
// settled: its Ack, Nak and Term stop the in-progress word first, so
// that none follows them (one after a NakWithDelay would set its
// redelivery back to a whole AckWait).
type keptMsg struct {
	jetstream.Msg
	stop func()
}

func (m keptMsg) Ack() error { m.stop(); return m.Msg.Ack() }

func (m keptMsg) DoubleAck(ctx context.Context) error { m.stop(); return m.Msg.DoubleAck(ctx) }

func (m keptMsg) Nak() error { m.stop(); return m.Msg.Nak() }

func (m keptMsg) NakWithDelay(d time.Duration) error { m.stop(); return m.Msg.NakWithDelay(d) }

func (m keptMsg) Term() error { m.stop(); return m.Msg.Term() }

func (m keptMsg) TermWithReason(r string) error { m.stop(); return m.Msg.TermWithReason(r) }

// keepAlive tells JetStream that m is still being worked on
// (InProgress) every interval (zero: a third of the bound consumer's
// AckWait; negative: never), from now until the returned message is
// settled or stop is called: a delivery waiting for a handler slot, or
// whose handler runs longer than AckWait, is then not redelivered to
// another instance of the durable, which would hand it to a handler a
// second time (the token record that prevents that is per instance).
func keepAlive(ctx context.Context, m jetstream.Msg, interval time.Duration) (keptMsg, func()) {
	if interval < 0 {
		return keptMsg{Msg: m, stop: func() {}}, func() {}
	}
	if interval == 0 {
		wait, _ := ctx.Value(ackWaitKey{}).(time.Duration)
		if wait <= 0 {
			wait = defaultAckWait
		}
		interval = wait / 3
	}
	interval = max(interval, minInProgress)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			close(done)
			<-finished
		})
	}
	return keptMsg{Msg: m, stop: stop}, stop
}
