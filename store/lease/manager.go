package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Errors returned by the package.
var (
	// ErrRunning: Run was called twice on one Manager.
	ErrRunning = errors.New("lease: manager already ran")
	// ErrBucketMismatch: the bucket exists with another TTL than this
	// instance's Config.TTL. The timing argument needs every holder's
	// TTL to equal the server's max age, so the manager refuses to run.
	ErrBucketMismatch = errors.New("lease: bucket configuration differs")
	// ErrNATS: JetStream refused or did not answer a request while
	// setting up the bucket.
	ErrNATS = errors.New("lease: nats")
)

// Manager runs the lease protocol for one gateway instance. Create it with
// New and run it once with Run; Held and Valid are safe for concurrent use
// at any time.
type Manager struct {
	js  jetstream.JetStream
	cfg Config
	log zerolog.Logger

	running atomic.Bool

	mu     sync.Mutex
	leases map[int]*Lease // held, by partition
}

// Option injects a collaborator.
type Option func(*Manager)

// WithLogger logs acquisitions, losses and releases (never values other
// than owner names and epochs). Default: no logging.
func WithLogger(l zerolog.Logger) Option { return func(m *Manager) { m.log = l } }

// Lease is a snapshot of one held lease.
type Lease struct {
	Partition int
	// Epoch is the KV revision of the Create that took the lease: it grows
	// with every acquisition of any partition, so a later owner of a
	// partition always has a larger epoch than an earlier one.
	Epoch uint64
	// Revision is the key's revision after the last confirmed write.
	Revision uint64
	// Renewed is when the last confirmed write was sent. It carries a
	// monotonic clock reading.
	Renewed time.Time
	// Deadline is Renewed + TTL - Margin: the instance treats the lease
	// as lost from then on unless a renewal succeeds first.
	Deadline time.Time
}

// New checks cfg (after defaults) and returns a Manager. It does no I/O.
func New(js jetstream.JetStream, cfg Config, opts ...Option) (*Manager, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Manager{js: js, cfg: cfg, log: zerolog.Nop(), leases: map[int]*Lease{}}
	for _, o := range opts {
		o(m)
	}
	m.log = m.log.With().Str("component", "lease").Str("instance", cfg.Instance).Logger()
	return m, nil
}

// Config returns the configuration in use, defaults applied.
func (m *Manager) Config() Config { return m.cfg }

// Held returns the leases this instance holds, by partition.
func (m *Manager) Held() []Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Lease, 0, len(m.leases))
	for _, l := range m.leases {
		out = append(out, *l)
	}
	slices.SortFunc(out, func(a, b Lease) int { return a.Partition - b.Partition })
	return out
}

// Valid reports whether partition p is held and its local deadline has not
// passed, and under which epoch. A caller about to make a partition's
// work visible (publish, ack) checks it last; a false answer means stop.
func (m *Manager) Valid(p int) (epoch uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.leases[p]
	if !ok || !time.Now().Before(l.Deadline) {
		return 0, false
	}
	return l.Epoch, true
}

// Until returns the local deadline of partition p's lease when it is held
// under epoch and the deadline has not passed: a write that must land
// while the lease is this instance's is sent before it, or not at all.
func (m *Manager) Until(p int, epoch uint64) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.leases[p]
	if !ok || l.Epoch != epoch || !time.Now().Before(l.Deadline) {
		return time.Time{}, false
	}
	return l.Deadline, true
}

// EnsureBucket creates the lease bucket (max age TTL, history 1, file
// storage, expiry markers so watchers see a lease run out) or opens the
// existing one. An existing bucket with another TTL is ErrBucketMismatch:
// change the TTL offline (docs/scale-out.md).
func EnsureBucket(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.KeyValue, error) {
	cfg = cfg.withDefaults()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         cfg.Bucket,
		Description:    "agentgw: partition leases and member heartbeats",
		History:        1,
		TTL:            cfg.TTL,
		Storage:        jetstream.FileStorage,
		Replicas:       cfg.Replicas,
		LimitMarkerTTL: cfg.TTL,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, cfg.Bucket)
		if err != nil {
			return nil, fmt.Errorf("lease: open bucket %s: %w: %v", cfg.Bucket, ErrNATS, err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("lease: bucket %s status: %w: %v", cfg.Bucket, ErrNATS, err)
		}
		if st.TTL() != cfg.TTL || st.History() != 1 {
			return nil, fmt.Errorf("lease: bucket %s has ttl %s and history %d, want ttl %s and history 1: %w",
				cfg.Bucket, st.TTL(), st.History(), cfg.TTL, ErrBucketMismatch)
		}
		return kv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lease: create bucket %s: %w: %v", cfg.Bucket, ErrNATS, err)
	}
	return kv, nil
}

