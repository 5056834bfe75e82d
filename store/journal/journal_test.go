package journal

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/internal/natstest"
)

func TestAppendReplayByPartition(t *testing.T) {
	js, _ := setup(t, Config{})
	w := newWriter(t, js, Config{})
	ctx := context.Background()
	for p, epoch := range []uint64{3, 4} {
		if err := w.Claim(ctx, p, epoch); err != nil {
			t.Fatalf("Claim(%d) = %v", p, err)
		}
	}
	want := map[int][]Record{}
	exp := at(time.Minute)
	for i := range 300 {
		p := i % 2
		recs := ingressRecords(i, 200, exp)
		if i%10 == 0 {
			recs = append(recs,
				Record{Op: OpHold, ID: "h" + strconv.Itoa(i), Expires: exp, Value: []byte("held")},
				Record{Op: OpMarker, MarkerKind: "answered", ID: "a" + strconv.Itoa(i), Expires: exp},
				Record{Op: OpHoldDelete, ID: "h" + strconv.Itoa(i)})
		}
		if err := w.Append(ctx, p, recs); err != nil {
			t.Fatalf("Append(%d) = %v", p, err)
		}
		want[p] = append(want[p], recs...)
	}
	for p := range 2 {
		got := replayAll(t, js, p, time.Time{})
		if len(got) != len(want[p]) {
			t.Fatalf("Replay(p%d) = %d records; want %d", p, len(got), len(want[p]))
		}
		if !reflect.DeepEqual(got, want[p]) {
			t.Errorf("Replay(p%d) differs from what was appended to it", p)
		}
	}
	if got := replayAll(t, js, 7, time.Time{}); len(got) != 0 {
		t.Errorf("Replay of an unused partition = %d records; want 0", len(got))
	}
}

