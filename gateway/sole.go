package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/store/lease"
)

// soleHold is a single instance's hold of every partition's lease
// (lease.Sole): the claim in force and the goroutine renewing it.
type soleHold struct {
	name string
	cur  atomic.Pointer[lease.Sole]

	mu   sync.Mutex
	stop func() // ends the renewal of cur and waits for it

	// deciding is true while the partitions run under a claim
	// (singleTenure): not while a lapsed claim is claimed again and the
	// journal taken in. Readiness reads it.
	deciding atomic.Bool
}

// claimSole takes every partition's lease for this single instance
// (lease.ClaimAll), before it reads or deletes the journal or decides
// anything: scaled-out members and other single instances decide on
// ledgers this one does not read, so it refuses to start beside them
// (lease.ErrHeld). Its name is its data directory's, kept in
// soleIDFile: a key that name wrote is an earlier process's of this
// directory, which is gone, since this one holds the ledger's lock; it
// is taken over at once, so a restart after a crash does not wait for
// the TTL. The claim is renewed until endSole.
func (g *Gateway) claimSole(ctx context.Context) error {
	name, err := soleName(g.cfg.DataDir)
	if err != nil {
		return err
	}
	g.sole = &soleHold{name: name}
	s, err := lease.ClaimAll(ctx, g.js, g.soleConfig(), g.log)
	if err != nil {
		return fmt.Errorf("gateway: single instance: %w", err)
	}
	g.keepSole(s)
	return nil
}

func (g *Gateway) soleConfig() lease.Config {
	return lease.Config{Instance: g.sole.name, Partitions: g.cfg.Consumer.Partitions, Replicas: g.cfg.Streams.Replicas}
}

// keepSole makes s the claim in force and renews it until endSole or
// the next claim: renewed through the end of the batch in hand at a
// shutdown, released only after that.
func (g *Gateway) keepSole(s *lease.Sole) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Keep(ctx)
	}()
	g.sole.mu.Lock()
	g.sole.stop = func() { cancel(); <-done }
	g.sole.mu.Unlock()
	g.sole.cur.Store(s)
}

// endSole stops renewing the claim in force and releases its keys. Run
// calls it once nothing is decided any more.
func (g *Gateway) endSole() {
	g.sole.mu.Lock()
	stop := g.sole.stop
	g.sole.mu.Unlock()
	if stop != nil {
		stop()
	}
	if s := g.sole.cur.Load(); s != nil {
		s.Release(context.Background())
	}
}

// soleValid reports whether a single instance may publish and ack now.
func (g *Gateway) soleValid() bool {
	if g.sole == nil {
		return true
	}
	s := g.sole.cur.Load()
	return s != nil && s.Valid()
}

