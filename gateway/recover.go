package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/subjects"
)

// Recovery of messages in flight (docs/design.md, "Recovery after a
// crash"). When a gateway dies, or a partition's lease moves, the
// messages its consumers had delivered and not acknowledged stay with
// the dead deliveries until ack_wait runs out. Deciding newer messages
// meanwhile would reorder the partition: an exact copy published after
// the crash would be decided first and its original refused as its
// replay, and a message expiring during the wait would be refused as
// expired. So before a partition takes any new delivery it reads its
// consumers' unacknowledged range from the stream by sequence and
// decides, in stream order, every message there without a recorded
// outcome, and re-emits the recorded outputs of those decided before the
// crash (their outputs may not all be stored). Scaled out, a message the
// rebuilt ledger cannot know the fate of, one that may have been
// acknowledged above the floor after its records aged out of the journal,
// is left to its redelivery (readInFlight), and a status-shaped one
// whose acknowledgement by sequence the ledger records (rescue.go) is
// acknowledged again and not re-emitted. Once a recovered
// message's outputs are stored, its dead delivery is acknowledged by
// sequence (deadAck); one whose acknowledgement is lost comes back after
// ack_wait, finds its ledger outcome, has it re-emitted (the outputs'
// streams de-duplicate it) and is acknowledged: nothing is decided
// twice.

// recoverScanLimit bounds the messages read per consumer, in units of
// MaxAckPending: the range above the ack floor is that long only when a
// message stayed unacknowledged while many after it were acknowledged;
// past the limit the rest comes back by redelivery.
const recoverScanLimit = 16

// recoveredMsg is an ingress message read from the stream by sequence,
// not delivered. Its dead delivery is still pending on the consumer that
// delivered it; acknowledging the recovered message acknowledges that
// delivery by sequence (deadAck), so it neither holds a MaxAckPending slot
// nor the ack floor until ack_wait runs out. Should that acknowledgement
// be lost, the redelivery after ack_wait finds the recorded outcome.
type recoveredMsg struct {
	raw  *jetstream.RawStreamMsg
	dead deadAck
	// mixed: its consumer has acknowledged messages above its ack floor
	// (or the scan was cut), perhaps this one.
	mixed bool
}

// deadAck answers a delivery the gateway no longer holds, by its stream
// sequence on the ack subject of the consumer it is pending on. The
// server keys a consumer's pending deliveries by stream sequence and
// takes the delivery sequence from its own record, so the ack subject's
// delivery count and sequence are left 0 (the gateway never learnt them);
// for a sequence no longer pending the acknowledgement is a no-op.
type deadAck struct {
	nc       *nats.Conn
	consumer string
	seq      uint64
	// mark, when set, runs before the acknowledgement is sent: it
	// records it in the ledger (markAckedBySeq).
	mark func()
}

func (d deadAck) ack() error {
	if d.nc == nil || d.consumer == "" {
		return nil
	}
	if d.mark != nil {
		d.mark()
	}
	return d.nc.Publish(fmt.Sprintf("$JS.ACK.%s.%s.0.%d.0.0.0", StreamIngress, d.consumer, d.seq), []byte("+ACK"))
}

func (m recoveredMsg) Metadata() (*jetstream.MsgMetadata, error) {
	// NumDelivered 0: read, not delivered.
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.raw.Sequence}, Timestamp: m.raw.Time, Stream: StreamIngress}, nil
}
func (m recoveredMsg) Data() []byte                    { return m.raw.Data }
func (m recoveredMsg) Headers() nats.Header            { return m.raw.Header }
func (m recoveredMsg) Subject() string                 { return m.raw.Subject }
func (m recoveredMsg) Reply() string                   { return "" }
func (m recoveredMsg) Ack() error                      { return m.dead.ack() }
func (m recoveredMsg) DoubleAck(context.Context) error { return m.Ack() }

// A negative acknowledgement needs the delivery sequence, which only the
// dead delivery had: a recovered message whose outputs failed comes back
// by its redelivery after ack_wait.
func (m recoveredMsg) Nak() error                       { return nil }
func (m recoveredMsg) NakWithDelay(time.Duration) error { return nil }
func (m recoveredMsg) InProgress() error                { return nil }
func (m recoveredMsg) Term() error                      { return nil }
func (m recoveredMsg) TermWithReason(string) error      { return nil }

// inFlight is what a partition's consumers had delivered and not
// acknowledged when the partition starts.
type inFlight struct {
	msgs []jetstream.Msg // in stream order
	// now is their decision time: the partition's last delivery before
	// the start, on the gateway's clock (recoveredNow).
	now time.Time
	// scanned counts the messages read; cut reports a scan stopped at
	// recoverScanLimit.
	scanned int
	cut     bool
	// unknown counts the messages left to their redelivery because the
	// ledger cannot know whether they were decided (unknownFate).
	unknown int
}

