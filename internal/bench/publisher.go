package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// publishMaxPending bounds the publisher's PubAcks in flight.
const publishMaxPending = 4096

// sendLog is what the publisher recorded: per corpus index, the publish
// time and the ingress sequence JetStream gave the message.
type sendLog struct {
	at  []int64  // ns since the observer's base: the intended publish time when paced
	seq []uint64 // 0 until acknowledged
	// stored is when the publisher saw each PubAck (ns since base): an
	// upper bound on when the message was stored in the ingress stream.
	stored []int64
	sent   atomic.Int64
	acked  atomic.Int64
	first  int64 // ns since base of the first publish
	done   int64 // ns since base when the last publish call returned
}

func newSendLog(n int) *sendLog {
	return &sendLog{at: make([]int64, n), seq: make([]uint64, n), stored: make([]int64, n)}
}

// publish sends msgs in order on js, at rate messages per second (0: as
// fast as the async window allows), and waits for every PubAck. Send
// times are recorded just before each publish call; when paced they are
// the scheduled times instead, so a publisher that falls behind is
// charged to latency rather than hidden (no coordinated omission).
func publish(ctx context.Context, js jetstream.JetStream, msgs msgSource, rate float64, base time.Time, log *sendLog) error {
	type pending struct {
		i   int
		fut jetstream.PubAckFuture
	}
	futs := make(chan pending, publishMaxPending)
	collected := make(chan error, 1)
	go func() {
		var first error
		for p := range futs {
			select {
			case ack := <-p.fut.Ok():
				switch {
				case ack.Duplicate && first == nil:
					first = fmt.Errorf("bench: message %d was de-duplicated at ingress (stream not fresh?)", p.i)
				case !ack.Duplicate:
					log.seq[p.i] = ack.Sequence
					log.stored[p.i] = int64(time.Since(base))
					log.acked.Add(1)
				}
			case err := <-p.fut.Err():
				if first == nil {
					first = fmt.Errorf("bench: publish %d: %w", p.i, err)
				}
			}
		}
		collected <- first
	}()

	start := time.Now()
	log.first = int64(start.Sub(base))
	var err error
	for i := range msgs.Len() {
		if ctx.Err() != nil {
			err = ctx.Err()
			break
		}
		var at int64
		if rate > 0 {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
			at = int64(due.Sub(base))
		} else {
			at = int64(time.Since(base))
		}
		log.at[i] = at
		m := msgs.At(i)
		var fut jetstream.PubAckFuture
		for {
			fut, err = js.PublishMsgAsync(m, jetstream.WithStallWait(5*time.Second))
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) || ctx.Err() != nil {
				break
			}
		}
		if err != nil {
			err = fmt.Errorf("bench: publish %d: %w", i, err)
			break
		}
		log.sent.Add(1)
		futs <- pending{i, fut}
	}
	log.done = int64(time.Since(base))
	close(futs)
	cerr := <-collected
	return errors.Join(err, cerr)
}
