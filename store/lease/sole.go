package lease

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// ErrHeld: ClaimAll found a partition's lease held by another instance,
// or a scaled-out member alive in the bucket. A single instance decides
// every partition on a ledger no other instance reads, so it does not
// run beside them.
var ErrHeld = errors.New("lease: held by another instance")

// ErrLost: a Sole could not renew its leases before its local deadline,
// or found one of them written by another instance. Its holder must
// have stopped deciding by then.
var ErrLost = errors.New("lease: the single instance's leases were lost")

// errTaken marks a loss to a key another instance wrote.
var errTaken = errors.New("was written by another instance")

// Sole is one instance holding every partition's lease at once, as a
// single-instance gateway does: it writes no member key, takes no part in
// balancing, and holds all partitions or none. Scaled-out members cannot
// Create a key it holds, so they decide nothing while it runs, and it
// cannot start while any of them holds a partition or is alive.
//
// Its leases follow the Manager's timing rule (the package
// documentation): Valid answers false from (send time of the last round
// of renewals that all landed) + TTL − Margin, and Lost is closed then.
type Sole struct {
	kv  jetstream.KeyValue
	cfg Config
	log zerolog.Logger

	token string
	revs  []uint64 // by partition; owned by Keep once it runs

	mu       sync.Mutex
	deadline time.Time
	lost     chan struct{}
	lostErr  error
	taken    bool // lost to a key another instance wrote, not to the deadline
	keeping  bool
}

// ClaimAll opens the lease bucket (creating it with cfg's TTL when it
// does not exist; an existing bucket's TTL is adopted, Renew and Margin
// derived from it unless set) and takes every partition's lease for
// cfg.Instance. A key already written by cfg.Instance is taken over: the
// caller proves the process that wrote it is gone (a single instance
// holds its data directory's lock, and its instance name is its data
// directory's). Any other holder, or any live member key, is ErrHeld,
// after what ClaimAll took is released; so is a key written while it
// claims.
func ClaimAll(ctx context.Context, js jetstream.JetStream, cfg Config, log zerolog.Logger) (*Sole, error) {
	kv, cfg, err := openForSole(ctx, js, cfg)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sole{kv: kv, cfg: cfg, log: log.With().Str("component", "lease").Str("instance", cfg.Instance).Logger(),
		token: newToken(), revs: make([]uint64, cfg.Partitions), lost: make(chan struct{})}
	members, err := Members(ctx, kv)
	if err != nil {
		return nil, err
	}
	if len(members) > 0 {
		return nil, fmt.Errorf("lease: scaled-out instances %s are alive in bucket %s: %w", strings.Join(members, ", "), cfg.Bucket, ErrHeld)
	}
	sent := time.Now()
	var held []string
	for p := range cfg.Partitions {
		rev, owner, err := s.take(ctx, p)
		if err != nil {
			s.Release(ctx)
			return nil, err
		}
		if rev == 0 {
			held = append(held, fmt.Sprintf("p%d by %s", p, owner))
			continue
		}
		s.revs[p] = rev
	}
	if len(held) > 0 {
		s.Release(ctx)
		return nil, fmt.Errorf("lease: partitions held in bucket %s (%s; a holder that stopped without releasing them loses them within %s): %w",
			cfg.Bucket, strings.Join(held, ", "), cfg.TTL, ErrHeld)
	}
	// A member that wrote its heartbeat after the list above found every
	// key taken (Create fails on a live key), so it holds nothing; it is
	// still named, so that the operator learns of it.
	if members, err := Members(ctx, kv); err == nil && len(members) > 0 {
		s.log.Warn().Strs("members", members).Msg("scaled-out instances started while this single instance claimed every partition; they hold none")
	}
	s.deadline = sent.Add(cfg.TTL - cfg.Margin)
	s.log.Info().Int("partitions", cfg.Partitions).Dur("ttl", cfg.TTL).Msg("single instance holds every partition's lease")
	return s, nil
}