// recoveredNow is the decision time of the messages recovered in a
// partition: the last time the server delivered one of its messages
// before the partition started, carried over to the gateway's clock as
// the age the server measured (info.TimeStamp − Delivered.Last: one
// clock, the server's, so skew between the two does not enter), and
// never more than ack_wait back. Every recovered message had been
// delivered by then, and the gateway that received it would have decided
// it then: so no message is judged expired only because the gateway died
// holding it, nor judged at an instant before it reached the gateway.
// Past ack_wait JetStream itself takes a delivery back: a message in
// flight longer than that counts as waiting in the stream, like every
// message published while the gateway was down, and is judged at the
// clock (which also keeps every decision token issued well inside its
// decision_ttl).
func recoveredNow(clock time.Time, infos []*jetstream.ConsumerInfo, ackWait time.Duration) time.Time {
	age := time.Duration(-1)
	for _, info := range infos {
		if info.Delivered.Last == nil {
			continue
		}
		a := max(info.TimeStamp.Sub(*info.Delivered.Last), 0)
		if age < 0 || a < age {
			age = a
		}
	}
	if age < 0 {
		return clock
	}
	return clock.Add(-min(age, ackWait))
}

// journalClockMargin is what unknownFate allows for the clocks that
// stamp ingress messages, journal messages and the replay's start (NATS
// servers' and the gateway's) to disagree: the minute journalWindow
// allows for the same.
const journalClockMargin = time.Minute

// unknownFate reports whether the ledger cannot know the fate of a
// message stored at stored that has no recorded outcome: scaled out, a
// ledger rebuilt from the journal holds every record appended since from
// (partState.journalFrom), and a message is decided, and its records
// appended, only after it is stored. So a message stored after from (less
// the margin) without an outcome was never decided; one stored earlier
// may have been decided, published and acknowledged, its records since
// aged out of the journal. Zero from: the ledger holds every outcome.
func unknownFate(stored, from time.Time) bool {
	return !from.IsZero() && stored.Before(from.Add(journalClockMargin))
}

