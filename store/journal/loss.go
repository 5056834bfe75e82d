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
// refuses what may have been decided before it. "Within the age limit"
// below is the shorter of the writer's MaxAge and the stream's, less a
// margin (keeps). A writer notices
//
//   - in Append, when its own last message is gone from the partition's
//     subject, stored within the age limit;
//   - in Claim, which reads the subject's last message, then the
//     stream, then appends its fence checked against that message: when
//     the stream holds no message although its last one was stored
//     within the age limit (a purge before the stream was read); when
//     the subject's last message is gone on the next attempt (a purge
//     after the read fails the fence's check); and, on a subject that
//     was empty, whose fence passes its check whatever the stream lost,
//     when after the fence every message the stream held at the read is
//     gone, the last stored within the age limit.
//
// So the first append after a whole purge is made by a writer that has
// marked it, except in the last case, whose marker follows the fence by
// a round trip: a rebuild of another partition in that moment can miss
// it. A marker ages out with the records: by then nothing decided before
// it can be fresh. Not noticed: a purge that leaves some of the
// stream's messages (nats stream purge --keep, --seq or --subject) and
// spares the last message of each live writer's partition (a live writer
// notices at its next append a purge that took its last message), and
// records a server lost in a crash with the stream at one replica.

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

// keeps is how long a message is certainly kept by a stream whose age
// limit is maxAge: less what the clocks of writers and servers and the
// server's expiry timer may take (half of it, at most a minute).
func keeps(maxAge time.Duration) time.Duration {
	return maxAge - min(maxAge/2, time.Minute)
}

// checkLoss finds and marks a loss: pt found one earlier and has not
// marked it yet; gone, when set, is when a message of the subject that
// is no longer there was stored (or acknowledged to this writer); or the
// stream holds no message although its last one was stored within the
// age limit. "Within the age limit" uses the shorter of this writer's
// MaxAge and the stream's, so a deployment that shortens it (a rolling
// change) is not taken for a loss. It returns whether it found one; a
// marker that cannot be stored stays pending in pt, and the error says
// so. It returns the stream's state it judged by.
func (w *Writer) checkLoss(ctx context.Context, p int, pt *part, gone time.Time) (bool, jetstream.StreamState, error) {
	s, kept, err := w.streamState(ctx)
	if err != nil {
		// Judged by this writer's own age limit, a loss is not dropped
		// for a stream that did not answer.
		if !gone.IsZero() && time.Since(gone) < keeps(w.cfg.withDefaults().MaxAge) {
			pt.lost = true
		}
		return pt.lost, s, err
	}
	var why string
	switch {
	case pt.lost:
		why = fmt.Sprintf("a loss of %s found earlier", Subject(p))
	case !gone.IsZero() && time.Since(gone) < kept:
		why = fmt.Sprintf("messages of %s stored at %s were removed before the age limit", Subject(p), gone.UTC().Format(time.RFC3339Nano))
	case s.Msgs == 0 && s.LastSeq > 0 && time.Since(s.LastTime) < kept:
		why = fmt.Sprintf("the stream was emptied: its last message, %d, was stored at %s", s.LastSeq, s.LastTime.UTC().Format(time.RFC3339Nano))
	default:
		return false, s, nil
	}
	return true, s, w.markLoss(ctx, pt, why)
}

// checkFenced finds a purge that landed between a claim's checkLoss,
// which saw the stream as before (its last message before), and its
// fence, on a subject that was empty, so the fence's own check passed:
// every message the stream held then is gone now, the last of them
// stored within the age limit. Its marker follows the fence; a rebuild
// of another partition that read the stream in those few milliseconds
// may miss it.
func (w *Writer) checkFenced(ctx context.Context, pt *part, before jetstream.StreamState) error {
	if before.Msgs == 0 {
		return nil // empty then: a loss checkLoss found, or none
	}
	s, kept, err := w.streamState(ctx)
	if err != nil {
		return err
	}
	if s.FirstSeq <= before.LastSeq || time.Since(before.LastTime) >= kept {
		return nil
	}
	return w.markLoss(ctx, pt, fmt.Sprintf("the stream lost its messages up to %d, the last stored at %s, during a claim", before.LastSeq, before.LastTime.UTC().Format(time.RFC3339Nano)))
}

// streamState returns the stream's state and how long it certainly keeps
// a message: keeps of the shorter of this writer's MaxAge and the
// stream's, so that a deployment shortening it (a rolling change) is not
// taken for a loss. A stream without an age limit (0) keeps messages at
// least as long as the writer's.
func (w *Writer) streamState(ctx context.Context) (jetstream.StreamState, time.Duration, error) {
	st, err := w.getStream(ctx)
	if err != nil {
		return jetstream.StreamState{}, 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return jetstream.StreamState{}, 0, fmt.Errorf("journal: stream %s: %w: %v", Stream, ErrNATS, err)
	}
	maxAge := w.cfg.withDefaults().MaxAge
	if a := info.Config.MaxAge; a > 0 {
		maxAge = min(maxAge, a)
	}
	return info.State, keeps(maxAge), nil
}

// markLoss stores a loss marker; one that cannot be stored stays pending
// in pt (the next Claim stores it first).
func (w *Writer) markLoss(ctx context.Context, pt *part, why string) error {
	pt.lost = true
	if _, err := w.js.PublishMsg(ctx, &nats.Msg{Subject: LossSubject, Data: []byte(why)}, jetstream.WithExpectStream(Stream)); err != nil {
		return fmt.Errorf("journal: loss marker: %w: %v", ErrNATS, err)
	}
	pt.lost = false
	return nil
}