// Run takes part in the protocol until ctx ends, then releases every
// lease it holds (onLose first, then a revision-checked Delete) and its
// member key, and returns nil. It returns an error only if the bucket
// cannot be set up.
//
// onAcquire(p, epoch) is called when this instance takes partition p;
// onLose(p) when it gives p up for any reason: lost (a renewal found
// another owner), expired (no renewal succeeded before the local
// deadline, e.g. NATS unreachable), shed (balancing) or shutdown. For one
// partition the calls alternate, starting with onAcquire, and never
// overlap. They run on that partition's own goroutine, so they may block
// that partition only: onAcquire must return promptly (start the
// partition's work, do not do it; the lease is not renewed while it runs),
// and onLose must return only once the partition's processing has
// stopped, within Margin (the package documentation says why).
func (m *Manager) Run(ctx context.Context, onAcquire func(p int, epoch uint64), onLose func(p int)) error {
	if !m.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	kv, err := EnsureBucket(ctx, m.js, m.cfg)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("lease: watch %s: %w: %v", m.cfg.Bucket, ErrNATS, err)
	}
	defer func() { _ = w.Stop() }()
	r := &run{
		m: m, kv: kv, cfg: m.cfg, log: m.log,
		onAcquire: onAcquire, onLose: onLose,
		view:    newView(m.cfg.TTL),
		holders: map[int]*holder{},
		exits:   make(chan exit, m.cfg.Partitions),
		member:  value{Owner: m.cfg.Instance, Token: newToken()},
		offset:  offsetFor(m.cfg.Instance, m.cfg.Partitions),
	}
	r.loop(ctx, w.Updates())
	return nil
}

// offsetFor spreads where instances start looking for free partitions, so
// that instances starting together mostly try different keys.
func offsetFor(instance string, partitions int) int {
	var h uint32 = 2166136261
	for i := 0; i < len(instance); i++ {
		h = (h ^ uint32(instance[i])) * 16777619
	}
	return int(h % uint32(partitions))
}

// run is the state of one Run: owned by the loop goroutine, except what
// holders share through Manager.mu.
type run struct {
	m         *Manager
	kv        jetstream.KeyValue
	cfg       Config
	log       zerolog.Logger
	onAcquire func(int, uint64)
	onLose    func(int)

	view    *view
	holders map[int]*holder // one goroutine per held (or releasing) partition
	exits   chan exit
	wg      sync.WaitGroup
	member  value
	offset  int
}

type exit struct {
	p   int
	why why
}

func (r *run) loop(ctx context.Context, updates <-chan jetstream.KeyValueEntry) {
	tick := time.NewTicker(r.cfg.Renew)
	defer tick.Stop()
	r.heartbeat(ctx)
	ready := false // the watcher has delivered the bucket's current keys
	for {
		select {
		case <-ctx.Done():
			r.shutdown(ctx)
			return
		case e, ok := <-updates:
			if !ok {
				updates = nil // the watcher ended with ctx; ticks carry on
				continue
			}
			if e == nil {
				ready = true
				r.balance(ctx)
				continue
			}
			now := time.Now()
			_, member := parseMemberKey(e.Key())
			newcomer := member && !r.view.live(e.Key(), now)
			r.view.apply(e, now)
			// A key that went away may be ours to take; a new member may
			// lower our quota. Renewals need no action.
			if ready && (e.Operation() != jetstream.KeyValuePut || newcomer) {
				r.balance(ctx)
			}
		case <-tick.C:
			r.heartbeat(ctx)
			ready = true // do not wait forever for a watcher that cannot start
			r.balance(ctx)
		case x := <-r.exits:
			delete(r.holders, x.p)
			if ready {
				r.balance(ctx)
			}
		}
	}
}

