package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/store/lease"
)

// Per-tenant fairness (consumer.fair_tenants). JetStream delivers a
// consumer's messages in stream order, so with one consumer a tenant that
// floods the ingress stream puts every other tenant behind its backlog.
// With fairness on, each configured tenant has its own consumer per
// partition (filter agentgw.in.<p>.<tenant>.*), i.e. its own queue, and
// every batch takes an equal share from each queue that has messages
// (work-conserving: what one leaves unused the others get). A flood then
// costs the other tenants at most its share of each batch.
//
// The partition's usual consumer stays as the catch-all: it decides
// messages of tenants that are not configured (no issuer is trusted for
// them, so the credential gate denies them untrusted_issuer) and
// those stored before the tenant's consumer existed, and acknowledges
// without a decision everything a tenant consumer owns, so each ingress
// message is still decided exactly once. A tenant consumer starts after
// the last message stored when it was created (its start sequence); the
// catch-all owns everything of that tenant before it.

// tenantConsumer is one configured tenant's queue in one partition.
type tenantConsumer struct {
	tenant string
	cons   jetstream.Consumer
	start  uint64 // first stream sequence it owns
}

// tenantConsumerName names tenant's consumer in partition p.
func tenantConsumerName(c ConsumerConfig, p int, tenant string) string {
	if c.Partitions > 1 {
		return fmt.Sprintf("%s-p%d-t-%s", c.Durable, p, tenant)
	}
	return fmt.Sprintf("%s-t-%s", c.Durable, tenant)
}

// ensureTenantConsumers returns, per partition, a consumer per configured
// tenant, creating missing ones to start after the stream's last
// sequence. An existing one is kept as it is (its start sequence fixed at
// its creation), so instances and restarts agree on who owns what.
func (g *Gateway) ensureTenantConsumers(ctx context.Context) ([][]tenantConsumer, error) {
	cc := g.cfg.Consumer
	if !cc.FairTenants {
		return make([][]tenantConsumer, cc.Partitions), nil
	}
	stream, err := g.js.Stream(ctx, StreamIngress)
	if err != nil {
		return nil, fmt.Errorf("gateway: ingress stream: %w", err)
	}
	tenants := make([]string, 0, len(g.cfg.Tenants))
	for t := range g.cfg.Tenants {
		tenants = append(tenants, t)
	}
	sort.Strings(tenants)
	out := make([][]tenantConsumer, cc.Partitions)
	for p := range cc.Partitions {
		for _, t := range tenants {
			name := tenantConsumerName(cc, p, t)
			c, err := stream.Consumer(ctx, name)
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				info, ierr := stream.Info(ctx)
				if ierr != nil {
					return nil, fmt.Errorf("gateway: ingress stream: %w", ierr)
				}
				cfg := consumerConfig(cc, p)
				cfg.Durable, cfg.Description = name, "agentgw gateway decisions for tenant "+t
				cfg.FilterSubject = fmt.Sprintf("agentgw.in.%d.%s.*", p, t)
				cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, info.State.LastSeq+1
				c, err = stream.CreateConsumer(ctx, cfg)
				if errors.Is(err, jetstream.ErrConsumerExists) {
					c, err = stream.Consumer(ctx, name) // another instance made it first
				}
			}
			if err != nil {
				return nil, fmt.Errorf("gateway: consumer %s: %w", name, err)
			}
			start := c.CachedInfo().Config.OptStartSeq
			out[p] = append(out[p], tenantConsumer{tenant: t, cons: c, start: start})
		}
	}
	return out, nil
}

// isTenantConsumer reports whether name is a tenant consumer's name
// (tenantConsumerName) under the configured durable, of any tenant.
func isTenantConsumer(c ConsumerConfig, name string) bool {
	rest, ok := strings.CutPrefix(name, c.Durable+"-")
	if !ok {
		return false
	}
	if p, after, ok := strings.Cut(rest, "-t-"); ok && after != "" {
		if p == "" {
			return false
		}
		if p[0] == 'p' && len(p) > 1 && strings.Trim(p[1:], "0123456789") == "" {
			return true
		}
	}
	t, ok := strings.CutPrefix(rest, "t-")
	return ok && t != ""
}