// runSingle decides every partition until ctx ends. When the claim
// lapses (no renewal landed before its deadline: NATS away, a lost
// answer), every partition stops at once, acking and publishing nothing
// more; the instance then claims the leases again (its own keys, taken
// over, or free ones), takes in what scaled-out instances may have
// decided meanwhile (retireJournal), and goes on. It ends with an error
// when another instance holds a lease (lease.ErrHeld) or wrote one it
// held.
func (g *Gateway) runSingle(ctx context.Context, consumers []jetstream.Consumer, tenants [][]tenantConsumer) error {
	for {
		s := g.sole.cur.Load()
		err := g.singleTenure(ctx, s, consumers, tenants)
		if ctx.Err() != nil {
			return nil
		}
		if s.Valid() {
			return err
		}
		select { // the deadline passed: Keep reports it at once
		case <-s.Lost():
		case <-ctx.Done():
			return nil
		}
		if s.Taken() {
			return fmt.Errorf("gateway: %w", s.Err())
		}
		g.log.Warn().Err(s.Err()).Msg("single instance's leases lapsed; every partition stopped until they are claimed again")
		backoff, since := 100*time.Millisecond, time.Now()
		for {
			err := g.reclaimSole(ctx, consumers)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			// Another instance holds or wrote a lease: it may be deciding.
			if errors.Is(err, lease.ErrHeld) || g.sole.cur.Load().Taken() {
				return err
			}
			// NATS failing again while the journal was taken in, or the
			// new claim lapsing meanwhile, is tried again; a failure that
			// lasts (the ledger cannot be written) ends Run, so that the
			// instance neither holds the leases deciding nothing nor
			// looks alive to what would restart it.
			if time.Since(since) > reclaimPatience {
				return fmt.Errorf("gateway: claiming the leases again failed for %s: %w", reclaimPatience, err)
			}
			g.log.Error().Err(err).Msg("claiming the leases again did not finish; trying again")
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// reclaimPatience is how long a re-claim that keeps failing is tried
// (a variable for the tests).
var reclaimPatience = time.Minute

// singleTenure decides every partition under claim s until ctx ends or
// s is lost.
func (g *Gateway) singleTenure(ctx context.Context, s *lease.Sole, consumers []jetstream.Consumer, tenants [][]tenantConsumer) error {
	g.sole.deciding.Store(true)
	defer g.sole.deciding.Store(false)
	eg, ctx := errgroup.WithContext(ctx)
	abandon, drop := context.WithCancel(context.Background())
	defer drop()
	eg.Go(func() error {
		select {
		case <-ctx.Done():
			return nil
		case <-s.Lost():
			drop()
			return fmt.Errorf("gateway: %w", s.Err())
		}
	})
	parts := make([]*partState, len(consumers))
	for p, c := range consumers {
		parts[p] = &partState{p: p, cons: c, tenants: tenants[p], ledger: g.ledger, abandon: abandon, lostBefore: g.ledger.LostBefore()}
		eg.Go(func() error { return g.consumePartition(ctx, parts[p]) })
	}
	eg.Go(func() error { return g.pruneLoop(ctx, parts) })
	return eg.Wait()
}

// reclaimSole claims every lease again after the last claim lapsed,
// trying while NATS does not answer, then takes in the journal a
// scaled-out run may have left meanwhile.
func (g *Gateway) reclaimSole(ctx context.Context, consumers []jetstream.Consumer) error {
	g.sole.mu.Lock()
	stop := g.sole.stop
	g.sole.mu.Unlock()
	// The last claim's renewal ends: it lapsed, or (the journal could
	// not be taken in after it) the claim made now takes its keys over.
	stop()
	backoff := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		s, err := lease.ClaimAll(cctx, g.js, g.soleConfig(), g.log)
		cancel()
		if err == nil {
			g.keepSole(s)
			g.log.Info().Msg("single instance holds every partition's lease again")
			break
		}
		if errors.Is(err, lease.ErrHeld) || ctx.Err() != nil {
			return fmt.Errorf("gateway: single instance: %w", err)
		}
		g.log.Debug().Err(err).Msg("claiming the leases again failed; retrying")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return g.retireJournal(ctx, consumers)
}

// soleIDFile names, in the data directory, the file that holds a single
// instance's name in the lease bucket.
const soleIDFile = "instance-id"

// soleName reads the single instance's name from dir, or makes one.
func soleName(dir string) (string, error) {
	path := filepath.Join(dir, soleIDFile)
	b, err := os.ReadFile(path)
	if err == nil {
		name := strings.TrimSpace(string(b))
		if !soleNameRE.MatchString(name) {
			return "", fmt.Errorf("gateway: %s does not hold an instance name (single-<32 hex digits>); remove it to make a new one", path)
		}
		return name, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("gateway: instance name: %w", err)
	}
	var r [16]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails on supported platforms
	name := "single-" + hex.EncodeToString(r[:])
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("gateway: data directory: %w", err)
	}
	if err := identity.WritePrivateFile(path, []byte(name+"\n")); err != nil {
		return "", fmt.Errorf("gateway: instance name: %w", err)
	}
	return name, nil
}

var soleNameRE = regexp.MustCompile(`^single-[0-9a-f]{32}$`)
