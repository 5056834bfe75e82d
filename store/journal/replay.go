package journal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// replayMaxBytes bounds what an ordered consumer pulls ahead.
var replayMaxBytes = 16 << 20

// idleCheck is how long Replay waits for a message before it asks the
// stream whether the rest has aged out.
var idleCheck = 2 * time.Second

// replayStall is how long Replay waits without a message while the
// stream holds records it has not delivered before it gives up with
// ErrStalled. An ordered consumer created while the stream's leader
// changes has been seen to deliver nothing, ever, without an error:
// the caller retries with a new one rather than waiting forever.
var replayStall = 15 * time.Second

// ErrStalled: the replay's consumer delivered nothing for replayStall
// while the journal held more. It wraps ErrNATS; retrying creates a new
// consumer.
var ErrStalled = fmt.Errorf("%w: replay stalled", ErrNATS)

// Replay calls fn, in journal order, for every record of partition p
// stored at or after since (zero: everything the stream still holds), up
// to the last message present when Replay started; fence records are not
// passed on. It reads with an ordered consumer (ephemeral, no acks,
// resumed after a gap or a lost connection), deleted on return. An error
// from fn stops the replay and is returned wrapped. Errors: ErrCorrupt,
// ErrVersion (the ledger cannot be rebuilt: the partition must not be
// processed), ErrNATS (ErrStalled among them: nothing delivered for
// replayStall while the journal held more; the caller starts over),
// ctx's error.
func Replay(ctx context.Context, js jetstream.JetStream, p int, since time.Time, fn func(Record) error) error {
	subj := Subject(p)
	st, err := js.Stream(ctx, Stream)
	if err != nil {
		return fmt.Errorf("journal: stream %s: %w: %v", Stream, ErrNATS, err)
	}
	last, err := st.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("journal: last message of %s: %w: %v", subj, ErrNATS, err)
	}
	if !since.IsZero() && last.Time.Before(since) {
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}, InactiveThreshold: 30 * time.Second}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("journal: consumer on %s: %w: %v", subj, ErrNATS, err)
	}
	it, err := cons.Messages(jetstream.PullMaxBytes(replayMaxBytes))
	if err != nil {
		return fmt.Errorf("journal: consume %s: %w: %v", subj, ErrNATS, err)
	}
	defer func() {
		it.Stop()
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = st.DeleteConsumer(dctx, info.Name)
			cancel()
		}
	}()
	pass := func(r Record) error {
		if r.Op == opFence {
			return nil
		}
		return fn(r)
	}
	target, delivered := last.Sequence, uint64(0)
	progress := time.Now()
	for {
		nctx, cancel := context.WithTimeout(ctx, idleCheck)
		msg, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("journal: replay %s: %w", subj, ctx.Err())
			}
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
				return fmt.Errorf("journal: replay %s: %w: %v", subj, ErrNATS, err)
			}
			// Nothing came: the rest may have aged out meanwhile.
			cur, err := st.GetLastMsgForSubject(ctx, subj)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("journal: last message of %s: %w: %v", subj, ErrNATS, err)
			}
			if cur.Sequence <= delivered || cur.Time.Before(since) {
				return nil
			}
			if time.Since(progress) >= replayStall {
				return fmt.Errorf("journal: replay %s: %w at stream sequence %d of %d", subj, ErrStalled, delivered, cur.Sequence)
			}
			continue
		}
		progress = time.Now()
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("journal: replay %s: %w: %v", subj, ErrNATS, err)
		}
		if err := decodeMessage(msg.Data(), pass); err != nil {
			return fmt.Errorf("journal: replay %s message %d: %w", subj, md.Sequence.Stream, err)
		}
		delivered = md.Sequence.Stream
		if delivered >= target || md.NumPending == 0 {
			return nil
		}
	}
}
