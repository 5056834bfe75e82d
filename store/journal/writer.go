package journal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// epochHeader carries the writer's lease epoch on every journal message.
const epochHeader = "Agentgw-Journal-Epoch"

// headerRoom is what a message keeps free for headers below the
// connection's max payload.
const headerRoom = 8 << 10

// Writer appends records to partition journals. Every append is checked
// against the stream's last sequence on the partition's subject, so once
// a newer owner has claimed a partition, no older writer's record can land
// after its claim. Methods are safe for concurrent use; appends to one
// partition are serialised.
type Writer struct {
	js     jetstream.JetStream
	cfg    Config
	now    func() time.Time
	maxMsg int

	mu     sync.Mutex
	stream jetstream.Stream
	parts  map[int]*part
}

type part struct {
	mu      sync.Mutex
	claimed bool
	epoch   uint64
	// last is the stream sequence of this writer's last message on the
	// partition's subject; 0 when unknown (after a failed publish whose
	// fate is unknown): the next append reads it back first.
	last uint64
	// at is when this writer's last message on the subject (its claim or
	// an append) was acknowledged, by the wall clock: a claim gone from
	// the stream sooner than the age limit removes it was lost.
	at time.Time
	// lost: this writer found records lost and has not stored the loss
	// marker yet; the next Claim stores it first.
	lost bool
}

// Option injects a collaborator.
type Option func(*Writer)

// WithClock replaces time.Now for the retention check of Append.
func WithClock(now func() time.Time) Option { return func(w *Writer) { w.now = now } }

// NewWriter checks c and returns a Writer. It does no I/O; the stream must
// exist (EnsureStream).
func NewWriter(js jetstream.JetStream, c Config, opts ...Option) (*Writer, error) {
	c = c.withDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	w := &Writer{js: js, cfg: c, now: time.Now, parts: map[int]*part{}}
	for _, o := range opts {
		o(w)
	}
	w.maxMsg = c.MaxMessageBytes
	if mp := int(js.Conn().MaxPayload()) - headerRoom; mp > 0 && (w.maxMsg == 0 || w.maxMsg > mp) {
		w.maxMsg = mp
	}
	if w.maxMsg < 1024 {
		return nil, fmt.Errorf("journal: the connection's max payload %d leaves no room for records", js.Conn().MaxPayload())
	}
	return w, nil
}

func (w *Writer) part(p int) *part {
	w.mu.Lock()
	defer w.mu.Unlock()
	pt := w.parts[p]
	if pt == nil {
		pt = &part{}
		w.parts[p] = pt
	}
	return pt
}

func (w *Writer) getStream(ctx context.Context) (jetstream.Stream, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stream != nil {
		return w.stream, nil
	}
	st, err := w.js.Stream(ctx, Stream)
	if err != nil {
		return nil, fmt.Errorf("journal: stream %s: %w: %v", Stream, ErrNATS, err)
	}
	w.stream = st
	return st, nil
}

// Claim makes this writer the partition's journal writer under epoch (the
// lease epoch from package lease, > 0): it appends a fence message checked
// against the subject's last sequence. Afterwards every Append of a writer
// that claimed the partition earlier fails with ErrFenced. A partition
// whose journal already carries a newer epoch is ErrFenced: this caller's
// lease has been superseded. Claim before Replay, so that the replay
// covers every record an earlier owner managed to append.
func (w *Writer) Claim(ctx context.Context, p int, epoch uint64) error {
	subj := Subject(p)
	if epoch == 0 {
		return fmt.Errorf("journal: claim %s with epoch 0: %w", subj, ErrInvalid)
	}
	pt := w.part(p)
	pt.mu.Lock()
	defer pt.mu.Unlock()
	pt.claimed = false
	fence := appendRecord([]byte{formatV1}, encodeRecord(Record{Op: opFence}, epoch))
	var prev uint64      // the subject's last sequence the previous attempt read
	var prevAt time.Time // and when that message was stored
	for attempt := 1; ; attempt++ {
		last, lastEpoch, lastAt, err := w.lastOn(ctx, p)
		if err != nil {
			return err
		}
		// Messages the previous attempt read are gone (a purge between
		// its read and its fence, which then failed its check), or the
		// stream is empty (a purge before this read): checkLoss tells
		// them from the age limit and marks the loss before the fence. A
		// purge after this read fails the fence's check in turn.
		var gone time.Time
		if last < prev {
			gone = prevAt
		}
		prev, prevAt = last, lastAt
		found, before, err := w.checkLoss(ctx, p, pt, gone)
		if err != nil {
			return err
		}
		if lastEpoch > epoch {
			return fmt.Errorf("journal: claim %s with epoch %d: epoch %d has claimed it: %w", subj, epoch, lastEpoch, ErrFenced)
		}
		seq, err := w.publish(ctx, subj, epoch, fence, last)
		if err == nil {
			if last == 0 && !found {
				// An empty subject's fence passes its check whatever
				// the stream lost meanwhile.
				if err := w.checkFenced(ctx, pt, before); err != nil {
					return err
				}
			}
			pt.claimed, pt.epoch, pt.last, pt.at = true, epoch, seq, time.Now()
			return nil
		}
		// Someone appended between the read and the fence: read again.
		if !wrongLast(err) || attempt == 10 {
			return fmt.Errorf("journal: claim %s: %w: %v", subj, ErrNATS, err)
		}
	}
}

// Release forgets the claim on p; later appends fail with ErrNotClaimed
// until the next Claim. Call it when the lease is lost.
func (w *Writer) Release(p int) {
	pt := w.part(p)
	pt.mu.Lock()
	pt.claimed = false
	pt.mu.Unlock()
}