// errTenantQueues: the tenant consumers on the server are not those this
// configuration reads, and starting would end a message twice or never.
var errTenantQueues = errors.New("the tenant queues (consumer.fair_tenants) differ from this configuration's")

// checkTenantConsumers runs before ensureTenantConsumers. A tenant
// consumer owns its tenant's messages from its start sequence on: the
// catch-all acknowledges them undecided. So:
//
//   - one this configuration does not read (fair_tenants off, or its
//     tenant removed) is deleted when it holds nothing undecided, and
//     otherwise refuses the start: its messages would end nowhere, and
//     left in place it would hand the catch-all's decisions over again
//     as undecided the day its tenant is read again;
//   - scaled out, while another instance runs, one this configuration
//     reads and the server lacks, or one on the server it does not
//     read, refuses the start: the instances would disagree on who
//     decides a tenant's messages, and a message would be decided by
//     the catch-all of one and the tenant queue of another. Such a
//     change is made with every instance stopped.
func (g *Gateway) checkTenantConsumers(ctx context.Context) error {
	cc := g.cfg.Consumer
	want := map[string]bool{}
	if cc.FairTenants {
		for p := range cc.Partitions {
			for t := range g.cfg.Tenants {
				want[tenantConsumerName(cc, p, t)] = true
			}
		}
	}
	stream, err := g.js.Stream(ctx, StreamIngress)
	if err != nil {
		return fmt.Errorf("gateway: ingress stream: %w", err)
	}
	var stale []string
	have := 0
	names := stream.ConsumerNames(ctx)
	for name := range names.Name() {
		switch {
		case want[name]:
			have++
		case isTenantConsumer(cc, name):
			stale = append(stale, name)
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("gateway: ingress consumers: %w", err)
	}
	sort.Strings(stale)
	if g.scale != nil && (len(stale) > 0 || have < len(want)) {
		lc := g.cfg.leaseConfig()
		kv, err := lease.EnsureBucket(ctx, g.js, lc)
		if err != nil {
			return err
		}
		members, err := lease.Members(ctx, kv)
		if err != nil {
			return err
		}
		others := slices.DeleteFunc(members, func(m string) bool { return m == lc.Instance })
		if len(others) > 0 {
			return fmt.Errorf("gateway: %w while instances %s run: turning fair_tenants on or off, or adding or removing a tenant, is done with every instance stopped (docs/scale-out.md)",
				errTenantQueues, strings.Join(others, ", "))
		}
	}
	for _, name := range stale {
		c, err := stream.Consumer(ctx, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("gateway: consumer %s: %w", name, err)
		}
		info := c.CachedInfo()
		if info.NumPending+uint64(max(0, info.NumAckPending)) > 0 {
			seq, skipped, err := g.skippedByCatchAll(ctx, stream, info)
			if err != nil {
				return err
			}
			if skipped {
				return fmt.Errorf("gateway: %w: consumer %s did not decide ingress message %d, which the catch-all acknowledged as its: start with the configuration that reads it until ingress is drained (docs/performance.md)",
					errTenantQueues, name, seq)
			}
		}
		if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("gateway: delete consumer %s: %w", name, err)
		}
		g.log.Info().Str("consumer", name).Msg("deleted a tenant queue this configuration does not read; it held nothing undecided")
	}
	return nil
}