// Records are packed into messages no larger than MaxMessageBytes; a
// record never straddles two.
func TestAppendPacksMessages(t *testing.T) {
	c := Config{MaxMessageBytes: 4096}
	js, _ := setup(t, c)
	w := newWriter(t, js, c)
	ctx := context.Background()
	if err := w.Claim(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	var want []Record
	for i := range 60 {
		want = append(want, ingressRecords(i, 500, at(time.Minute))...)
	}
	if err := w.Append(ctx, 0, want); err != nil {
		t.Fatal(err)
	}
	st, _ := js.Stream(ctx, Stream)
	info, _ := st.Info(ctx)
	if info.State.Msgs < 10 {
		t.Errorf("stream holds %d messages; want the batch split over many", info.State.Msgs)
	}
	if got := replayAll(t, js, 0, time.Time{}); !reflect.DeepEqual(got, want) {
		t.Errorf("Replay after packing: %d records, equal = false; want %d", len(got), len(want))
	}
	big := Record{Op: OpOutcome, Seq: 1, Value: make([]byte, 5000)}
	if err := w.Append(ctx, 0, []Record{big}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Append(record larger than a message) = %v; want ErrInvalid", err)
	}
}

func TestAppendRefusesRecordsOutlivingTheJournal(t *testing.T) {
	c := Config{MaxAge: 10 * time.Minute}
	js, _ := setup(t, c)
	w := newWriter(t, js, c)
	if err := w.Claim(context.Background(), 0, 1); err != nil {
		t.Fatal(err)
	}
	hold := Record{Op: OpHold, ID: "approval", Expires: at(15 * time.Minute), Value: []byte("v")}
	if err := w.Append(context.Background(), 0, []Record{hold}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Append(hold due in 15m, max age 10m) = %v; want ErrInvalid", err)
	}
	if err := w.Append(context.Background(), 0, []Record{{Op: OpHoldDelete}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Append(invalid record) = %v; want ErrInvalid", err)
	}
}

func TestRecordsOlderThanMaxAgeAreGone(t *testing.T) {
	c := Config{MaxAge: time.Second}
	js, _ := setup(t, c)
	w := newWriter(t, js, c)
	ctx := context.Background()
	if err := w.Claim(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	old := []Record{{Op: OpMarker, MarkerKind: "k", ID: "old", Expires: at(500 * time.Millisecond)}}
	if err := w.Append(ctx, 0, old); err != nil {
		t.Fatal(err)
	}
	st, _ := js.Stream(ctx, Stream)
	waitFor(t, 15*time.Second, "the stream to expire the old messages", func() bool {
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	if got := replayAll(t, js, 0, time.Time{}); len(got) != 0 {
		t.Errorf("Replay after max age = %+v; want nothing", got)
	}
	// The claim aged out with them: the writer must claim again.
	fresh := []Record{{Op: OpMarker, MarkerKind: "k", ID: "new", Expires: at(500 * time.Millisecond)}}
	if err := w.Append(ctx, 0, fresh); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("Append after the claim aged out = %v; want ErrNotClaimed", err)
	}
	if err := w.Claim(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, 0, fresh); err != nil {
		t.Fatal(err)
	}
	if got := replayAll(t, js, 0, time.Time{}); len(got) != 1 || got[0].ID != "new" {
		t.Errorf("Replay = %+v; want only the new record", got)
	}
	// What the age limit removed is no loss: neither the append that
	// found its claim gone nor the claim that found the stream empty
	// marked one.
	if got := lastLoss(t, js); !got.IsZero() {
		t.Errorf("LastLoss after an age-out = %s; want none", got)
	}
}

func TestReplaySince(t *testing.T) {
	js, _ := setup(t, Config{})
	w := newWriter(t, js, Config{})
	ctx := context.Background()
	if err := w.Claim(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, 0, ingressRecords(1, 0, at(time.Minute))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	since := time.Now()
	time.Sleep(50 * time.Millisecond)
	later := ingressRecords(2, 0, at(time.Minute))
	if err := w.Append(ctx, 0, later); err != nil {
		t.Fatal(err)
	}
	if got := replayAll(t, js, 0, since); !reflect.DeepEqual(got, later) {
		t.Errorf("Replay(since) = %d records; want the %d appended after it", len(got), len(later))
	}
	if got := replayAll(t, js, 0, time.Now().Add(time.Second)); len(got) != 0 {
		t.Errorf("Replay(since the future) = %d records; want 0", len(got))
	}
}

// A claim with a newer epoch fences the older writer: its appends fail and
// nothing of it lands after the claim.
func TestClaimFencesOlderWriter(t *testing.T) {
	js, url := setup(t, Config{})
	ctx := context.Background()
	older := newWriter(t, js, Config{})
	newer := newWriter(t, jsFor(t, url), Config{})
	exp := at(time.Minute)
	a := ingressRecords(1, 10, exp)
	b := ingressRecords(2, 10, exp)
	c := ingressRecords(3, 10, exp)

	if err := older.Claim(ctx, 0, 5); err != nil {
		t.Fatal(err)
	}
	if err := older.Append(ctx, 0, a); err != nil {
		t.Fatal(err)
	}
	if err := newer.Claim(ctx, 0, 9); err != nil {
		t.Fatal(err)
	}
	if err := older.Append(ctx, 0, c); !errors.Is(err, ErrFenced) {
		t.Fatalf("older Append after a newer claim = %v; want ErrFenced", err)
	}
	if err := older.Append(ctx, 0, c); !errors.Is(err, ErrNotClaimed) {
		t.Errorf("older Append once fenced = %v; want ErrNotClaimed", err)
	}
	if err := older.Claim(ctx, 0, 5); !errors.Is(err, ErrFenced) {
		t.Errorf("Claim with an older epoch = %v; want ErrFenced", err)
	}
	if err := newer.Append(ctx, 0, b); err != nil {
		t.Fatal(err)
	}
	if got, want := replayAll(t, js, 0, time.Time{}), slices.Concat(a, b); !reflect.DeepEqual(got, want) {
		t.Errorf("Replay = %d records; want the old owner's then the new owner's (%d)", len(got), len(want))
	}
}

func TestAppendNeedsAClaim(t *testing.T) {
	js, _ := setup(t, Config{})
	w := newWriter(t, js, Config{})
	ctx := context.Background()
	recs := ingressRecords(1, 0, at(time.Minute))
	if err := w.Append(ctx, 0, recs); !errors.Is(err, ErrNotClaimed) {
		t.Errorf("Append without Claim = %v; want ErrNotClaimed", err)
	}
	if err := w.Claim(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	w.Release(0)
	if err := w.Append(ctx, 0, recs); !errors.Is(err, ErrNotClaimed) {
		t.Errorf("Append after Release = %v; want ErrNotClaimed", err)
	}
	if err := w.Claim(ctx, 0, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("Claim(epoch 0) = %v; want ErrInvalid", err)
	}
}

// An append whose answer was lost leaves the writer unsure of its last
// sequence; the next append reads it back and carries on.
func TestAppendAfterLostAnswer(t *testing.T) {
	js, _ := setup(t, Config{})
	w := newWriter(t, js, Config{})
	ctx := context.Background()
	if err := w.Claim(ctx, 0, 2); err != nil {
		t.Fatal(err)
	}
	a, b, c := ingressRecords(1, 0, at(time.Minute)), ingressRecords(2, 0, at(time.Minute)), ingressRecords(3, 0, at(time.Minute))
	if err := w.Append(ctx, 0, a); err != nil {
		t.Fatal(err)
	}
	pt := w.part(0)
	stale := pt.last
	if err := w.Append(ctx, 0, b); err != nil {
		t.Fatal(err)
	}
	// As if b's PubAck never arrived: the writer still believes in a's
	// sequence, and its check fails against its own message.
	pt.last = stale
	if err := w.Append(ctx, 0, c); err != nil {
		t.Fatalf("Append after a lost answer = %v", err)
	}
	pt.last = 0 // as after a timeout
	if err := w.Append(ctx, 0, a); err != nil {
		t.Fatalf("Append with an unknown last sequence = %v", err)
	}
	if got, want := replayAll(t, js, 0, time.Time{}), slices.Concat(a, b, c, a); !reflect.DeepEqual(got, want) {
		t.Errorf("Replay = %d records; want %d", len(got), len(want))
	}
}

func TestReplayStopsOnFnErrorAndCorruption(t *testing.T) {
	js, _ := setup(t, Config{})
	w := newWriter(t, js, Config{})
	ctx := context.Background()
	if err := w.Claim(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, 0, ingressRecords(1, 0, at(time.Minute))); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	n := 0
	err := Replay(ctx, js, 0, time.Time{}, func(Record) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("Replay with a failing fn = %v after %d records; want stop after 1", err, n)
	}
	for i, tc := range []struct {
		body []byte
		want error
	}{{[]byte{formatV1, 5, 99}, ErrCorrupt}, {[]byte{9}, ErrVersion}} {
		p := 1 + i
		m := &nats.Msg{Subject: Subject(p), Header: nats.Header{epochHeader: []string{"1"}}, Data: tc.body}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
		err := Replay(ctx, js, p, time.Time{}, func(Record) error { return nil })
		if !errors.Is(err, tc.want) {
			t.Errorf("Replay(%x) = %v; want %v", tc.body, err, tc.want)
		}
	}
}

// On a three-node cluster at R3, losing the stream leader loses no
// acknowledged record: appends that failed are retried, as the gateway
// would by not acking the batch, and the journal read from another node
// holds every acknowledged record in order.
func TestClusterLeaderLossKeepsAcknowledgedRecords(t *testing.T) {
	servers := natstest.StartCluster(t, 3)
	c := Config{Replicas: 3}
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	js := jsFor(t, urls[0]+","+urls[1]+","+urls[2])
	ctx := context.Background()
	waitFor(t, 30*time.Second, "the R3 journal stream", func() bool { return EnsureStream(ctx, js, c) == nil })
	w := newWriter(t, js, c)
	waitFor(t, 30*time.Second, "a claim", func() bool { return w.Claim(ctx, 0, 1) == nil })

	var acked []Record
	leaderGone, totalRetries := false, 0
	for i := range 40 {
		batch := ingressRecords(i, 300, at(time.Minute))
		if i == 20 {
			for _, s := range servers {
				if s.JetStreamIsStreamLeader("$G", Stream) {
					s.Shutdown()
					leaderGone = true
					break
				}
			}
		}
		retries := 0
		for {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := w.Append(actx, 0, batch)
			cancel()
			if err == nil {
				break
			}
			if !errors.Is(err, ErrNATS) || retries > 50 {
				t.Fatalf("Append(batch %d) = %v after %d retries", i, err, retries)
			}
			retries++
			time.Sleep(200 * time.Millisecond)
		}
		acked = append(acked, batch...)
		totalRetries += retries
	}
	if !leaderGone {
		t.Fatal("found no stream leader to stop")
	}
	var reader jetstream.JetStream
	for _, s := range servers {
		if s.Running() {
			reader = jsFor(t, s.ClientURL())
			break
		}
	}
	got := replayAll(t, reader, 0, time.Time{})
	st, err := reader.Stream(ctx, Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the leader went: %d retried appends; stream R%d, leader %s, %d replicas", totalRetries, info.Config.Replicas, info.Cluster.Leader, len(info.Cluster.Replicas))
	// A retried batch may be in the journal twice; every acknowledged
	// record must be there, in order of first appearance.
	seen := map[string]bool{}
	var firsts []Record
	for _, r := range got {
		k := fmt.Sprintf("%s/%d/%s", r.Op, r.Seq, r.ID)
		if !seen[k] {
			seen[k] = true
			firsts = append(firsts, r)
		}
	}
	if !reflect.DeepEqual(firsts, acked) {
		t.Errorf("journal after leader loss: %d distinct records (%d total); want the %d acknowledged, in order", len(firsts), len(got), len(acked))
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		ok   bool
	}{
		{"ok/zero", Config{}, true},
		{"ok/explicit", Config{MaxAge: time.Hour, Replicas: 3, MaxMessageBytes: 1 << 20}, true},
		{"bad/max-age", Config{MaxAge: time.Millisecond}, false},
		{"bad/replicas", Config{Replicas: 9}, false},
		{"bad/message", Config{MaxMessageBytes: 10}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.c.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate(%+v) = %v; want ok = %v", tc.c, err, tc.ok)
			}
		})
	}
}

// A replay whose consumer stops delivering while the journal holds more
// gives up with ErrStalled instead of waiting forever: the consumer is
// paused on the server after the first record, as a consumer that lost
// its stream's leader delivers nothing and reports nothing.
func TestReplayStallIsAnError(t *testing.T) {
	js, _ := setup(t, Config{})
	w := newWriter(t, js, Config{})
	ctx := context.Background()
	if err := w.Claim(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	total := 0
	for i := range 40 {
		recs := ingressRecords(i, 2000, at(time.Minute))
		if err := w.Append(ctx, 0, recs); err != nil {
			t.Fatal(err)
		}
		total += len(recs)
	}
	restore := func(mb int, idle, stall time.Duration) { replayMaxBytes, idleCheck, replayStall = mb, idle, stall }
	t.Cleanup(func() { restore(replayMaxBytes, idleCheck, replayStall) })
	restore(4<<10, 100*time.Millisecond, time.Second)

	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	n := 0
	start := time.Now()
	err := Replay(rctx, js, 0, time.Time{}, func(Record) error {
		if n++; n == 1 {
			st, err := js.Stream(rctx, Stream)
			if err != nil {
				return err
			}
			for name := range st.ListConsumers(rctx).Info() {
				if _, err := js.PauseConsumer(rctx, Stream, name.Name, time.Now().Add(time.Hour)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if !errors.Is(err, ErrStalled) || !errors.Is(err, ErrNATS) {
		t.Fatalf("Replay with its consumer paused = %v after %d records; want ErrStalled", err, n)
	}
	if n >= total {
		t.Fatalf("the pause came too late: all %d records were delivered", n)
	}
	t.Logf("gave up after %d records, in %s", n, time.Since(start).Round(time.Millisecond))
	// A new replay, with a new consumer, reads everything.
	restore(16<<20, 2*time.Second, 15*time.Second)
	if got := replayAll(t, js, 0, time.Time{}); len(got) != total {
		t.Errorf("Replay after the stall = %d records; want %d", len(got), total)
	}
}
