package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
// messages read by sequence, acknowledged by sequence once decided. One
// acknowledged so is not queued again (the range read still holds it
// while a message below keeps the ack floor); one queued less than
// ack_wait ago is not either; should its decision fail, a later look
// queues it again.
func (f *fairSource) rescue(ctx context.Context, r *reader, q chan<- jetstream.Msg, catchAll bool, owned map[string]uint64, stopping <-chan struct{}) {
	ackWait := f.g.cfg.Consumer.AckWait
	tick := time.NewTicker(max(ackWait/2, time.Second))
	defer tick.Stop()
	queued := map[uint64]time.Time{}
	acked := &ackedSeqs{seqs: map[uint64]bool{}}
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
		f.rescueOnce(lctx, r, kicked, queued, acked, ackWait, func(m jetstream.Msg) { f.deliver(ctx, m, q, catchAll, owned, stopping) })
		cancel()
	}
}

// ackedSeqs are the sequences rescue's messages were acknowledged by;
// the acknowledgements come from the batches' goroutines.
type ackedSeqs struct {
	mu   sync.Mutex
	seqs map[uint64]bool
}

func (a *ackedSeqs) add(seq uint64) {
	a.mu.Lock()
	a.seqs[seq] = true
	a.mu.Unlock()
}

func (a *ackedSeqs) has(seq uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seqs[seq]
}

// forgetBelow drops the sequences under the ack floor.
func (a *ackedSeqs) forgetBelow(floor uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for s := range a.seqs {
		if s < floor {
			delete(a.seqs, s)
		}
	}
}

func (f *fairSource) rescueOnce(ctx context.Context, r *reader, kicked bool, queued map[uint64]time.Time, acked *ackedSeqs, ackWait time.Duration, deliver func(jetstream.Msg)) {
	info, err := r.c.Info(ctx)
	if err != nil || (info.NumRedelivered == 0 && !kicked) {
		return
	}
	from, to := info.AckFloor.Stream+1, info.Delivered.Stream
	for seq := range queued {
		if seq < from {
			delete(queued, seq)
		}
	}
	acked.forgetBelow(from)
	if limit := uint64(max(info.Config.MaxAckPending, 1)); to-from >= limit && to >= from {
		to = from + limit - 1
	}
	stream, err := f.g.js.Stream(ctx, StreamIngress)
	if err != nil {
		return
	}
	filters := info.Config.FilterSubjects
	if info.Config.FilterSubject != "" {
		filters = append(filters, info.Config.FilterSubject)
	}
	for seq := from; seq <= to && seq > 0; seq++ {
		if at, ok := queued[seq]; (ok && time.Since(at) < ackWait) || acked.has(seq) {
			continue
		}
		raw, err := stream.GetMsg(ctx, seq)
		if err != nil || !statusShaped(raw) || !matchesAny(filters, raw.Subject) {
			continue
		}
		queued[seq] = time.Now()
		f.g.log.Warn().Uint64("ingress_seq", seq).Str("consumer", info.Name).
			Msg("ingress message nats.go takes for a server status (no data, a Status header): read by sequence and decided")
		deliver(recoveredMsg{raw: raw, dead: deadAck{nc: f.g.nc, consumer: info.Name, seq: seq, acked: acked.add}})
	}
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