// skippedByCatchAll reports whether the first message the tenant
// consumer info has not acknowledged (the first of its filter past its
// ack floor) may have been acknowledged undecided by its partition's
// catch-all: the catch-all has delivered that far. Its later messages,
// published while no gateway ran, the catch-all decides itself once the
// tenant consumer is gone.
func (g *Gateway) skippedByCatchAll(ctx context.Context, stream jetstream.Stream, info *jetstream.ConsumerInfo) (uint64, bool, error) {
	filter := info.Config.FilterSubject
	m, err := stream.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(filter))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("gateway: ingress after consumer %s: %w", info.Name, err)
	}
	// agentgw.in.<p>.<tenant>.*: anything else is not a filter this
	// gateway made, and is taken as skipped.
	parts := strings.Split(filter, ".")
	if len(parts) != 5 {
		return m.Sequence, true, nil
	}
	p, err := strconv.Atoi(parts[2])
	if err != nil {
		return m.Sequence, true, nil
	}
	c, err := stream.Consumer(ctx, consumerConfig(g.cfg.Consumer, p).Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, false, nil // no catch-all: nothing acknowledged undecided
	}
	if err != nil {
		return 0, false, fmt.Errorf("gateway: catch-all of partition %d: %w", p, err)
	}
	return m.Sequence, m.Sequence <= c.CachedInfo().Delivered.Stream, nil
}

// fairSource feeds a partition's batches from persistent pulls
// (jetstream Messages): the server pushes each message as soon as it is
// stored, so none waits for a fetch round trip or for a batch to fill.
// With fair_tenants it reads the tenant consumers and the catch-all, an
// equal share each; without, the partition's consumer alone.
type fairSource struct {
	g      *Gateway
	queues []chan jetstream.Msg // one per tenant consumer, the catch-all last
	ready  chan struct{}
	next   int
	per    int // each queue's share of a batch
	// queueOf maps a consumer's name to its queue (yield).
	queueOf map[string]int
	stop    func()
	// round counts batches taken; last is, per queue, the last round
	// it gave a message in (see drain).
	round uint64
	last  []uint64
}

// recentRounds is how many batches back a queue that gave a message
// still counts as active: a tenant sending at a steady low rate stays
// active between its messages while another floods.
const recentRounds = 8

func (g *Gateway) newFairSource(ctx context.Context, ps *partState) (*fairSource, error) {
	batch := g.cfg.Consumer.Batch
	owned := map[string]uint64{}
	for _, tc := range ps.tenants {
		owned[tc.tenant] = tc.start
	}
	f := &fairSource{g: g, ready: make(chan struct{}, 1), queueOf: map[string]int{}}
	var readers []*reader
	var wg sync.WaitGroup
	stopping := make(chan struct{})
	stopAll := func() {
		// Drain, not Stop: what the iterators already hold goes back to
		// the server (the pumps nak it) instead of waiting out ack_wait.
		close(stopping)
		for _, r := range readers {
			r.drain()
		}
		wg.Wait()
		// What was fetched but not taken goes back at once.
		for _, q := range f.queues {
			for {
				select {
				case m := <-q:
					_ = m.Nak()
					continue
				default:
				}
				break
			}
		}
	}
	cons := make([]jetstream.Consumer, 0, len(ps.tenants)+1)
	for _, tc := range ps.tenants {
		cons = append(cons, tc.cons)
	}
	cons = append(cons, ps.cons)
	f.per = max(1, batch/len(cons))
	// jetstream refuses a pull that expires in under a second.
	expiry := pullExpiry(g.cfg.Consumer.FetchWait)
	for i, c := range cons {
		f.queueOf[c.CachedInfo().Name] = i
		r := &reader{c: c, opts: []jetstream.PullMessagesOpt{jetstream.PullMaxMessages(f.per), jetstream.PullExpiry(expiry)}, kick: make(chan struct{}, 1)}
		if err := r.open(); err != nil {
			stopAll()
			return nil, err
		}
		readers = append(readers, r)
		q := make(chan jetstream.Msg, batch)
		f.queues = append(f.queues, q)
		f.last = append(f.last, 0)
		catchAll := i == len(cons)-1
		wg.Go(func() { f.pump(ctx, r, q, catchAll, owned, stopping) })
		wg.Go(func() { f.rescue(ctx, r, q, catchAll, owned, stopping) })
	}
	f.stop = stopAll
	return f, nil
}

