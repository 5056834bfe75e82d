package gateway

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/store/journal"
	"github.com/agentgw/agentgw/store/lease"
)

// TestSingleInstanceRefusedBesideScaleOut: a single instance started
// while a scaled-out instance runs (a rolling switch, or a second host
// pointed at the deployment) refuses to start, naming the holder. Before
// the leases kept the modes apart, it took the journal in, deleted it
// from under the running instance and decided beside it on a ledger the
// other does not read.
func TestSingleInstanceRefusedBesideScaleOut(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.cfg.Consumer.Partitions = 2
	a := h.startInstance("a")
	waitFor(t, func() bool { return a.held() == 2 })

	gw, err := New(h.cfg, append([]Option{WithClock(h.clock.Now), WithLogger(zerolog.New(h.logs)), WithConn(h.nc)}, h.opts...)...)
	must(t, err)
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = gw.Run(rctx)
	cancel()
	must(t, gw.Close())
	if !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("a single instance beside a scaled-out one: Run = %v; want lease.ErrHeld", err)
	}
	select {
	case <-gw.Ready():
		t.Error("the refused single instance became ready")
	default:
	}
	if _, err := h.js.Stream(ctx, journal.Stream); err != nil {
		t.Errorf("the scaled-out instance's journal after the refused start: %v", err)
	}
	if a.held() != 2 {
		t.Errorf("the scaled-out instance holds %d partitions after the refused start; want 2", a.held())
	}
	h.wantAllowed(h.send(h.body(nil)), "a message decided by the scaled-out instance")
	h.endScaleOut(t, a)
}