// Append journals recs for partition p and returns once JetStream has
// acknowledged all of them (stored on a majority of the stream's
// replicas), or with an error. Records are packed into as few messages as
// MaxMessageBytes allows and published in order, each checked against the
// subject's last sequence; a record never straddles two messages. After an
// error a prefix of recs (in whole messages) may be in the journal.
//
// Errors: ErrInvalid (nothing was sent), ErrNotClaimed, ErrFenced (stop
// the partition), ErrNATS.
func (w *Writer) Append(ctx context.Context, p int, recs []Record) error {
	subj := Subject(p)
	if len(recs) == 0 {
		return nil
	}
	msgs, err := w.pack(recs)
	if err != nil {
		return err
	}
	pt := w.part(p)
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if !pt.claimed {
		return fmt.Errorf("journal: append to %s: %w", subj, ErrNotClaimed)
	}
	for i, tries := 0, 0; i < len(msgs); tries++ {
		if tries == 10*len(msgs) {
			return fmt.Errorf("journal: append to %s: the sequence check keeps failing: %w", subj, ErrNATS)
		}
		if pt.last == 0 {
			if err := w.resync(ctx, p, pt); err != nil {
				return err
			}
		}
		seq, err := w.publish(ctx, subj, pt.epoch, msgs[i], pt.last)
		switch {
		case err == nil:
			pt.last, pt.at = seq, time.Now()
			i++
		case wrongLast(err):
			// Another writer, the stream's age limit, or a write of ours
			// whose answer was lost: resync tells which.
			pt.last = 0
		default:
			pt.last = 0 // it may or may not have landed
			return fmt.Errorf("journal: append to %s: %w: %v", subj, ErrNATS, err)
		}
	}
	return nil
}

// resync reads the subject's last message: ours (an append whose answer
// was lost) is adopted, a newer epoch fences, anything else means the
// claim is gone: lost, when the age limit cannot have removed it yet,
// and the loss is marked (or left to the next Claim to mark).
func (w *Writer) resync(ctx context.Context, p int, pt *part) error {
	last, epoch, _, err := w.lastOn(ctx, p)
	if err != nil {
		return err
	}
	switch {
	case epoch > pt.epoch:
		pt.claimed = false
		return fmt.Errorf("journal: %s: epoch %d has claimed it, this writer has %d: %w", Subject(p), epoch, pt.epoch, ErrFenced)
	case epoch == pt.epoch && last > 0:
		pt.last = last
		return nil
	default:
		pt.claimed = false
		// A marker that cannot be stored now stays pending: the next
		// Claim stores it first.
		if lost, _, _ := w.checkLoss(ctx, p, pt, pt.at); lost {
			return fmt.Errorf("journal: %s: the claim of epoch %d was removed from the stream before its age limit (purged, or the stream deleted): %w", Subject(p), pt.epoch, ErrNotClaimed)
		}
		return fmt.Errorf("journal: %s: the claim of epoch %d is no longer in the stream: %w", Subject(p), pt.epoch, ErrNotClaimed)
	}
}

// lastOn returns the sequence, epoch and stored time of the last message
// on p's subject, zeros if there is none. It asks the stream leader.
func (w *Writer) lastOn(ctx context.Context, p int) (seq, epoch uint64, at time.Time, err error) {
	st, err := w.getStream(ctx)
	if err != nil {
		return 0, 0, time.Time{}, err
	}
	m, err := st.GetLastMsgForSubject(ctx, Subject(p))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, 0, time.Time{}, nil
	}
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("journal: last message of %s: %w: %v", Subject(p), ErrNATS, err)
	}
	epoch, err = strconv.ParseUint(m.Header.Get(epochHeader), 10, 64)
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("journal: message %d of %s has no epoch: %w", m.Sequence, Subject(p), ErrCorrupt)
	}
	return m.Sequence, epoch, m.Time, nil
}

func (w *Writer) publish(ctx context.Context, subj string, epoch uint64, body []byte, expectLast uint64) (uint64, error) {
	m := &nats.Msg{Subject: subj, Header: nats.Header{epochHeader: []string{strconv.FormatUint(epoch, 10)}}, Data: body}
	ack, err := w.js.PublishMsg(ctx, m, jetstream.WithExpectStream(Stream), jetstream.WithExpectLastSequencePerSubject(expectLast))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// wrongLast reports a failed per-subject sequence check (10071, or 10164
// on replicated streams).
func wrongLast(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// pack validates recs and encodes them into message bodies of at most
// maxMsg bytes.
func (w *Writer) pack(recs []Record) ([][]byte, error) {
	limit := w.now().Add(w.cfg.MaxAge)
	var msgs [][]byte
	cur := []byte{formatV1}
	for i, r := range recs {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("journal: record %d: %w", i, err)
		}
		if e := r.expiry(); e.After(limit) {
			return nil, fmt.Errorf("journal: record %d (%s) must live until %s, beyond the journal's max age %s: %w",
				i, r.Op, e.UTC().Format(time.RFC3339), w.cfg.MaxAge, ErrInvalid)
		}
		body := encodeRecord(r, 0)
		need := binary.PutUvarint(make([]byte, binary.MaxVarintLen64), uint64(len(body))) + len(body)
		if 1+need > w.maxMsg {
			return nil, fmt.Errorf("journal: record %d (%s) is %d bytes, max message %d: %w", i, r.Op, need, w.maxMsg, ErrInvalid)
		}
		if len(cur)+need > w.maxMsg {
			msgs = append(msgs, cur)
			cur = []byte{formatV1}
		}
		cur = appendRecord(cur, body)
	}
	return append(msgs, cur), nil
}