// openForSole opens the bucket, adopting its TTL, or creates it.
func openForSole(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.KeyValue, Config, error) {
	cfg = cfg.withDefaults()
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err := EnsureBucket(ctx, js, cfg)
		return kv, cfg, err
	}
	if err != nil {
		return nil, cfg, fmt.Errorf("lease: open bucket %s: %w: %v", cfg.Bucket, ErrNATS, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, cfg, fmt.Errorf("lease: bucket %s status: %w: %v", cfg.Bucket, ErrNATS, err)
	}
	if st.TTL() != cfg.TTL {
		cfg.TTL, cfg.Renew, cfg.Margin = st.TTL(), 0, 0
		cfg = cfg.withDefaults()
	}
	return kv, cfg, nil
}

// take Creates partition p's key, or takes over one this instance's
// name wrote. It returns the key's new revision, or 0 and the holder's
// name when another instance holds it. A key that changes while it is
// taken (its old value expiring, say) is tried again, a few times.
func (s *Sole) take(ctx context.Context, p int) (uint64, string, error) {
	key := partitionKey(p)
	val := value{Owner: s.cfg.Instance, Token: s.token}.encode()
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Renew)
	defer cancel()
	for range 3 {
		rev, err := s.kv.Create(cctx, key, val)
		if err == nil {
			return rev, "", nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, "", fmt.Errorf("lease: create %s: %w: %v", key, ErrNATS, err)
		}
		e, err := s.kv.Get(cctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue // gone between the two requests: free now
		}
		if err != nil {
			return 0, "", fmt.Errorf("lease: get %s: %w: %v", key, ErrNATS, err)
		}
		v, ok := decodeValue(e.Value())
		if !ok || v.Owner != s.cfg.Instance {
			owner := "an unreadable value"
			if ok {
				owner = v.Owner
			}
			return 0, owner, nil
		}
		rev, err = s.kv.Update(cctx, key, val, e.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // changed meanwhile: read it again
		}
		if err != nil {
			return 0, "", fmt.Errorf("lease: take over %s: %w: %v", key, ErrNATS, err)
		}
		s.log.Info().Int("partition", p).Msg("lease taken over from an earlier process of this instance")
		return rev, "", nil
	}
	return 0, "a writer racing this claim", nil
}

// Config returns the configuration in use (the bucket's TTL adopted).
func (s *Sole) Config() Config { return s.cfg }

// Valid reports whether every lease is still this instance's by its
// local deadline. A caller about to make work visible (publish, ack)
// checks it last.
func (s *Sole) Valid() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lostErr == nil && time.Now().Before(s.deadline)
}

// Lost is closed once the leases are lost (Err says why).
func (s *Sole) Lost() <-chan struct{} { return s.lost }

// Err is nil while the leases are held, ErrLost (wrapped) once they are
// not.
func (s *Sole) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lostErr
}

// Taken reports whether the leases were lost to a key another instance
// wrote (a successor may be deciding), rather than to the deadline (the
// keys may still be this instance's, or free): only after the latter may
// the instance claim them again.
func (s *Sole) Taken() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.taken
}

func (s *Sole) lose(why string, taken bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lostErr != nil {
		return
	}
	s.lostErr, s.taken = fmt.Errorf("%w: %s", ErrLost, why), taken
	close(s.lost)
	s.log.Error().Str("why", why).Msg("single instance lost its partition leases; it stops deciding")
}