// TestScaleOutWaitsForSingleInstance: a scaled-out instance started
// while a single instance runs takes no partition, through several lease
// TTLs, and every message is decided once, by the single instance; once
// that one stops, the scaled-out instance takes every partition at once.
func TestScaleOutWaitsForSingleInstance(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.cfg.Consumer.Partitions = 2
	// The deployment's bucket, at the scaled-out instances' lease TTL
	// (startInstance), which the single instance adopts.
	_, err := lease.EnsureBucket(ctx, h.js, lease.Config{Instance: "setup", Partitions: 2, TTL: 2 * time.Second})
	must(t, err)
	h.start()
	<-h.gw.Ready()
	b := h.startInstance("b")
	time.Sleep(3 * 2 * time.Second)
	if n := b.held(); n != 0 {
		t.Fatalf("the scaled-out instance took %d partitions while a single instance ran", n)
	}
	h.wantAllowed(h.send(h.body(nil)), "a message sent while both ran")
	h.stop()
	waitFor(t, func() bool { return b.held() == 2 })
	h.wantAllowed(h.send(h.body(nil)), "a message decided by the scaled-out instance")
	r, err := invariant.Wait(ctx, h.js, 15*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
	b.stop(t)
}

// TestSingleInstanceStopsWhenItsLeaseIsTaken: a lease key of a running
// single instance written by another instance makes it stop at its next
// renewal: Run ends with lease.ErrLost, and a message sent after that is
// not decided by it.
func TestSingleInstanceStopsWhenItsLeaseIsTaken(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.allowErrors = true
	h.cfg.Consumer.Partitions = 1
	h.start()
	<-h.gw.Ready()
	h.wantAllowed(h.send(h.body(nil)), "a message before the intrusion")
	kv, err := h.js.KeyValue(ctx, lease.DefaultBucket)
	must(t, err)
	if _, err := kv.Put(ctx, "p0", []byte(`{"owner":"intruder","token":"t"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-h.done:
		if !errors.Is(err, lease.ErrLost) {
			t.Fatalf("Run after another instance wrote its lease = %v; want lease.ErrLost", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the single instance kept running after another instance wrote its lease")
	}
	must(t, h.gw.Close())
	h.gw = nil
	seq := h.send(h.body(nil))
	time.Sleep(2 * time.Second)
	if outs := h.outputsFor(seq); len(outs) != 0 {
		t.Errorf("ingress %d decided after the single instance stopped: %v", seq, outs)
	}
	c, err := h.js.Consumer(ctx, StreamIngress, h.cfg.Consumer.Durable)
	must(t, err)
	info, err := c.Info(ctx)
	must(t, err)
	if info.AckFloor.Stream >= seq {
		t.Errorf("ingress %d acknowledged after the single instance stopped", seq)
	}
}

// TestSoleNameKeptInDataDir: a single instance's name in the lease
// bucket is its data directory's, the same at every start (a restart
// after a crash takes its own keys over), made once, readable by its
// owner only, and a file that holds something else is refused rather
// than replaced.
func TestSoleNameKeptInDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := soleName(dir)
	must(t, err)
	if !soleNameRE.MatchString(first) {
		t.Fatalf("made name %q", first)
	}
	again, err := soleName(dir)
	must(t, err)
	if again != first {
		t.Errorf("second start's name %q; want the first's %q", again, first)
	}
	fi, err := os.Stat(filepath.Join(dir, soleIDFile))
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v; want 0600", soleIDFile, fi.Mode().Perm())
	}
	other, err := soleName(t.TempDir())
	must(t, err)
	if other == first {
		t.Error("two data directories got one name")
	}
	must(t, os.WriteFile(filepath.Join(dir, soleIDFile), []byte("p0\n"), 0o600))
	if name, err := soleName(dir); err == nil {
		t.Errorf("a name file holding %q read as %q; want an error", "p0", name)
	}
}

// TestSingleInstanceRidesOutNATSOutage: a single instance whose NATS
// server is down longer than its lease life (TTL − Margin) stops
// deciding when the claim lapses, claims its leases again once NATS is
// back (its own keys, taken over) and goes on deciding, rather than
// ending Run; what it holds is its own again. A request that fails
// while it takes in the journal after the claim (NATS still settling)
// is tried again, not the end of Run either.
func TestSingleInstanceRidesOutNATSOutage(t *testing.T) {
	ctx := context.Background()
	h, outage := outageHarness(t)
	var retires, failed atomic.Int32
	h.beforeRun = func(gw *Gateway) {
		gw.beforeRetire = func() error {
			if retires.Add(1) == 2 { // the first after the start's
				failed.Add(1)
				return errors.New("nats: timeout")
			}
			return nil
		}
	}
	h.start()
	<-h.gw.Ready()
	h.wantAllowed(h.send(h.body(nil)), "a message before the outage")
	outage()

	h.wantAllowed(h.send(h.body(nil)), "a message after the outage")
	select {
	case err := <-h.done:
		h.done <- err
		t.Fatalf("Run ended after a NATS outage: %v", err)
	default:
	}
	if !strings.Contains(h.logs.String(), "leases lapsed") {
		t.Error("the outage did not make the claim lapse: the fault did not happen")
	}
	if failed.Load() != 1 || retires.Load() < 3 {
		t.Errorf("journal looked at %d times, failed %d; want the failed look after the claim tried again", retires.Load(), failed.Load())
	}
	kv, err := h.js.KeyValue(ctx, lease.DefaultBucket)
	must(t, err)
	e, err := kv.Get(ctx, "p0")
	must(t, err)
	if !strings.Contains(string(e.Value()), h.gw.sole.name) {
		t.Errorf("p0 after the outage holds %s; want this instance's claim", e.Value())
	}
	h.stop()
}

// TestSingleInstanceEndsWhenReclaimKeepsFailing: a re-claim whose
// journal take-in keeps failing (the ledger cannot be written) is not
// tried forever while the instance holds every lease and decides
// nothing: /readyz says not ready meanwhile, and Run ends with the error
// after reclaimPatience, so that what supervises the process restarts
// it.
func TestSingleInstanceEndsWhenReclaimKeepsFailing(t *testing.T) {
	defer func(p time.Duration) { reclaimPatience = p }(reclaimPatience)
	reclaimPatience = 3 * time.Second
	h, outage := outageHarness(t)
	var retires atomic.Int32
	h.beforeRun = func(gw *Gateway) {
		gw.beforeRetire = func() error {
			if retires.Add(1) > 1 {
				return errors.New("ledger: disk full")
			}
			return nil
		}
	}
	h.start()
	<-h.gw.Ready()
	h.wantAllowed(h.send(h.body(nil)), "a message before the outage")
	outage()

	waitFor(t, func() bool { return retires.Load() >= 3 })
	if err := h.gw.Readiness(); err == nil {
		t.Error("ready while the re-claim keeps failing and nothing is decided")
	}
	select {
	case err := <-h.done:
		if err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("Run = %v; want the take-in's error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not end while the re-claim kept failing")
	}
	must(t, h.gw.Close())
	h.gw = nil
}

// serverOnDisk gives h a NATS server that keeps its store on disk and a
// connection that reconnects for ever; stop shuts the server down, and
// start starts it again on its port.
func (h *harness) serverOnDisk() (stop, start func()) {
	storeDir := h.t.TempDir()
	h.srv = natstest.Start(h.t, natstest.Options{StoreDir: storeDir})
	port := h.srv.Addr().(*net.TCPAddr).Port
	h.nc = natstest.Connect(h.t, h.srv, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	var err error
	h.js, err = jetstream.New(h.nc)
	must(h.t, err)
	stop = func() {
		h.srv.Shutdown()
		h.srv.WaitForShutdown()
	}
	start = func() {
		h.srv = natstest.Start(h.t, natstest.Options{StoreDir: storeDir, Configure: func(o *server.Options) { o.Port = port }})
	}
	return stop, start
}

// outageHarness is a harness whose NATS server keeps its store on disk,
// with a lease bucket of a 2 s TTL, which a single instance adopts.
// outage stops the server for longer than that (the claim lapses and its
// keys expire) and starts it again on its port.
func outageHarness(t *testing.T) (h *harness, outage func()) {
	h = newHarness(t)
	h.allowErrors = true
	stop, start := h.serverOnDisk()
	_, err := lease.EnsureBucket(context.Background(), h.js, lease.Config{Instance: "setup", Partitions: 1, TTL: 2 * time.Second})
	must(t, err)
	return h, func() {
		stop()
		time.Sleep(4 * time.Second)
		start()
	}
}
