package lease

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// claim runs ClaimAll for cfg over a connection of its own, closed with
// the test.
func claim(t *testing.T, url string, cfg Config) (*Sole, *nats.Conn, error) {
	t.Helper()
	nc, err := nats.Connect(url, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := ClaimAll(ctx, js, cfg, zerolog.Nop())
	return s, nc, err
}

// keep runs s.Keep until the test ends or stop is called.
func keep(t *testing.T, s *Sole) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Keep(ctx)
	}()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// liveKeys lists the partition keys in the bucket.
func liveKeys(t *testing.T, kv jetstream.KeyValue) map[string]string {
	t.Helper()
	out := map[string]string{}
	lister, err := kv.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for k := range lister.Keys() {
		if _, member := parseMemberKey(k); member {
			continue
		}
		e, err := kv.Get(context.Background(), k)
		if err != nil {
			continue
		}
		v, _ := decodeValue(e.Value())
		out[k] = v.Owner
	}
	return out
}

// A single instance does not start while a scaled-out member holds
// partitions, and takes every one once the member has stopped.
func TestSoleRefusedBesideMembers(t *testing.T) {
	_, url := serverURL(t)
	rec := newRecorder(t)
	const parts = 4
	a := start(t, url, testConfig("a", parts, testTTL), rec)
	waitFor(t, settle, "a to hold every partition", func() bool { return len(rec.held()["a"]) == parts })

	if s, _, err := claim(t, url, testConfig("single-x", parts, testTTL)); !errors.Is(err, ErrHeld) {
		t.Fatalf("ClaimAll beside a live member = %v, %v; want ErrHeld", s, err)
	}
	if got := len(rec.held()["a"]); got != parts {
		t.Fatalf("the member holds %d partitions after the refused claim; want %d", got, parts)
	}
	a.stop()
	s, _, err := claim(t, url, testConfig("single-x", parts, testTTL))
	if err != nil {
		t.Fatalf("ClaimAll after the member stopped = %v", err)
	}
	if !s.Valid() {
		t.Error("a fresh claim is not valid")
	}
	for p, owner := range liveKeys(t, kvFor(t, url, testConfig("single-x", parts, testTTL))) {
		if owner != "single-x" {
			t.Errorf("%s held by %q after the claim; want single-x", p, owner)
		}
	}
}

// Scaled-out members started while a single instance holds the leases
// take nothing, through several renewals, and take every partition once
// it releases them.
func TestMembersWaitWhileSoleHolds(t *testing.T) {
	_, url := serverURL(t)
	const parts = 4
	s, _, err := claim(t, url, testConfig("single-x", parts, testTTL))
	if err != nil {
		t.Fatal(err)
	}
	stopKeep := keep(t, s)
	rec := newRecorder(t)
	start(t, url, testConfig("b", parts, testTTL), rec)
	start(t, url, testConfig("c", parts, testTTL), rec)
	time.Sleep(2 * testTTL) // past the TTL: only renewals keep the keys
	if held := rec.held(); len(held) != 0 {
		t.Fatalf("members took %v while a single instance held every lease", held)
	}
	if !s.Valid() {
		t.Fatalf("the single instance's claim lapsed: %v", s.Err())
	}
	released := time.Now()
	stopKeep()
	s.Release(context.Background())
	waitFor(t, settle, "b and c to split the partitions", func() bool { return balanced(rec, parts, "b", "c") })
	for p := range parts {
		for _, inst := range []string{"b", "c"} {
			if e, ok := rec.last(inst, p, true); ok && e.at.Before(released) {
				t.Errorf("%s took p%d before the single instance released it", inst, p)
			}
		}
	}
}

