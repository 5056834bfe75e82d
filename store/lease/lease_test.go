package lease

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/internal/natstest"
)

const testTTL = 2 * time.Second

// settle is how long a test waits for something that needs a few
// renewals or one expiry; only failures ever wait that long.
const settle = 5*testTTL + 10*time.Second

func kvFor(t *testing.T, url string, cfg Config) jetstream.KeyValue {
	t.Helper()
	kv, err := EnsureBucket(context.Background(), jsFor(t, url), cfg)
	if err != nil {
		t.Fatalf("EnsureBucket = %v", err)
	}
	return kv
}

func TestSingleInstanceTakesAll(t *testing.T) {
	_, url := serverURL(t)
	rec := newRecorder(t)
	cfg := testConfig("a", 6, testTTL)
	a := start(t, url, cfg, rec)
	waitFor(t, settle, "a to hold all 6 partitions", func() bool { return len(rec.held()["a"]) == 6 })
	held := a.m.Held()
	if len(held) != 6 {
		t.Fatalf("Held() = %d leases; want 6", len(held))
	}
	for _, l := range held {
		if epoch, ok := a.m.Valid(l.Partition); !ok || epoch != l.Epoch {
			t.Errorf("Valid(%d) = %d, %v; want %d, true", l.Partition, epoch, ok, l.Epoch)
		}
	}

	a.stop()
	if h := rec.held(); len(h) != 0 {
		t.Fatalf("after shutdown still held: %v\n%s", h, rec)
	}
	if _, ok := a.m.Valid(0); ok {
		t.Error("Valid(0) after shutdown = true")
	}
	// Released, not left to expire: every key is deleted.
	kv := kvFor(t, url, cfg)
	for p := range 6 {
		assertDeleted(t, kv, partitionKey(p))
	}
	assertDeleted(t, kv, memberKey("a"))
}

func assertDeleted(t *testing.T, kv jetstream.KeyValue, key string) {
	t.Helper()
	h, err := kv.History(context.Background(), key)
	if err != nil || len(h) != 1 || h[0].Operation() != jetstream.KeyValueDelete {
		var ops []string
		for _, e := range h {
			ops = append(ops, e.Operation().String())
		}
		t.Errorf("History(%s) = %v, %v; want one delete", key, ops, err)
	}
}

func balanced(rec *recorder, partitions int, names ...string) bool {
	h := rec.held()
	total, lo, hi := 0, partitions, 0
	for _, n := range names {
		c := len(h[n])
		total += c
		lo, hi = min(lo, c), max(hi, c)
	}
	return total == partitions && hi-lo <= 1
}

func TestInstancesSplitPartitions(t *testing.T) {
	_, url := serverURL(t)
	rec := newRecorder(t)
	const parts = 7
	start(t, url, testConfig("a", parts, testTTL), rec)
	start(t, url, testConfig("b", parts, testTTL), rec)
	waitFor(t, settle, "a and b to split 7 partitions 4/3", func() bool { return balanced(rec, parts, "a", "b") })
	t.Logf("two instances: %v", rec.held())

	start(t, url, testConfig("c", parts, testTTL), rec)
	waitFor(t, settle, "a, b and c to split 7 partitions 3/2/2", func() bool { return balanced(rec, parts, "a", "b", "c") })
	h := rec.held()
	t.Logf("three instances: %v", h)
	for n, ps := range h {
		if len(ps) > 3 { // ceil(7/3)
			t.Errorf("%s holds %d partitions; want at most 3", n, len(ps))
		}
	}
}

// A crashed instance releases nothing: its partitions move only once the
// server has expired its keys, TTL after its last write.
func TestCrashedInstanceTakenOverAfterTTL(t *testing.T) {
	_, url := serverURL(t)
	rec := newRecorder(t)
	const parts = 4
	a := start(t, url, testConfig("a", parts, testTTL), rec)
	start(t, url, testConfig("b", parts, testTTL), rec)
	waitFor(t, settle, "a 2/2 split", func() bool { return balanced(rec, parts, "a", "b") })

	before := a.m.Held()
	a.crash()
	waitFor(t, settle, "b to take every partition", func() bool { return len(rec.held()["b"]) == parts })
	for _, l := range before {
		acq, ok := rec.last("b", l.Partition, true)
		if !ok {
			t.Fatalf("no acquisition of p%d by b\n%s", l.Partition, rec)
		}
		// The lower bound that makes takeover safe: the key outlived the
		// crashed holder's last write by the TTL.
		if earliest := l.Renewed.Add(testTTL); acq.at.Before(earliest) {
			t.Errorf("b took p%d %s before a's lease could have expired\n%s", l.Partition, earliest.Sub(acq.at), rec)
		}
	}
}