// Keep renews every lease each Renew until ctx ends or they are lost,
// which it reports by closing Lost at the local deadline at the latest,
// whatever NATS does. It does not release them: the caller calls Release
// once its work has stopped.
func (s *Sole) Keep(ctx context.Context) {
	s.mu.Lock()
	if s.keeping {
		s.mu.Unlock()
		return
	}
	s.keeping = true
	deadline := s.deadline
	s.mu.Unlock()
	cfg := s.cfg
	life := cfg.TTL - cfg.Margin
	next := deadline.Add(-life).Add(cfg.Renew)
	retry := min(cfg.Renew/4, time.Second)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		if !now.Before(deadline) {
			s.lose("no renewal landed before the local deadline", false)
			return
		}
		if wake := min(next.Sub(now), deadline.Sub(now)); wake > 0 {
			timer.Reset(wake)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			continue
		}
		sent := time.Now()
		err := s.renew(ctx, deadline)
		switch {
		case err == nil:
			deadline, next = sent.Add(life), sent.Add(cfg.Renew)
			s.mu.Lock()
			s.deadline = deadline
			s.mu.Unlock()
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrLost):
			s.lose(err.Error(), errors.Is(err, errTaken))
			return
		default:
			s.log.Debug().Err(err).Msg("renewal failed")
			next = time.Now().Add(retry)
		}
	}
}

// renew rewrites every key under its last revision. A key another
// instance wrote (or that is gone) is ErrLost; a renewal of ours whose
// answer was lost is recognised by its token, and the key is written
// again in this round under the revision it landed at, so that every
// key's last write is sent after the round's send time. Each request
// waits at most Renew/2, and never past the deadline: a reply lost at a
// reconnect fails its round, which is tried again well before the
// deadline, rather than the leases.
func (s *Sole) renew(ctx context.Context, deadline time.Time) error {
	val := value{Owner: s.cfg.Instance, Token: s.token}.encode()
	for p := range s.revs {
		key := partitionKey(p)
		for adopted := false; ; {
			until := time.Now().Add(s.cfg.Renew / 2)
			if deadline.Before(until) {
				until = deadline
			}
			rctx, cancel := context.WithDeadline(ctx, until)
			rev, err := s.kv.Update(rctx, key, val, s.revs[p])
			if err == nil {
				cancel()
				s.revs[p] = rev
				break
			}
			if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				cancel()
				return err
			}
			e, gerr := s.kv.Get(rctx, key)
			cancel()
			switch {
			case gerr == nil && s.ours(e) && !adopted:
				// Landed, answer lost: written again under its revision.
				s.revs[p], adopted = e.Revision(), true
			case gerr == nil && s.ours(e):
				return fmt.Errorf("lease: renewal of %s keeps missing its revision", key)
			case gerr == nil:
				return fmt.Errorf("%w: %s %w", ErrLost, key, errTaken)
			case errors.Is(gerr, jetstream.ErrKeyNotFound), errors.Is(gerr, jetstream.ErrKeyDeleted):
				return fmt.Errorf("%w: %s is gone (expired or deleted)", ErrLost, key)
			default:
				return gerr
			}
		}
	}
	return nil
}

func (s *Sole) ours(e jetstream.KeyValueEntry) bool {
	if e == nil || e.Operation() != jetstream.KeyValuePut {
		return false
	}
	v, ok := decodeValue(e.Value())
	return ok && v.Owner == s.cfg.Instance && v.Token == s.token
}

// Release deletes every key still this claim's (revision-checked), so
// that scaled-out members need not wait for the TTL. Call it once Keep
// has returned and the work the leases guard has stopped.
func (s *Sole) Release(ctx context.Context) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Renew)
	defer cancel()
	s.release(dctx)
}

func (s *Sole) release(ctx context.Context) {
	for p, rev := range s.revs {
		if rev == 0 {
			continue
		}
		key := partitionKey(p)
		err := s.kv.Delete(ctx, key, jetstream.LastRevision(rev))
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			if e, gerr := s.kv.Get(ctx, key); gerr == nil && s.ours(e) {
				err = s.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
			}
		}
		if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			s.log.Debug().Err(err).Int("partition", p).Msg("lease not deleted; it expires after the TTL")
		}
		s.revs[p] = 0
	}
}