// A process of the same instance that died without releasing left its
// keys: the same name takes them over at once (the gateway proves the
// process gone by its data directory's lock); any other name is refused
// until they expire.
func TestSoleTakesOverItsOwnKeys(t *testing.T) {
	_, url := serverURL(t)
	const parts = 3
	cfg := testConfig("single-x", parts, 30*time.Second)
	cfg.Renew, cfg.Margin = 5*time.Second, 5*time.Second
	dead, nc, err := claim(t, url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close() // died: nothing released
	_ = dead

	other := cfg
	other.Instance = "single-y"
	if _, _, err := claim(t, url, other); !errors.Is(err, ErrHeld) {
		t.Fatalf("another single instance's claim = %v; want ErrHeld", err)
	}
	began := time.Now()
	s, _, err := claim(t, url, cfg)
	if err != nil {
		t.Fatalf("the same instance's claim after its process died = %v", err)
	}
	if waited := time.Since(began); waited > cfg.TTL/2 {
		t.Errorf("the claim took %s; a takeover need not wait for the TTL %s", waited, cfg.TTL)
	}
	if !s.Valid() {
		t.Error("the claim that took over is not valid")
	}
}

// A claim that finds one partition held elsewhere takes none: what it
// had taken is released at once, not left to expire.
func TestSoleTakesAllOrNone(t *testing.T) {
	_, url := serverURL(t)
	const parts = 4
	cfg := testConfig("single-x", parts, 30*time.Second)
	cfg.Renew, cfg.Margin = 5*time.Second, 5*time.Second
	kv := kvFor(t, url, cfg)
	if _, err := kv.Create(context.Background(), partitionKey(2), value{Owner: "b", Token: "t"}.encode()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := claim(t, url, cfg); !errors.Is(err, ErrHeld) {
		t.Fatalf("ClaimAll with p2 held by b = %v; want ErrHeld", err)
	}
	keys := liveKeys(t, kv)
	if len(keys) != 1 || keys["p2"] != "b" {
		t.Errorf("keys after the refused claim: %v; want only p2, b's", keys)
	}
}

// A single instance cut off from NATS reports its leases lost before the
// server could expire the keys, and a member takes them only after.
func TestSoleCutOffLosesBeforeTakeover(t *testing.T) {
	_, url := serverURL(t)
	const parts = 2
	s, nc, err := claim(t, url, testConfig("single-x", parts, testTTL))
	if err != nil {
		t.Fatal(err)
	}
	keep(t, s)
	time.Sleep(testTTL) // a few renewals
	cut := time.Now()
	nc.Close()
	rec := newRecorder(t)
	start(t, url, testConfig("b", parts, testTTL), rec)
	select {
	case <-s.Lost():
	case <-time.After(settle):
		t.Fatal("the cut-off single instance never reported its leases lost")
	}
	lost := time.Now()
	if s.Valid() {
		t.Error("Valid after Lost")
	}
	if !errors.Is(s.Err(), ErrLost) {
		t.Errorf("Err = %v; want ErrLost", s.Err())
	}
	if s.Taken() {
		t.Error("a loss to the deadline is reported as taken: the instance would not claim again")
	}
	if lost.Sub(cut) > testTTL {
		t.Errorf("lost %s after the cut; the keys could expire %s after the last renewal", lost.Sub(cut), testTTL)
	}
	waitFor(t, settle, "b to take every partition", func() bool { return len(rec.held()["b"]) == parts })
	for p := range parts {
		if e, _ := rec.last("b", p, true); !lost.Before(e.at) {
			t.Errorf("b took p%d at %s, before the single instance stopped at %s", p, e.at, lost)
		}
	}
}

// A key written by someone else makes the next renewal fail: the leases
// are lost at once, well before the local deadline.
func TestSoleLostOnForeignWrite(t *testing.T) {
	_, url := serverURL(t)
	cfg := testConfig("single-x", 2, 30*time.Second)
	cfg.Renew, cfg.Margin = 500*time.Millisecond, 5*time.Second
	s, _, err := claim(t, url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	keep(t, s)
	kv := kvFor(t, url, cfg)
	if _, err := kv.Put(context.Background(), partitionKey(1), value{Owner: "intruder", Token: "t"}.encode()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("a foreign write to a held key went unnoticed")
	}
	if s.Valid() {
		t.Error("Valid after a foreign write")
	}
	if !s.Taken() {
		t.Error("a loss to a foreign write is not reported as taken: the instance would claim again beside its successor")
	}
}

// lostReplyKV performs every request but, once armed, loses the answer
// to one Update, as a reconnect or a dying stream leader can.
type lostReplyKV struct {
	jetstream.KeyValue
	armed atomic.Bool
}

func (k *lostReplyKV) Update(ctx context.Context, key string, v []byte, last uint64) (uint64, error) {
	rev, err := k.KeyValue.Update(ctx, key, v, last)
	if err == nil && k.armed.CompareAndSwap(true, false) {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return rev, err
}

// One renewal whose answer is lost fails its round, which is tried
// again, not the leases: each request waits at most Renew/2, and the
// key whose write landed unanswered is written again in the next round.
// With the timings a single instance uses (Renew TTL/3, Margin TTL/5).
func TestSoleSurvivesOneLostReply(t *testing.T) {
	_, url := serverURL(t)
	cfg := Config{Instance: "single-x", Partitions: 4, TTL: 3 * time.Second}
	s, _, err := claim(t, url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := &lostReplyKV{KeyValue: s.kv}
	s.kv = w
	keep(t, s)
	time.Sleep(s.cfg.Renew / 2)
	w.armed.Store(true)
	select {
	case <-s.Lost():
		t.Fatalf("one lost reply lost every lease: %v", s.Err())
	case <-time.After(3 * s.cfg.TTL):
	}
	if w.armed.Load() {
		t.Fatal("no renewal came to lose its reply: the fault did not happen")
	}
}

// An existing bucket's TTL is the one a single instance uses, whatever
// its own configuration says: it takes no part in a scaled-out
// deployment's settings.
func TestSoleAdoptsBucketTTL(t *testing.T) {
	_, url := serverURL(t)
	kvFor(t, url, testConfig("a", 1, 3*time.Second))
	s, _, err := claim(t, url, Config{Instance: "single-x", Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	if c := s.Config(); c.TTL != 3*time.Second || c.Margin >= c.TTL || 2*c.Renew > c.TTL-c.Margin {
		t.Errorf("claim config TTL %s renew %s margin %s; want the bucket's TTL 3s and derived timings", c.TTL, c.Renew, c.Margin)
	}
}