// pump moves one consumer's messages into its queue until the source
// stops. An iterator that stops on its own (nats.go stops it on a
// status it takes as terminal, which a message published with a Status
// header can fake) is opened again, and the consumer's pending messages
// are searched for such messages at once (rescue).
func (f *fairSource) pump(ctx context.Context, r *reader, q chan<- jetstream.Msg, catchAll bool, owned map[string]uint64, stopping <-chan struct{}) {
	var warned time.Time
	for {
		m, err := r.current().Next()
		if err != nil {
			select {
			case <-stopping:
				return
			default:
			}
			if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				f.g.log.Warn().Err(err).Msg("ingress consumer: next message")
				time.Sleep(100 * time.Millisecond)
				continue
			}
			r.wake()
			select {
			case <-stopping:
				return
			case <-time.After(time.Second):
			}
			if err := r.open(); err != nil && time.Since(warned) > 30*time.Second {
				warned = time.Now()
				f.g.log.Warn().Err(err).Msg("ingress consumer: reading again")
			}
			continue
		}
		f.deliver(ctx, m, q, catchAll, owned, stopping)
	}
}

// deliver puts m in its queue. The catch-all acks what a tenant
// consumer owns instead. Once the source stops, it goes back to the
// server.
func (f *fairSource) deliver(ctx context.Context, m jetstream.Msg, q chan<- jetstream.Msg, catchAll bool, owned map[string]uint64, stopping <-chan struct{}) {
	if catchAll && ownedElsewhere(m, owned) {
		_ = m.Ack()
		return
	}
	select {
	case q <- m:
	case <-stopping:
		_ = m.Nak()
		return
	case <-ctx.Done():
		_ = m.Nak()
		return
	}
	if h := f.g.hooks; h != nil && h.queued != nil {
		if md, err := m.Metadata(); err == nil {
			h.queued(md.Sequence.Stream)
		}
	}
	select {
	case f.ready <- struct{}{}:
	default:
	}
}

// ownedElsewhere reports whether a tenant consumer decides m.
func ownedElsewhere(m jetstream.Msg, owned map[string]uint64) bool {
	if len(owned) == 0 {
		return false // no tenant consumers: nothing to parse the subject for
	}
	// By the tenant token alone, as the tenant consumer's filter
	// (agentgw.in.<p>.<tenant>.*) matches it: a subject whose agent
	// token is no key is the tenant consumer's too, and must not be
	// decided by both.
	tenant, ok := tenantToken(m.Subject())
	if !ok {
		return false
	}
	start, ok := owned[tenant]
	if !ok {
		return false
	}
	md, err := m.Metadata()
	return err == nil && md.Sequence.Stream >= start
}

// tenantToken is the tenant token of a stored ingress subject,
// agentgw.in.<partition>.<tenant>.<agent>, whatever its other tokens hold.
func tenantToken(subj string) (string, bool) {
	rest, ok := strings.CutPrefix(subj, "agentgw.in.")
	if !ok {
		return "", false
	}
	if _, rest, ok = strings.Cut(rest, "."); !ok {
		return "", false
	}
	tenant, agent, ok := strings.Cut(rest, ".")
	if !ok || tenant == "" || agent == "" || strings.Contains(agent, ".") {
		return "", false
	}
	return tenant, true
}

// take returns the next batch and how many of its messages each queue
// gave (drain). It waits at most wait for a first message, never for
// more.
func (f *fairSource) take(ctx context.Context, batch int, wait time.Duration) ([]jetstream.Msg, []int) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		if msgs, share := f.drain(batch); len(msgs) > 0 {
			return msgs, share
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-timer.C:
			return nil, nil
		case <-f.ready:
		}
	}
}

