package lease

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/agentgw/agentgw/internal/natstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.LeakOptions()...)
}

// event is one callback, stamped on the test process's monotonic clock.
type event struct {
	inst    string
	p       int
	acquire bool
	epoch   uint64
	at      time.Time
}

// recorder collects the callbacks of every manager in a test and checks,
// as they happen, that a partition is never held by two instances at
// once and that epochs grow.
type recorder struct {
	t      testing.TB
	mu     sync.Mutex
	events []event
	holder map[int]string
	epoch  map[int]uint64
}

func newRecorder(t testing.TB) *recorder {
	return &recorder{t: t, holder: map[int]string{}, epoch: map[int]uint64{}}
}

func (r *recorder) callbacks(inst string) (func(int, uint64), func(int)) {
	acquire := func(p int, epoch uint64) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if h, ok := r.holder[p]; ok {
			r.t.Errorf("partition %d acquired by %s while %s holds it", p, inst, h)
		}
		if epoch <= r.epoch[p] {
			r.t.Errorf("partition %d acquired by %s with epoch %d; an earlier owner had %d", p, inst, epoch, r.epoch[p])
		}
		r.holder[p], r.epoch[p] = inst, epoch
		r.events = append(r.events, event{inst: inst, p: p, acquire: true, epoch: epoch, at: time.Now()})
	}
	lose := func(p int) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if h := r.holder[p]; h != inst {
			r.t.Errorf("partition %d lost by %s, but the holder is %q", p, inst, h)
		}
		delete(r.holder, p)
		r.events = append(r.events, event{inst: inst, p: p, at: time.Now()})
	}
	return acquire, lose
}

// held returns the partitions each instance holds now.
func (r *recorder) held() map[string][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]int{}
	for p, inst := range r.holder {
		out[inst] = append(out[inst], p)
	}
	for _, ps := range out {
		slices.Sort(ps)
	}
	return out
}

// last returns the latest event of inst for p of the given kind.
func (r *recorder) last(inst string, p int, acquire bool) (event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if e := r.events[i]; e.inst == inst && e.p == p && e.acquire == acquire {
			return e, true
		}
	}
	return event{}, false
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := ""
	t0 := time.Time{}
	for _, e := range r.events {
		if t0.IsZero() {
			t0 = e.at
		}
		kind := "lose"
		if e.acquire {
			kind = fmt.Sprintf("acquire(epoch %d)", e.epoch)
		}
		s += fmt.Sprintf("  %8.3fs %s p%d %s\n", e.at.Sub(t0).Seconds(), e.inst, e.p, kind)
	}
	return s
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitForSplit waits until the instances hold every partition, evenly;
// when they do not in time, it says what each holds and which ones
// stopped running, and why.
func waitForSplit(t testing.TB, timeout time.Duration, what string, rec *recorder, partitions int, ins []*instance) {
	t.Helper()
	names := make([]string, len(ins))
	for i, in := range ins {
		names[i] = in.name
	}
	deadline := time.Now().Add(timeout)
	for !balanced(rec, partitions, names...) {
		if time.Now().After(deadline) {
			var ended []string
			for _, in := range ins {
				select {
				case err := <-in.done:
					in.done <- err // stop reads it again
					ended = append(ended, fmt.Sprintf("%s: Run returned %v", in.name, err))
				default:
				}
			}
			t.Fatalf("timed out after %s waiting for %s: held %v; stopped: %v", timeout, what, rec.held(), ended)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// jsFor connects to url for the rest of the test.
func jsFor(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// ensureBucket creates cfg's bucket through url, retrying until within
// has passed.
func ensureBucket(t testing.TB, url string, cfg Config, within time.Duration) {
	t.Helper()
	js := jsFor(t, url)
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := EnsureBucket(ctx, js, cfg)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease bucket not created within %s: %v", within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// instance is one running Manager with its own connection.
type instance struct {
	name   string
	nc     *nats.Conn
	m      *Manager
	cancel context.CancelFunc
	done   chan error
}

func testConfig(name string, partitions int, ttl time.Duration) Config {
	return Config{Instance: name, Partitions: partitions, TTL: ttl, Renew: ttl / 4, Margin: ttl / 4}
}

func start(t *testing.T, url string, cfg Config, rec *recorder) *instance {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(js, cfg)
	if err != nil {
		t.Fatalf("New(%+v) = %v", cfg, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{name: cfg.Instance, nc: nc, m: m, cancel: cancel, done: make(chan error, 1)}
	acquire, lose := rec.callbacks(cfg.Instance)
	go func() { in.done <- m.Run(ctx, acquire, lose) }()
	t.Cleanup(in.stop)
	return in
}

// stop ends Run (a graceful release while the connection is open) and
// closes the connection.
func (in *instance) stop() {
	in.cancel()
	<-in.done
	in.done <- nil // later stops return at once
	in.nc.Close()
}

// crash closes the connection first, so nothing can be released, then
// ends Run: for the rest of the world it is a process that died.
func (in *instance) crash() {
	in.nc.Close()
	in.stop()
}

func serverURL(t *testing.T) (*server.Server, string) {
	s := natstest.Start(t, natstest.Options{})
	return s, s.ClientURL()
}
