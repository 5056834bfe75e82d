package gateway

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/store/journal"
	"github.com/agentgw/agentgw/subjects"
)

// Messages nats.go cannot hand over. nats.go tells a server's status
// message (no more messages, a heartbeat, the consumer deleted) from a
// delivered message by its content alone: no data and a Status header.
// nats-server stores an agent's headers as they were sent, so anyone
// who may publish on an ingress subject can store an empty message with
// a Status header. Delivered, nats.go takes it for a status: it never
// reaches the gateway, which can neither decide nor acknowledge it, so
// it holds a MaxAckPending slot and the ack floor for ever, and a
// "consumer deleted" one also stops the iterator. The gateway reads such
// messages by sequence instead (rescue), as recovery does at a start,
// and decides them like any other: with no body, each is denied.

// reader is one consumer's persistent pull, which pump opens again when
// it stops on its own.
type reader struct {
	c    jetstream.Consumer
	opts []jetstream.PullMessagesOpt
	kick chan struct{} // rescue now, not at the next tick

	mu      sync.Mutex
	it      jetstream.MessagesContext
	stopped bool
}

// open starts a new iterator in place of the current one.
func (r *reader) open() error {
	it, err := r.c.Messages(r.opts...)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		it.Stop()
		return jetstream.ErrMsgIteratorClosed
	}
	r.it = it
	return nil
}

func (r *reader) current() jetstream.MessagesContext {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.it
}

// drain stops the reader for good: what its iterator holds goes back.
func (r *reader) drain() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	if r.it != nil {
		r.it.Drain()
	}
}

// wake asks rescue to look now.
func (r *reader) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// statusShaped reports whether nats.go would take a delivery of m for a
// server status message (jetstream's checkMsg): no data, and a Status
// header.
func statusShaped(m *jetstream.RawStreamMsg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") != ""
}

// rescue looks, every half ack_wait and whenever pump finds its iterator
// stopped, for messages of r's consumer that nats.go cannot hand over:
// pending messages a redelivery did not bring (the consumer counts
// redelivered ones) are read by sequence from the ack floor up, at most
// MaxAckPending of them, and the status-shaped ones are queued as
// messages read by sequence, acknowledged by sequence once decided and
// their outputs stored. That acknowledgement is recorded in the ledger
// first (markAckedBySeq): a message so recorded is not queued again,
// here or after a restart (the range read still holds it while a message
// below keeps the ack floor), and its acknowledgement is sent again at
// each look, should the first have been lost. One queued less than
// ack_wait ago is not queued either; should its decision fail, or its
// outputs not be stored, a later look queues it again.
func (f *fairSource) rescue(ctx context.Context, r *reader, q chan<- jetstream.Msg, catchAll bool, owned map[string]uint64, stopping <-chan struct{}) {
	ackWait := f.g.cfg.Consumer.AckWait
	tick := time.NewTicker(max(ackWait/2, time.Second))
	defer tick.Stop()
	queued := map[uint64]time.Time{}
	defer f.g.metrics.IngressOldest.Forget(r.c.CachedInfo().Name)
	var warned time.Time
	var stream jetstream.Stream // the ingress stream, looked up once
	for {
		kicked := false
		select {
		case <-stopping:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-r.kick:
			kicked = true
		}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		f.rescueOnce(lctx, r, &stream, kicked, queued, &warned, ackWait, func(m jetstream.Msg) { f.deliver(ctx, m, q, catchAll, owned, stopping) })
		cancel()
	}
}

