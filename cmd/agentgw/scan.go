package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
)

// scanBound is scan for a tenant user: it binds the pre-created consumer
// durable on stream (it may not create one) and hands fn each message
// once, oldest first. Everything it fetched is handed back (nak) when it
// returns, so a listing consumes nothing; messages another reader holds
// unacknowledged are not seen until they come back. Without follow it
// returns once nothing more is available; with follow it waits for new
// messages until ctx is done.
func scanBound(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, stream, durable string, follow bool, fn func(jetstream.Msg) error) error {
	cons, err := js.Consumer(ctx, stream, durable)
	if err != nil {
		return fmt.Errorf("stream %s, consumer %s: %w", stream, durable, err)
	}
	held := map[uint64]jetstream.Msg{}
	defer func() {
		for _, m := range held {
			_ = m.Nak()
		}
		_ = nc.Flush()
	}()
	for ctx.Err() == nil {
		var batch jetstream.MessageBatch
		if follow {
			batch, err = cons.Fetch(64, jetstream.FetchMaxWait(time.Second))
		} else {
			batch, err = cons.FetchNoWait(64)
		}
		if err != nil {
			return fmt.Errorf("stream %s, consumer %s: %w", stream, durable, err)
		}
		n := 0
		var fnErr error
		// The batch is read to its end even after fn failed: a pull
		// request left open would take back what is handed back below.
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				_ = m.Nak()
				continue
			}
			_, seen := held[md.Sequence.Stream]
			held[md.Sequence.Stream] = m // the latest delivery is the one to hand back
			if seen || fnErr != nil {
				continue
			}
			fnErr = fn(m)
			if errors.Is(fnErr, errConsumed) {
				delete(held, md.Sequence.Stream) // fn acknowledged it: not handed back
				fnErr = nil
			}
		}
		if fnErr != nil {
			return fnErr
		}
		if err := batch.Error(); err != nil && ctx.Err() == nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("stream %s, consumer %s: %w", stream, durable, err)
		}
		if !follow && n == 0 {
			return nil
		}
	}
	return stoppedEarly(ctx, stream, follow)
}

// stoppedEarly is what a read of stream returns when ctx is done before
// its end: nil when it follows the stream (ctx done is how it stops), an
// error wrapping ctx's otherwise, so that a partial read (an interrupt, a
// deadline) is never reported as the whole.
func stoppedEarly(ctx context.Context, stream string, follow bool) error {
	if follow {
		return nil
	}
	return fmt.Errorf("stream %s: the read stopped before its end: %w", stream, ctx.Err())
}

// streamHint says what to do about an error reading stream.
func streamHint(stream string, err error) string {
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return "Stream " + stream + " does not exist on this server: point -s/--server at the gateway's NATS, or start the gateway once ('agentgw serve' creates its streams)."
	case errors.Is(err, client.ErrNoDirectGet):
		return "Stream " + stream + " predates direct gets: start the gateway once ('agentgw serve' updates its streams)."
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders):
		return "No answer from the JetStream API: operators reach it under " + client.OperatorAPIPrefix + " (their account imports it there), users of the gateway's account (the admin) under $JS.API: pass --js-api-prefix to choose."
	}
	return ""
}

// scan hands fn the messages of stream on subjects matching filter,
// stored in the last d (zero: all), oldest first, with direct gets
// (client.ReadRecords: no consumer, nothing left on the server). Without
// follow it returns after the last message stored when it started; with
// follow it waits for new ones until ctx is done. Without follow, an
// interrupt (ctx done) before the end is an error (client.ReadRecords):
// a partial read is never taken for the whole; with follow it ends the
// read.
func scan(ctx context.Context, js jetstream.JetStream, stream, filter string, d time.Duration, follow bool, fn func(*jetstream.RawStreamMsg) error) error {
	q := client.RecordQuery{Stream: stream, Subject: filter, Follow: follow}
	if d > 0 {
		q.Since = time.Now().Add(-d)
	}
	return client.ReadRecords(ctx, js, q, fn)
}

// scanOrdered hands fn the messages of stream that match oc, oldest
// first, through an ordered consumer (no server-side state is left
// behind), for a user that may create consumers (an open server, the
// admin). Without follow it returns after the last message that matched
// when it started; with follow it waits for new ones until ctx is done.
// Without follow, ctx done before the end is an error (stoppedEarly): a
// partial read is never taken for the whole; with follow it ends the
// read.
func scanOrdered(ctx context.Context, js jetstream.JetStream, stream string, oc jetstream.OrderedConsumerConfig, follow bool, fn func(jetstream.Msg) error) error {
	cons, err := js.OrderedConsumer(ctx, stream, oc)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	defer it.Stop()
	if info := cons.CachedInfo(); !follow && info != nil && info.NumPending == 0 {
		return nil
	}
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return stoppedEarly(ctx, stream, follow)
			}
			return fmt.Errorf("stream %s: %w", stream, err)
		}
		if err := fn(m); err != nil {
			return err
		}
		if md, err := m.Metadata(); !follow && err == nil && md.NumPending == 0 {
			return nil
		}
	}
}
