package client

import (
	"context"
	"errors"
	"fmt"
	"sync"

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