func (f *fairSource) rescueOnce(ctx context.Context, r *reader, stream *jetstream.Stream, kicked bool, queued map[uint64]time.Time, warned *time.Time, ackWait time.Duration, deliver func(jetstream.Msg)) {
	info, err := r.c.Info(ctx)
	if err != nil {
		return
	}
	if *stream == nil {
		if *stream, err = f.g.js.Stream(ctx, StreamIngress); err != nil {
			return
		}
	}
	f.noteOldest(ctx, *stream, info, warned)
	if info.NumRedelivered == 0 && !kicked {
		return
	}
	ps := f.g.partitionOf(info.Name)
	if ps == nil {
		return
	}
	from, to := info.AckFloor.Stream+1, info.Delivered.Stream
	for seq := range queued {
		if seq < from {
			delete(queued, seq)
		}
	}
	filters := info.Config.FilterSubjects
	if info.Config.FilterSubject != "" {
		filters = append(filters, info.Config.FilterSubject)
	}
	// Stream sequences are the whole ingress stream's: other consumers'
	// messages (other tenants', other partitions') sit between this
	// consumer's. So the read jumps to the next message of its filter
	// (the partition's, for a catch-all of several) and counts messages
	// of its own, up to MaxAckPending, as recovery does; past the scan
	// limit the rest waits for the next round.
	filter := info.Config.FilterSubject
	if filter == "" {
		filter = subjects.PartitionFilter(ps.p)
	}
	limit := max(info.Config.MaxAckPending, 1)
	read, mine := 0, 0
	for next := from; next <= to && next > 0 && mine < limit && read < recoverScanLimit*limit; {
		raw, err := (*stream).GetMsg(ctx, next, jetstream.WithGetMsgSubject(filter))
		if err != nil || raw.Sequence > to {
			break
		}
		seq := raw.Sequence
		next, read = seq+1, read+1
		if !matchesAny(filters, raw.Subject) {
			continue
		}
		mine++
		if at, ok := queued[seq]; ok && time.Since(at) < ackWait {
			continue
		}
		if !statusShaped(raw) {
			continue
		}
		dead := deadAck{nc: f.g.nc, consumer: info.Name, seq: seq}
		acked, err := f.g.ackedBySeq(ps.ledger, info.Name, raw)
		if err != nil {
			continue
		}
		if acked {
			// Its outputs are stored: nothing to emit. Pending still if
			// the acknowledgement was lost; a no-op otherwise.
			_ = dead.ack()
			continue
		}
		queued[seq] = time.Now()
		f.g.log.Warn().Uint64("ingress_seq", seq).Str("consumer", info.Name).
			Msg("ingress message nats.go takes for a server status (no data, a Status header): read by sequence and decided")
		dead.mark = f.g.markAckedBySeq(ps, info.Name, raw)
		deliver(recoveredMsg{raw: raw, dead: dead})
	}
}

// oldestWarnEvery spaces the warnings of noteOldest, per consumer.
const oldestWarnEvery = 10 * time.Minute

// noteOldest records the age of the oldest message info's consumer has
// not acknowledged, the first of its filter above its ack floor, as the
// server measures it (agentgw_ingress_oldest_unacked_seconds), and
// warns, at most every oldestWarnEvery, once that is half of
// streams.ingress_max_age: at that age the stream deletes the message,
// ended or not.
func (f *fairSource) noteOldest(ctx context.Context, stream jetstream.Stream, info *jetstream.ConsumerInfo, warned *time.Time) {
	oldest := f.g.metrics.IngressOldest
	if info.NumPending == 0 && info.NumAckPending == 0 {
		oldest.Forget(info.Name)
		return
	}
	var opts []jetstream.GetMsgOpt
	if info.Config.FilterSubject != "" {
		opts = append(opts, jetstream.WithGetMsgSubject(info.Config.FilterSubject))
	}
	raw, err := stream.GetMsg(ctx, info.AckFloor.Stream+1, opts...)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		oldest.Forget(info.Name)
		return
	}
	if err != nil {
		return
	}
	age := max(info.TimeStamp.Sub(raw.Time), 0)
	oldest.Set(info.Name, age)
	if limit := f.g.cfg.Streams.IngressMaxAge; age >= limit/2 && time.Since(*warned) >= oldestWarnEvery {
		*warned = time.Now()
		f.g.log.Warn().Str("consumer", info.Name).Uint64("ingress_seq", raw.Sequence).Dur("age", age).Dur("ingress_max_age", limit).
			Msg("an ingress message has waited half of streams.ingress_max_age without being acknowledged (an output stream full, or its outputs failing): at that age the stream deletes it, ended or not")
	}
}

// ackedMarkerKind is the kind of the single-use ledger marker
// (store.Batch.SetOnce) recording that a status-shaped ingress message,
// read by sequence, had its outputs stored and was acknowledged by
// sequence on a consumer (its id: the consumer's name and the sequence).
// Such a message can stay above the ack floor, in the range rescue and
// recovery read, for as long as a message below it stays pending, and
// its outcome stays in the ledger as long: without the marker it would
// be re-emitted, past streams.duplicate_window stored again. Scaled out,
// the marker is journaled and a partition's next owner has it too, for
// scale_out.journal_max_age: a message held above the floor longer than
// the journal keeps records has lost its journaled outcome as well
// (docs/reliability.md).
const ackedMarkerKind = "acked_by_seq"