// An instance cut off from NATS gives its partitions up at its local
// deadline; the other instance takes them only after that.
func TestCutOffInstanceLosesBeforeTakeover(t *testing.T) {
	_, url := serverURL(t)
	rec := newRecorder(t)
	const parts = 4
	a := start(t, url, testConfig("a", parts, testTTL), rec)
	start(t, url, testConfig("b", parts, testTTL), rec)
	waitFor(t, settle, "a 2/2 split", func() bool { return balanced(rec, parts, "a", "b") })

	mine := rec.held()["a"]
	a.nc.Close() // a keeps running, unable to reach NATS
	cut := a.m.Held()
	waitFor(t, settle, "b to take every partition", func() bool { return len(rec.held()["b"]) == parts })
	for _, l := range cut {
		lose, ok := rec.last("a", l.Partition, false)
		if !ok {
			t.Fatalf("a never called onLose(%d)\n%s", l.Partition, rec)
		}
		acq, _ := rec.last("b", l.Partition, true)
		if !lose.at.Before(acq.at) {
			t.Errorf("p%d: a lost it at %s, b acquired it at %s: not before\n%s", l.Partition, lose.at, acq.at, rec)
		}
		if expiry := l.Renewed.Add(testTTL); !lose.at.Before(expiry) {
			t.Errorf("p%d: a lost it %s after the server could expire it", l.Partition, lose.at.Sub(expiry))
		}
	}
	if len(cut) != len(mine) {
		t.Errorf("a held %v before the cut and %d leases after it", mine, len(cut))
	}
}

// A write by someone else makes the holder's next renewal fail its
// revision check: the holder stops at once and respects the other key
// until it expires.
func TestRenewalRevisionConflict(t *testing.T) {
	_, url := serverURL(t)
	rec := newRecorder(t)
	cfg := testConfig("a", 1, testTTL)
	a := start(t, url, cfg, rec)
	waitFor(t, settle, "a to hold p0", func() bool { return len(rec.held()["a"]) == 1 })
	first := a.m.Held()[0]

	kv := kvFor(t, url, cfg)
	intruded := time.Now()
	if _, err := kv.Put(context.Background(), partitionKey(0), value{Owner: "intruder", Token: "t"}.encode()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settle, "a to give p0 up", func() bool { return len(rec.held()["a"]) == 0 })
	lose, _ := rec.last("a", 0, false)
	if !lose.at.Before(first.Deadline) {
		t.Errorf("onLose at %s, after the local deadline %s: the conflict was not detected", lose.at, first.Deadline)
	}
	// The intruder's key is never renewed: a takes p0 back once it expires.
	waitFor(t, settle, "a to take p0 back", func() bool { return len(rec.held()["a"]) == 1 })
	again, _ := rec.last("a", 0, true)
	if again.at.Before(intruded.Add(testTTL)) {
		t.Errorf("a took p0 back %s after the intruder's write; want at least the TTL %s", again.at.Sub(intruded), testTTL)
	}
	if again.epoch <= first.Epoch {
		t.Errorf("epoch after retaking = %d; want > %d", again.epoch, first.Epoch)
	}
}

// A graceful stop deletes the keys after onLose: the other instance takes
// over before the keys could have expired.
func TestGracefulReleaseHandsOver(t *testing.T) {
	_, url := serverURL(t)
	rec := newRecorder(t)
	const parts = 4
	const ttl = 20 * time.Second // long: a handover by expiry would fail the test
	a := start(t, url, testConfig("a", parts, ttl), rec)
	waitFor(t, settle, "a to hold all partitions", func() bool { return len(rec.held()["a"]) == parts })
	start(t, url, testConfig("b", parts, ttl), rec)
	// a sheds half to b: also a graceful handover.
	waitFor(t, settle, "a 2/2 split", func() bool { return balanced(rec, parts, "a", "b") })

	before := a.m.Held()
	a.stop()
	waitFor(t, ttl+10*time.Second, "b to take every partition", func() bool { return len(rec.held()["b"]) == parts })
	for _, l := range before {
		lose, _ := rec.last("a", l.Partition, false)
		acq, _ := rec.last("b", l.Partition, true)
		if !lose.at.Before(acq.at) {
			t.Errorf("p%d: b acquired at %s, not after a's onLose at %s", l.Partition, acq.at, lose.at)
		}
		if !acq.at.Before(l.Renewed.Add(ttl)) {
			t.Errorf("p%d: b acquired it only after a's key could expire: the release did not hand it over", l.Partition)
		}
	}
}