// heartbeat rewrites this instance's member key.
func (r *run) heartbeat(ctx context.Context) {
	hctx, cancel := context.WithTimeout(ctx, r.cfg.Renew)
	defer cancel()
	if _, err := r.kv.Put(hctx, memberKey(r.cfg.Instance), r.member.encode()); err != nil && ctx.Err() == nil {
		r.log.Debug().Err(err).Msg("member heartbeat failed")
	}
}

// balance sheds leases above the quota and tries to take free partitions
// up to it.
func (r *run) balance(ctx context.Context) {
	now := time.Now()
	members := r.view.members(r.cfg.Instance, now)
	q := quota(r.cfg.Partitions, members, r.cfg.Instance)
	var active []int
	for p, h := range r.holders {
		if !h.releasing {
			active = append(active, p)
		}
	}
	if len(active) > q {
		slices.Sort(active)
		for _, p := range active[q:] {
			h := r.holders[p]
			h.releasing = true
			close(h.release)
			r.log.Info().Int("partition", p).Int("quota", q).Int("members", len(members)).Msg("shedding lease")
		}
		return
	}
	held := len(active)
	for i := 0; i < r.cfg.Partitions && held < q; i++ {
		if ctx.Err() != nil {
			return
		}
		p := (r.offset + i) % r.cfg.Partitions
		key := partitionKey(p)
		if _, ok := r.holders[p]; ok || r.view.live(key, now) {
			continue
		}
		ok, err := r.acquire(ctx, p)
		if err != nil {
			// NATS is slow or away: do not block the loop on every key.
			r.log.Debug().Err(err).Int("partition", p).Msg("create lease failed")
			return
		}
		if ok {
			held++
		} else {
			r.view.taken(key, time.Now())
		}
	}
}

// acquire tries to Create partition p's key; on success it starts the
// partition's holder. It reports false, nil when another instance holds p.
func (r *run) acquire(ctx context.Context, p int) (bool, error) {
	h := &holder{p: p, key: partitionKey(p), token: newToken(), release: make(chan struct{})}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.Renew)
	defer cancel()
	// The lease's life is counted from before the request left: the
	// server writes (and starts its TTL) later than this.
	sent := time.Now()
	rev, err := r.kv.Create(cctx, h.key, value{Owner: r.cfg.Instance, Token: h.token}.encode())
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	h.epoch, h.rev, h.renewed = rev, rev, sent
	r.m.mu.Lock()
	r.m.leases[p] = &Lease{Partition: p, Epoch: rev, Revision: rev, Renewed: sent, Deadline: sent.Add(r.cfg.TTL - r.cfg.Margin)}
	r.m.mu.Unlock()
	r.holders[p] = h
	r.log.Info().Int("partition", p).Uint64("epoch", rev).Msg("lease acquired")
	r.wg.Add(1)
	go r.hold(ctx, h)
	return true, nil
}

// shutdown waits for every holder to stop (each releases its lease when
// ctx ends), then deletes the member key.
func (r *run) shutdown(ctx context.Context) {
	r.wg.Wait()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Renew)
	defer cancel()
	if err := r.kv.Delete(dctx, memberKey(r.cfg.Instance)); err != nil {
		r.log.Debug().Err(err).Msg("member key not deleted; it expires after the TTL")
	}
}

// Members returns the instances whose member heartbeat is in the bucket
// kv (live: the bucket keeps a key at most TTL after its last write),
// sorted; ErrNATS when the bucket cannot be read.
func Members(ctx context.Context, kv jetstream.KeyValue) ([]string, error) {
	lister, err := kv.ListKeysFiltered(ctx, memberPrefix+">")
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lease: members: %w: %v", ErrNATS, err)
	}
	var out []string
	for k := range lister.Keys() {
		if id, ok := parseMemberKey(k); ok {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}
