package journal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A journal can lose records its age limit did not remove: a purge
// (nats stream purge), the stream deleted and created again. A
// partition's next owner, rebuilding its ledger from what is left, would
// not know what was decided before. The writers that notice store a loss
// marker on LossSubject; the owner reads the last one (LastLoss) and
// refuses what may have been decided before it. A writer notices
//
//   - in Append, when its own claim is gone from the partition's subject
//     sooner than the age limit could have removed it;
//   - in Claim, when the stream holds no message at all although its
//     last one was stored within the age limit (every claim checks,
//     before its fence, so the first writer after a whole purge marks
//     it, and a purge between a claim's read and its fence fails the
//     fence's check and is found on its next attempt).
//
// A marker ages out with the records: by then nothing decided before it
// can be fresh. Not noticed: a purge of one subject, or of part of the
// stream, that took no claim a live writer still relies on, and records
// a server lost in a crash with the stream at one replica.

// LossSubject carries the loss markers. Partition subjects end in a
// number, so it is no partition's.
const LossSubject = SubjectPrefix + "loss"

// LastLoss returns when the last loss marker still in the stream was
// stored (the server's clock), or the zero time when there is none.
func LastLoss(ctx context.Context, js jetstream.JetStream) (time.Time, error) {
	st, err := js.Stream(ctx, Stream)
	if err != nil {
		return time.Time{}, fmt.Errorf("journal: stream %s: %w: %v", Stream, ErrNATS, err)
	}
	m, err := st.GetLastMsgForSubject(ctx, LossSubject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("journal: last message of %s: %w: %v", LossSubject, ErrNATS, err)
	}
	return m.Time, nil
}

// keeps is how long a message is certainly kept: MaxAge less what the
// clocks of writers and servers and the server's expiry timer may take
// (half of it, at most a minute).
func (c Config) keeps() time.Duration {
	c = c.withDefaults()
	return c.MaxAge - min(c.MaxAge/2, time.Minute)
}

// checkLoss stores a loss marker when pt found records lost, or when the
// stream holds no message although its last one was stored less than
// keeps ago. A marker that cannot be stored stays pending in pt.
func (w *Writer) checkLoss(ctx context.Context, p int, pt *part) error {
	why := ""
	if pt.lost {
		why = fmt.Sprintf("the claim on %s was removed before its age limit", Subject(p))
	} else {
		st, err := w.getStream(ctx)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return fmt.Errorf("journal: stream %s: %w: %v", Stream, ErrNATS, err)
		}
		s := info.State
		if s.Msgs == 0 && s.LastSeq > 0 && time.Since(s.LastTime) < w.cfg.keeps() {
			why = fmt.Sprintf("the stream was emptied: its last message, %d, was stored at %s", s.LastSeq, s.LastTime.UTC().Format(time.RFC3339Nano))
		}
	}
	if why == "" {
		return nil
	}
	pt.lost = true
	if _, err := w.js.PublishMsg(ctx, &nats.Msg{Subject: LossSubject, Data: []byte(why)}, jetstream.WithExpectStream(Stream)); err != nil {
		return fmt.Errorf("journal: loss marker: %w: %v", ErrNATS, err)
	}
	pt.lost = false
	return nil
}