// drain takes a batch: first an equal share from every queue, then the
// room left from the queues in turn. While more than one queue is active
// (holds messages, or gave some in the last recentRounds batches) each
// gives at most batch / active: a flood then fills a batch alone only
// while nobody else sends, so the batch a quieter tenant's message waits
// behind, and the one it is decided in, hold a fraction of the flood.
func (f *fairSource) drain(batch int) ([]jetstream.Msg, []int) {
	n := len(f.queues)
	share := make([]int, n)
	active := 0
	for k, q := range f.queues {
		if len(q) > 0 || (f.last[k] > 0 && f.round-f.last[k] < recentRounds) {
			active++
		}
	}
	limit := batch
	if active > 1 {
		limit = max(f.per, batch/active)
	}
	var msgs []jetstream.Msg
	for pass := range 2 {
		for k := range n {
			qi := (f.next + k) % n
			q := f.queues[qi]
			quota := f.per
			if pass == 1 {
				quota = limit - share[qi]
			}
		take:
			for range quota {
				if len(msgs) == batch {
					break
				}
				select {
				case m := <-q:
					msgs = append(msgs, m)
					share[qi]++
				default:
					break take
				}
			}
		}
	}
	if len(msgs) > 0 {
		f.round++
		for k, c := range share {
			if c > 0 {
				f.last[k] = f.round
			}
		}
	}
	f.next = (f.next + 1) % n
	return msgs, share
}

// topUp takes, from each queue that gave a waiting batch less than its
// share, what it holds up to that share, and counts it in share. A
// message that arrives while the batch ahead is decided joins the batch
// that waits instead of the one after it: behind a flood, another
// tenant's message waits for one batch, not two; at low rates nothing
// waits for a batch of its own.
func (f *fairSource) topUp(share []int) []jetstream.Msg {
	var msgs []jetstream.Msg
	for k, q := range f.queues {
	take:
		for share[k] < f.per {
			select {
			case m := <-q:
				msgs = append(msgs, m)
				share[k]++
				f.last[k] = f.round
			default:
				break take
			}
		}
	}
	return msgs
}

// yield makes room in a waiting batch for the queues that joined it: a
// batch a queue filled while it was the only one sending keeps, once
// others gave to it (topUp), at most batch / active of that queue's
// messages, its earliest; the rest, already verified, is returned to be
// the next batch, in order, with how many each queue gave to it. So the
// batch a quieter tenant's message is decided in holds the flood's equal
// share, not a whole batch of it. share is updated for what stays.
func (f *fairSource) yield(items []*item, share []int, batch int) (keep, rest []*item, restShare []int) {
	active := 0
	for _, c := range share {
		if c > 0 {
			active++
		}
	}
	if active < 2 {
		return items, nil, nil
	}
	limit := max(f.per, batch/active)
	excess := make([]int, len(share))
	trim := false
	for k, c := range share {
		if c > limit {
			excess[k], trim = c-limit, true
		}
	}
	if !trim {
		return items, nil, nil
	}
	// A queue's latest messages go: walk from the end.
	out := make([]bool, len(items))
	for i := len(items) - 1; i >= 0; i-- {
		k, ok := f.queueOf[items[i].consumer]
		if ok && excess[k] > 0 {
			out[i] = true
			excess[k]--
		}
	}
	restShare = make([]int, len(share))
	keep = items[:0:0]
	for i, it := range items {
		if !out[i] {
			keep = append(keep, it)
			continue
		}
		k := f.queueOf[it.consumer]
		rest = append(rest, it)
		restShare[k]++
		share[k]--
	}
	return keep, rest, restShare
}

// full reports whether every queue gave at least its share.
func (f *fairSource) full(share []int) bool {
	for _, c := range share {
		if c < f.per {
			return false
		}
	}
	return true
}