// readInFlight reads the messages in the unacknowledged range of ps's
// consumers, (ack floor, last delivered]. Every message there is pending
// (delivered, not acknowledged) unless its consumer has acknowledged
// messages above its floor, which shows as more messages read than it has
// pending: a message stuck below them (negatively acknowledged again and
// again) holds the floor. A message without a recorded outcome was never
// decided, so it is decided now, unless it may be one of those
// acknowledged and the ledger cannot know whether it was decided
// (unknownFate): it is left to its redelivery, which an acknowledged
// message never has and a pending one has after ack_wait. One with an
// outcome is re-emitted (below). The catch-all skips what a tenant
// consumer owns (fair_tenants), as it does on delivery.
func (g *Gateway) readInFlight(ctx context.Context, ps *partState) (inFlight, error) {
	var res inFlight
	type src struct {
		c        jetstream.Consumer
		catchAll bool
	}
	srcs := []src{{ps.cons, true}}
	owned := map[string]uint64{}
	for _, tc := range ps.tenants {
		srcs = append(srcs, src{tc.cons, false})
		owned[tc.tenant] = tc.start
	}
	stream, err := g.js.Stream(ctx, StreamIngress)
	if err != nil {
		return res, fmt.Errorf("gateway: ingress stream: %w", err)
	}
	var infos []*jetstream.ConsumerInfo
	seen := map[uint64]bool{}
	for _, s := range srcs {
		info, err := s.c.Info(ctx)
		if err != nil {
			return res, fmt.Errorf("gateway: partition %d consumer info: %w", ps.p, err)
		}
		if info.NumAckPending == 0 {
			continue
		}
		infos = append(infos, info)
		filter := info.Config.FilterSubject
		if filter == "" {
			filter = subjects.PartitionFilter(ps.p)
		}
		limit := recoverScanLimit * max(info.Config.MaxAckPending, 1)
		n, cut := 0, false
		var read []recoveredMsg
		for seq := info.AckFloor.Stream + 1; seq <= info.Delivered.Stream; {
			if n == limit {
				cut = true
				break
			}
			raw, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return res, fmt.Errorf("gateway: partition %d read ingress %d: %w", ps.p, seq, err)
			}
			if raw.Sequence > info.Delivered.Stream {
				break
			}
			seq = raw.Sequence + 1
			n++
			m := recoveredMsg{raw: raw, dead: deadAck{nc: g.nc, consumer: info.Name, seq: raw.Sequence}}
			if statusShaped(raw) {
				// Rescue reads it again while it stays above the ack
				// floor: its acknowledgement is recorded (rescue.go).
				m.dead.mark = g.markAckedBySeq(ps, info.Name, raw)
			}
			if seen[raw.Sequence] || s.catchAll && ownedElsewhere(m, owned) {
				continue
			}
			seen[raw.Sequence] = true
			read = append(read, m)
		}
		// Every message read is still pending unless more were read
		// than the consumer has pending (or the scan stopped short).
		mixed := cut || n > info.NumAckPending
		for _, m := range read {
			m.mixed = mixed
			res.msgs = append(res.msgs, m)
		}
		res.scanned += n
		res.cut = res.cut || cut
	}
	slices.SortFunc(res.msgs, func(a, b jetstream.Msg) int {
		return cmp.Compare(a.(recoveredMsg).raw.Sequence, b.(recoveredMsg).raw.Sequence)
	})
	// A message with a recorded outcome was decided; its outputs may
	// not all be stored (the gateway died between its commit and their
	// PubAcks), so they are re-emitted now rather than after ack_wait.
	// It may also be one acknowledged above the floor, whose outputs are
	// stored: re-emitting them is a no-op only within the outputs'
	// duplicate window, so a message stored longer ago than half of it
	// is left to its redelivery, if any.
	var serverNow time.Time
	for _, info := range infos {
		if info.TimeStamp.After(serverNow) {
			serverNow = info.TimeStamp
		}
	}
	b := ps.ledger.NewBatch()
	defer b.Close()
	res.msgs = slices.DeleteFunc(res.msgs, func(m jetstream.Msg) bool {
		rm := m.(recoveredMsg)
		raw := rm.raw
		_, found, err := b.Outcome(raw.Sequence)
		if err != nil {
			return false
		}
		if found && statusShaped(raw) {
			// Acknowledged by sequence with its outputs stored: nothing
			// to emit; the acknowledgement is sent again in case it was
			// lost.
			if acked, err := g.ackedBySeq(b, rm.dead.consumer, raw); err == nil && acked {
				rm.dead.mark = nil
				_ = rm.dead.ack()
				return true
			}
		}
		if found {
			return serverNow.Sub(raw.Time) >= g.cfg.Streams.DuplicateWindow/2
		}
		if rm.mixed && unknownFate(raw.Time, ps.journalFrom) {
			res.unknown++
			return true
		}
		return false
	})
	res.now = recoveredNow(g.clock(), infos, g.cfg.Consumer.AckWait)
	return res, nil
}

// recoverInFlight decides (or re-emits) the messages ps's consumers had
// in flight when the partition started, in stream order and before any
// new delivery, as of their recovered decision time. Their outputs go through the
// acker like any batch's; there is nothing to acknowledge for them.
func (g *Gateway) recoverInFlight(ctx context.Context, ps *partState, jobs chan<- ackJob) error {
	start := time.Now()
	fl, err := g.readInFlight(ctx, ps)
	if err != nil {
		return err
	}
	if fl.cut {
		g.log.Warn().Int("partition", ps.p).Int("scanned", fl.scanned).
			Msg("unacknowledged range longer than the recovery scan; the rest is decided on redelivery")
	}
	if fl.unknown > 0 {
		g.log.Warn().Int("partition", ps.p).Int("messages", fl.unknown).Time("journal_from", ps.journalFrom).
			Msg("messages above the ack floor stored before what the journal still holds, without an outcome, left to their redelivery: an acknowledged one has none, an unacknowledged one is decided then")
	}
	if len(fl.msgs) == 0 {
		return nil
	}
	batch := max(g.cfg.Consumer.Batch, 1)
	for i := 0; i < len(fl.msgs); i += batch {
		msgs := fl.msgs[i:min(i+batch, len(fl.msgs))]
		if err := g.processBatch(ctx, ps, g.prepareAt(msgs, fl.now), jobs); err != nil {
			return err
		}
		g.stats.Recovered.Add(uint64(len(msgs)))
		g.metrics.Recovered.Add(float64(len(msgs)))
	}
	g.metrics.Recovery.Observe(time.Since(start).Seconds())
	g.log.Info().Int("partition", ps.p).Int("recovered", len(fl.msgs)).Int("scanned", fl.scanned).
		Time("decided_as_of", fl.now).Dur("took", time.Since(start)).
		Msg("decided or re-emitted the messages in flight at the partition's start")
	return nil
}