// A replicated bucket on a three-node cluster: losing the bucket's stream
// leader never lets two instances hold a partition, and every partition is
// held again afterwards.
func TestClusterLeaderLoss(t *testing.T) {
	servers := natstest.StartCluster(t, 3)
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	rec := newRecorder(t)
	const parts = 6
	const ttl = 3 * time.Second
	names := []string{"a", "b", "c"}
	// The gateway creates the bucket before its lease manager runs
	// (setupScaleOut); so does this test, retrying while the new cluster
	// settles, rather than have three instances race to create a
	// replicated stream, which under load can refuse one of them.
	setup := testConfig("setup", parts, ttl)
	setup.Replicas = 3
	ensureBucket(t, urls[0], setup, 30*time.Second)
	var ins []*instance
	for i, n := range names {
		cfg := testConfig(n, parts, ttl)
		cfg.Replicas = 3
		// Each instance prefers its own node and fails over to the others.
		order := append([]string{urls[i]}, slices.Delete(slices.Clone(urls), i, i+1)...)
		ins = append(ins, start(t, strings.Join(order, ","), cfg, rec))
	}
	waitForSplit(t, 30*time.Second, "a 2/2/2 split", rec, parts, ins)

	var leader int = -1
	waitFor(t, 10*time.Second, "the lease stream's leader", func() bool {
		for i, s := range servers {
			if s.JetStreamIsStreamLeader("$G", "KV_"+DefaultBucket) {
				leader = i
				return true
			}
		}
		return false
	})
	servers[leader].Shutdown()
	servers[leader].WaitForShutdown()
	waitForSplit(t, 30*time.Second, "every partition held again", rec, parts, ins)
	losses := 0
	rec.mu.Lock()
	for _, e := range rec.events {
		if !e.acquire {
			losses++
		}
	}
	rec.mu.Unlock()
	t.Logf("after the leader (n%d) went: %v; %d leases given up on the way", leader, rec.held(), losses)
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Instance: "gw-1", Partitions: 8}
	for _, tc := range []struct {
		name string
		cfg  func(Config) Config
		want string // substring of the error; "" = valid
	}{
		{"ok/defaults", func(c Config) Config { return c }, ""},
		{"ok/explicit", func(c Config) Config { c.TTL, c.Renew, c.Margin = 3*time.Second, time.Second, time.Second; return c }, ""},
		{"bad/instance", func(c Config) Config { c.Instance = "gw 1"; return c }, "instance"},
		{"bad/instance-empty", func(c Config) Config { c.Instance = ""; return c }, "instance"},
		{"bad/partitions", func(c Config) Config { c.Partitions = 0; return c }, "partitions"},
		{"bad/partitions-high", func(c Config) Config { c.Partitions = MaxPartitions + 1; return c }, "partitions"},
		{"bad/ttl", func(c Config) Config { c.TTL = 500 * time.Millisecond; return c }, "ttl"},
		{"bad/margin", func(c Config) Config { c.Margin = c.withDefaults().TTL; return c }, "margin"},
		{"bad/renew", func(c Config) Config {
			c.TTL, c.Margin, c.Renew = 10*time.Second, 4*time.Second, 4*time.Second
			return c
		}, "renew"},
		{"bad/replicas", func(c Config) Config { c.Replicas = 7; return c }, "replicas"},
		{"bad/bucket", func(c Config) Config { c.Bucket = "a.b"; return c }, "bucket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg(ok).Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v; want %q", err, tc.want)
			}
		})
	}
	// Every problem at once.
	err := Config{Instance: "", Partitions: 0, TTL: time.Millisecond}.Validate()
	if n := strings.Count(err.Error(), "lease:"); n < 3 {
		t.Errorf("Validate() reported %d problems: %v; want all of them", n, err)
	}
}

func TestQuotaSplitsEvenly(t *testing.T) {
	for parts := 1; parts <= 40; parts++ {
		for n := 1; n <= 7; n++ {
			var members []string
			for i := range n {
				members = append(members, string(rune('a'+i)))
			}
			sum, lo, hi := 0, parts, 0
			for _, m := range members {
				q := quota(parts, members, m)
				sum, lo, hi = sum+q, min(lo, q), max(hi, q)
			}
			if sum != parts || hi-lo > 1 || hi > (parts+n-1)/n {
				t.Errorf("quota(%d partitions, %d members): sum %d, min %d, max %d", parts, n, sum, lo, hi)
			}
		}
	}
}

func TestBucketTTLMismatchRefused(t *testing.T) {
	_, url := serverURL(t)
	kvFor(t, url, testConfig("a", 1, testTTL))
	_, err := EnsureBucket(context.Background(), jsFor(t, url), testConfig("b", 1, 2*testTTL))
	if !errors.Is(err, ErrBucketMismatch) {
		t.Fatalf("EnsureBucket(other ttl) = %v; want ErrBucketMismatch", err)
	}
}

func TestMemberKeys(t *testing.T) {
	if id, ok := parseMemberKey(memberKey("gw-1")); !ok || id != "gw-1" {
		t.Errorf("parseMemberKey(memberKey(gw-1)) = %q, %v", id, ok)
	}
	for _, k := range []string{"p1", "m.", "m.a.b", "x.gw-1"} {
		if id, ok := parseMemberKey(k); ok {
			t.Errorf("parseMemberKey(%q) = %q, true; want false", k, id)
		}
	}
}