func ackedMarkerID(consumer string, seq uint64) string {
	return consumer + "/" + strconv.FormatUint(seq, 10)
}

// ackedMarkerExpiry is when a message stored at stored is gone from the
// ingress stream (streams.ingress_max_age): no read finds it after, so
// its marker may go (Prune drops it a Lookback later).
func (g *Gateway) ackedMarkerExpiry(stored time.Time) time.Time {
	return stored.Add(g.cfg.Streams.IngressMaxAge)
}

// markReader reads single-use markers: a ledger, or the batch of the
// goroutine that holds one (store.Batch.Marked).
type markReader interface {
	Marked(kind, id string, expires time.Time) (bool, error)
}

// ackedBySeq reports whether raw's acknowledgement by sequence on
// consumer is recorded, as r reads the ledger.
func (g *Gateway) ackedBySeq(r markReader, consumer string, raw *jetstream.RawStreamMsg) (bool, error) {
	return r.Marked(ackedMarkerKind, ackedMarkerID(consumer, raw.Sequence), g.ackedMarkerExpiry(raw.Time))
}

// markAckedBySeq returns what deadAck runs before it acknowledges raw on
// consumer: it records the acknowledgement in ps's ledger, synced (and,
// scaled out, journaled). Should that fail, the acknowledgement is sent
// all the same, and the message may be re-emitted after a restart.
func (g *Gateway) markAckedBySeq(ps *partState, consumer string, raw *jetstream.RawStreamMsg) func() {
	return func() {
		if err := g.recordAckedBySeq(ps, consumer, raw); err != nil {
			g.log.Warn().Err(err).Uint64("ingress_seq", raw.Sequence).Str("consumer", consumer).
				Msg("acknowledgement by sequence not recorded in the ledger; after a restart the message's outputs may be re-emitted")
		}
	}
}

// recordAckedBySeq sets the marker in ps's ledger with the expiry
// ackedBySeq asks about, the message's life in the ingress stream.
// Scaled out its journal record expires no later than
// scale_out.journal_max_age from now: the journal keeps nothing longer,
// and refuses a record that would need it to. A later owner, its ledger
// rebuilt from the journal, has the marker that long, and past it
// re-emits the message once and records it anew (docs/reliability.md).
func (g *Gateway) recordAckedBySeq(ps *partState, consumer string, raw *jetstream.RawStreamMsg) error {
	expires := g.ackedMarkerExpiry(raw.Time)
	id := ackedMarkerID(consumer, raw.Sequence)
	b := g.newBatch(ps)
	defer b.Close()
	first, err := b.Batch.SetOnce(ackedMarkerKind, id, expires)
	if err != nil || !first {
		return err
	}
	journaled := expires
	if limit := g.clock().Add(g.cfg.journalMaxAge()); journaled.After(limit) {
		journaled = limit
	}
	b.add(journal.Record{Op: journal.OpMarker, MarkerKind: ackedMarkerKind, ID: id, Expires: journaled})
	if err := b.Commit(); err != nil {
		return err
	}
	if ps.epoch != 0 && g.scale != nil {
		return g.scale.journal.Append(ps.abandon, ps.p, b.recs)
	}
	return nil
}

// partitionOf returns the state of the partition whose consumer (the
// partition's own or a tenant's) is named consumer, nil for none: scaled
// out, that of the tenure this instance holds; a single instance decides
// every partition on its one ledger.
func (g *Gateway) partitionOf(consumer string) *partState {
	cc := g.cfg.Consumer
	for p := range cc.Partitions {
		ours := consumerConfig(cc, p).Durable == consumer
		for t := range g.cfg.Tenants {
			ours = ours || tenantConsumerName(cc, p, t) == consumer
		}
		if !ours {
			continue
		}
		if g.scale != nil {
			g.scale.mu.Lock()
			defer g.scale.mu.Unlock()
			return g.scale.live[p]
		}
		return &partState{p: p, ledger: g.ledger, abandon: context.Background()}
	}
	return nil
}

// matchesAny reports whether subject matches one of the filters (none:
// every subject), with NATS wildcards: '*' one token, '>' the rest.
func matchesAny(filters []string, subject string) bool {
	if len(filters) == 0 {
		return true
	}
	for _, f := range filters {
		if subjects.Matches(f, subject) {
			return true
		}
	}
	return false
}
