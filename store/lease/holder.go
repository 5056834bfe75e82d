package lease

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// why a holder gave its lease up.
type why int

const (
	whyShutdown why = iota // Run's ctx ended
	whyShed                // balancing asked for it
	whyExpired             // no renewal succeeded before the local deadline
	whyTaken               // a renewal found the key gone or someone else's
)

func (w why) String() string {
	return [...]string{"shutdown", "shed", "expired", "taken"}[w]
}

// holder keeps one lease. Its fields are owned by its goroutine, except
// releasing (the loop's) and release (closed by the loop).
type holder struct {
	p       int
	key     string
	token   string
	epoch   uint64
	rev     uint64
	renewed time.Time // send time of the last confirmed write

	release   chan struct{}
	releasing bool
}

func (h *holder) value(owner string) []byte {
	return value{Owner: owner, Token: h.token, Epoch: h.epoch}.encode()
}

func (h *holder) ours(e jetstream.KeyValueEntry, owner string) bool {
	if e == nil || e.Operation() != jetstream.KeyValuePut {
		return false
	}
	v, ok := decodeValue(e.Value())
	return ok && v.Owner == owner && v.Token == h.token
}

// hold runs one lease from acquisition to release.
func (r *run) hold(ctx context.Context, h *holder) {
	defer r.wg.Done()
	r.onAcquire(h.p, h.epoch)
	why := r.keep(ctx, h)
	// Valid answers false from here on; then the partition stops.
	r.m.mu.Lock()
	delete(r.m.leases, h.p)
	r.m.mu.Unlock()
	start := time.Now()
	r.onLose(h.p)
	r.log.Info().Int("partition", h.p).Uint64("epoch", h.epoch).Stringer("why", why).
		Dur("on_lose", time.Since(start)).Msg("lease given up")
	if d := time.Since(start); d > r.cfg.Margin/2 {
		r.log.Warn().Int("partition", h.p).Dur("on_lose", d).Dur("margin", r.cfg.Margin).
			Msg("onLose took more than half the safety margin")
	}
	if why != whyTaken {
		// Only now that the partition has stopped may its key go, so that
		// the next owner need not wait for the TTL.
		r.giveUp(ctx, h)
	}
	r.exits <- exit{p: h.p, why: why}
}

// keep renews h until it must be given up, and says why. It returns at
// the local deadline at the latest, whatever NATS does: every wait and
// every request is bounded by it.
func (r *run) keep(ctx context.Context, h *holder) why {
	cfg := r.cfg
	life := cfg.TTL - cfg.Margin
	deadline := h.renewed.Add(life)
	next := h.renewed.Add(cfg.Renew)
	retry := min(cfg.Renew/4, time.Second)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now() // monotonic reading: immune to wall-clock steps
		if !now.Before(deadline) {
			return whyExpired
		}
		if wake := min(next.Sub(now), deadline.Sub(now)); wake > 0 {
			timer.Reset(wake)
			select {
			case <-ctx.Done():
				return whyShutdown
			case <-h.release:
				return whyShed
			case <-timer.C:
			}
			continue
		}
		select { // a release or shutdown wins over a due renewal
		case <-ctx.Done():
			return whyShutdown
		case <-h.release:
			return whyShed
		default:
		}
		rctx, cancel := context.WithDeadline(ctx, deadline)
		sent := time.Now()
		rev, err := r.kv.Update(rctx, h.key, h.value(cfg.Instance), h.rev)
		switch {
		case err == nil:
			h.rev, h.renewed = rev, sent
			deadline, next = sent.Add(life), sent.Add(cfg.Renew)
			r.m.mu.Lock()
			if l := r.m.leases[h.p]; l != nil {
				l.Revision, l.Renewed, l.Deadline = rev, sent, deadline
			}
			r.m.mu.Unlock()
		case ctx.Err() != nil:
			cancel()
			return whyShutdown
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			// Either someone else wrote the key, or a renewal of ours
			// landed but its answer was lost. The token tells which.
			e, gerr := r.kv.Get(rctx, h.key)
			switch {
			case gerr == nil && h.ours(e, cfg.Instance):
				// Ours: adopt the revision and renew at once. The
				// deadline stays with the last confirmed send time.
				h.rev, next = e.Revision(), time.Now()
			case gerr == nil, errors.Is(gerr, jetstream.ErrKeyNotFound), errors.Is(gerr, jetstream.ErrKeyDeleted):
				cancel()
				r.log.Warn().Int("partition", h.p).Uint64("epoch", h.epoch).Msg("lease taken over: renewal revision conflict")
				return whyTaken
			default:
				next = time.Now().Add(retry)
			}
		default:
			r.log.Debug().Err(err).Int("partition", h.p).Msg("renewal failed")
			next = time.Now().Add(retry)
		}
		cancel()
	}
}

// giveUp deletes h's key if it still holds this acquisition's value, with
// a revision check so that it never deletes a successor's lease.
func (r *run) giveUp(ctx context.Context, h *holder) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Renew)
	defer cancel()
	err := r.kv.Delete(dctx, h.key, jetstream.LastRevision(h.rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		// A renewal may have landed after we stopped waiting for it.
		e, gerr := r.kv.Get(dctx, h.key)
		if gerr != nil || !h.ours(e, r.cfg.Instance) {
			return
		}
		err = r.kv.Delete(dctx, h.key, jetstream.LastRevision(e.Revision()))
	}
	if err != nil {
		r.log.Debug().Err(err).Int("partition", h.p).Msg("lease not deleted; it expires after the TTL")
	}
}
