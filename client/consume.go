package client

import (
	"context"
	"errors"
	"fmt"

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
// handle for each message until ctx is done or the consumer disappears.
// handle runs on one goroutine, one message at a time, and must settle
// (ack, nak or term) every message itself.
//
// On ctx done the subscription is stopped rather than drained: messages
// buffered but not yet handled are left unacknowledged and come back after
// AckWait, instead of being handed to a handler whose context is already
// cancelled. The message being handled, if any, finishes first.
//
// With bind, the durable named cc.Durable must already exist (created by
// an administrator) and is used as it is: under least-privilege NATS
// permissions a consumer or approver may read its own durable but not
// create or change consumers (a push consumer's deliver subject, or an
// unfiltered create, would escape its permissions).
func consume(ctx context.Context, js jetstream.JetStream, stream string, cc jetstream.ConsumerConfig, bind bool, handle func(context.Context, jetstream.Msg)) error {
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
	cctx, err := cons.Consume(
		func(m jetstream.Msg) { handle(ctx, m) },
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				select {
				case gone <- err:
				default:
				}
			}
		}),
	)
	if err != nil {
		return fmt.Errorf("%w: consume %s: %w", ErrStream, stream, err)
	}
	var result error
	select {
	case <-ctx.Done():
	case err := <-gone:
		result = fmt.Errorf("%w: consumer on %s: %w", ErrStream, stream, err)
	}
	cctx.Stop()
	<-cctx.Closed()
	return result
}
