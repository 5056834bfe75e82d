package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects/reason"
)

// waitSettled waits until durable on the capability stream exists, has
// nothing pending or unacknowledged and has its ack floor at floor.
func (w *world) waitSettled(durable string, floor uint64) {
	w.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		info, err := w.js.Consumer(context.Background(), StreamCapability, durable)
		if err == nil {
			i := info.CachedInfo()
			if i.NumPending == 0 && i.NumAckPending == 0 && i.AckFloor.Stream == floor {
				return
			}
			err = fmt.Errorf("pending %d, ack pending %d, ack floor %d; want 0, 0, %d", i.NumPending, i.NumAckPending, i.AckFloor.Stream, floor)
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("consumer %s: %v", durable, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// copyMsg is m re-published under another Nats-Msg-Id: the same subject,
// headers and bytes, so JetStream stores it at a new sequence.
func copyMsg(m *nats.Msg, msgID string) *nats.Msg {
	c := &nats.Msg{Subject: m.Subject, Header: nats.Header{}, Data: m.Data}
	for k, v := range m.Header {
		c.Header[k] = append([]string(nil), v...)
	}
	c.Header.Set(nats.MsgIdHdr, msgID)
	return c
}

// recorder is a Consumer's handler and OnReject, recording both.
type recorder struct {
	mu       sync.Mutex
	calls    []string // message id per handler call
	rejected []rejection
	fail     int // handler calls to fail (nak) first
}

func (r *recorder) handle(_ context.Context, d *Delivery) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, d.Envelope.MessageID)
	if len(r.calls) <= r.fail {
		return errors.New("transient")
	}
	return nil
}

func (r *recorder) reject(subject string, err error) {
	r.mu.Lock()
	r.rejected = append(r.rejected, rejection{subject, err})
	r.mu.Unlock()
}

// rejections returns how many rejections carry code.
func (r *recorder) rejections(code reason.Code) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rj := range r.rejected {
		if errors.Is(rj.err, code) {
			n++
		}
	}
	return n
}

// consumeInBackground runs c.Consume until the returned stop is called;
// stop returns Consume's result once every handler call has finished.
func consumeInBackground(t *testing.T, c *Consumer, r *recorder) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan error, 1)
	go func() { done <- c.Consume(ctx, r.handle) }()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("Consume did not return")
			return nil
		}
	}
}

// TestConsumerTermsRepublishedCopy: an exact copy of a delivery
// re-published under a new Nats-Msg-Id (a new stream sequence, past
// JetStream's de-duplication) carries the same decision token; the
// consumer does not hand the same decision over twice. Its handler fails
// the first time (nak): the decision is handed over once more, from the
// original's redelivery or the copy, whichever comes first, and the
// other is terminated as a duplicate.
func TestConsumerTermsRepublishedCopy(t *testing.T) {
	w := newWorld(t)
	w.capStream()
	a := w.newActor(testTenant)
	consumerKey := mustKey(t, identity.NewCurve)
	box, err := identity.NewBox(consumerKey)
	if err != nil {
		t.Fatal(err)
	}
	genuine := forward{w: w, a: a, target: testTarget, plain: []byte(`{"order":"C-3"}`), sealed: true, consumer: box}.msg()
	genuine.Header.Set(nats.MsgIdHdr, "agw-output-1")
	w.publish(genuine)                                // seq 1
	w.publish(copyMsg(genuine, "republished-copy-2")) // seq 2

	r := &recorder{fail: 1}
	cfg := DefaultConsumerConfig()
	cfg.Tenant, cfg.Targets, cfg.Curve = testTenant, []string{testTarget}, consumerKey
	cfg.TrustedGateways, cfg.Durable = []string{w.gwSign.PublicKey()}, "refunds"
	cfg.OnReject = r.reject
	c, err := NewConsumer(w.js, cfg, WithClock(func() time.Time { return testClock }))
	if err != nil {
		t.Fatal(err)
	}
	stop := consumeInBackground(t, c, r)
	w.waitSettled("refunds", 2)
	if err := stop(); err != nil {
		t.Fatalf("Consume = %v", err)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.calls) != 2 {
		t.Errorf("handler called %d times; want 2 (seq 1, nak'd, then its redelivery or the copy, whichever comes first)", len(r.calls))
	}
	if len(r.rejected) != 1 || !errors.Is(r.rejected[0].err, reason.DecisionDuplicate) || r.rejected[0].subject != genuine.Subject {
		t.Errorf("OnReject calls = %v; want one %v for the copy", r.rejected, reason.DecisionDuplicate)
	}
}

// TestTokenRecord: a token is claimed once per stream sequence, and again
// only on that sequence's redelivery (delivered ≥ 2); another sequence is
// a copy; a full record refuses new tokens and makes room
// only as tokens expire; a clock that steps back never revives a token
// whose entry was dropped.
func TestTokenRecord(t *testing.T) {
	t0 := testClock
	exp := t0.Add(time.Minute)
	type step struct {
		id     string
		seq    uint64
		n      uint64 // JetStream's NumDelivered
		exp    time.Time
		now    time.Time
		want   error  // nil = handed over
		settle string // once handed over: "ok", "fail", or "" (the handler still runs)
	}
	cases := []struct {
		name  string
		max   int
		steps []step
	}{
		{"allow/redelivery_after_a_failure", 4, []step{
			{"jti-a", 1, 1, exp, t0, nil, "fail"},
			{"jti-a", 1, 2, exp, t0.Add(time.Second), nil, "fail"},
			{"jti-a", 1, 3, exp, t0.Add(2 * time.Second), nil, "ok"},
			{"jti-a", 1, 4, exp, t0.Add(3 * time.Second), errHandled, ""},
		}},
		{"ack/redelivery_after_success", 4, []step{
			{"jti-a", 1, 1, exp, t0, nil, "ok"}, // its ack lost, or the handler ran past AckWait
			{"jti-a", 1, 2, exp, t0.Add(time.Second), errHandled, ""},
		}},
		{"leave/redelivery_while_handling", 4, []step{
			{"jti-a", 1, 1, exp, t0, nil, ""},
			{"jti-a", 1, 2, exp, t0.Add(time.Second), errHandling, ""},
		}},
		{"allow/first_seen_on_a_redelivery", 4, []step{
			{"jti-a", 1, 3, exp, t0, nil, "ok"},
		}},
		{"deny/same_sequence_delivered_first_again", 4, []step{
			{"jti-a", 1, 1, exp, t0, nil, "ok"},
			{"jti-a", 1, 1, exp, t0.Add(time.Second), reason.DecisionDuplicate, ""}, // the durable created again
			{"jti-a", 1, 2, exp, t0.Add(2 * time.Second), errHandled, ""},           // the first one's redelivery
		}},
		{"allow/failed_then_delivered_first_again", 4, []step{
			{"jti-a", 1, 1, exp, t0, nil, "fail"},
			{"jti-a", 1, 1, exp, t0.Add(time.Second), nil, "ok"}, // the durable created again: not handled yet
			{"jti-a", 1, 1, exp, t0.Add(2 * time.Second), reason.DecisionDuplicate, ""},
		}},
		{"allow/failed_then_copied", 4, []step{
			{"jti-a", 1, 1, exp, t0, nil, "fail"},
			{"jti-a", 7, 1, exp, t0.Add(time.Second), nil, ""},
			{"jti-a", 1, 2, exp, t0.Add(2 * time.Second), reason.DecisionDuplicate, ""},
		}},
		{"deny/copy_at_another_sequence", 4, []step{
			{"jti-a", 1, 1, exp, t0, nil, "ok"},
			{"jti-a", 7, 1, exp, t0.Add(time.Second), reason.DecisionDuplicate, ""},
			{"jti-a", 7, 2, exp, t0.Add(time.Second), reason.DecisionDuplicate, ""},
			{"jti-a", 1, 2, exp, t0.Add(2 * time.Second), errHandled, ""},
		}},
		{"deny/copy_while_handling", 4, []step{
			{"jti-a", 1, 1, exp, t0, nil, ""},
			{"jti-a", 7, 1, exp, t0.Add(time.Second), reason.DecisionDuplicate, ""},
		}},
		{"deny/copy_just_before_expiry", 4, []step{
			{"jti-a", 1, 1, exp, t0, nil, "ok"},
			{"jti-a", 2, 1, exp, exp, reason.DecisionDuplicate, ""},
		}},
		{"deny/full_refuses_new_until_expiry", 1, []step{
			{"jti-a", 1, 1, exp, t0, nil, "fail"},
			{"jti-b", 2, 1, exp.Add(time.Hour), t0, reason.DecisionRecordFull, ""},
			{"jti-a", 1, 2, exp, t0, nil, "ok"}, // its own redelivery still passes
			{"jti-b", 2, 2, exp.Add(time.Hour), exp.Add(time.Nanosecond), nil, "ok"},
			{"jti-b", 3, 1, exp.Add(time.Hour), exp.Add(time.Second), reason.DecisionDuplicate, ""},
		}},
		{"deny/clock_stepped_back_after_expiry", 4, []step{
			{"jti-a", 1, 1, exp, t0, nil, "ok"},
			{"jti-z", 9, 1, exp.Add(time.Hour), exp.Add(time.Second), nil, "ok"}, // drops jti-a
			{"jti-a", 2, 1, exp, t0, reason.DecisionExpired, ""},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newTokenRecord(tc.max)
			for i, s := range tc.steps {
				err := r.claim(s.id, "c1", s.seq, s.n, s.exp, s.now)
				if s.want == nil && err != nil || s.want != nil && !errors.Is(err, s.want) {
					t.Fatalf("step %d: claim(%s, seq %d) = %v; want %v", i, s.id, s.seq, err, s.want)
				}
				if err == nil && s.settle != "" {
					r.settle(s.id, s.settle == "ok")
				}
			}
			if n := r.len(); n > tc.max {
				t.Errorf("record holds %d tokens; max %d", n, tc.max)
			}
		})
	}
}

// TestConsumerRefusesWhenTokenRecordFull: with a full record a new
// delivery is handed back, not handed over unrecorded, and is handed over
// once the token before it has expired.
func TestConsumerRefusesWhenTokenRecordFull(t *testing.T) {
	w := newWorld(t)
	w.capStream()
	a := w.newActor(testTenant)
	f := forward{w: w, a: a, target: "orders.status", plain: []byte(`{"q":"status"}`)}
	first := f.msg() // expires at testClock+1m
	f.edit = func(c *decision.Claims) { c.Expires = testClock.Add(10 * time.Minute) }
	second := f.msg()
	w.publish(first)
	w.publish(second)

	var now atomic.Pointer[time.Time]
	now.Store(&testClock)
	r := &recorder{}
	cfg := DefaultConsumerConfig()
	cfg.Tenant, cfg.Targets, cfg.TrustedGateways = testTenant, []string{"orders.status"}, []string{w.gwSign.PublicKey()}
	cfg.Durable, cfg.MaxTokens, cfg.NakDelay, cfg.OnReject = "status", 1, 20*time.Millisecond, r.reject
	c, err := NewConsumer(w.js, cfg, WithClock(func() time.Time { return *now.Load() }))
	if err != nil {
		t.Fatal(err)
	}
	stop := consumeInBackground(t, c, r)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("Consume = %v", err)
		}
	}()
	waitFor(t, "the second delivery refused as the record is full", func() bool { return r.rejections(reason.DecisionRecordFull) > 0 })
	r.mu.Lock()
	handled := slices.Clone(r.calls)
	r.mu.Unlock()
	if len(handled) != 1 {
		t.Fatalf("handler saw %d deliveries while the record was full; want only the first", len(handled))
	}
	// The first token expires (1 m + 30 s skew): room for the second.
	later := testClock.Add(2 * time.Minute)
	now.Store(&later)
	w.waitSettled("status", 2)
	full := r.rejections(reason.DecisionRecordFull)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.calls) != 2 || r.calls[0] == r.calls[1] {
		t.Errorf("handler saw %v; want the first message, then the second once", r.calls)
	}
	if len(r.rejected) != full {
		t.Errorf("OnReject calls = %v; want only %v", r.rejected, reason.DecisionRecordFull)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTokenRecordAnotherConsumer: the same stream sequence delivered by
// another JetStream consumer (two ephemeral consumers each read the whole
// stream) is not a redelivery: the decision is handed over once.
func TestTokenRecordAnotherConsumer(t *testing.T) {
	exp := testClock.Add(time.Minute)
	r := newTokenRecord(4)
	if err := r.claim("jti-a", "c1", 1, 1, exp, testClock); err != nil {
		t.Fatal(err)
	}
	if err := r.claim("jti-a", "c2", 1, 1, exp, testClock.Add(time.Second)); !errors.Is(err, reason.DecisionDuplicate) {
		t.Errorf("same sequence from another consumer = %v; want %s", err, reason.DecisionDuplicate)
	}
	r.settle("jti-a", false) // handed back
	if err := r.claim("jti-a", "c1", 1, 2, exp, testClock.Add(2*time.Second)); err != nil {
		t.Errorf("redelivery by the first consumer = %v; want handed over", err)
	}
}

// withMono returns t, which holds a monotonic reading, with that reading
// moved by d and its wall clock unchanged: what time.Now returns after
// the wall clock stepped back while the monotonic clock ran on.
func withMono(t *testing.T, at time.Time, d time.Duration) time.Time {
	type layout struct { // time.Time's fields
		wall uint64
		ext  int64
		loc  *time.Location
	}
	p := (*layout)(unsafe.Pointer(&at))
	if p.wall&(1<<63) == 0 {
		t.Fatal("no monotonic reading")
	}
	before := at
	p.ext += int64(d)
	if at.Sub(before) != d || at.UnixNano() != before.UnixNano() {
		t.Fatal("time.Time's layout is not the one withMono writes")
	}
	return at
}

// TestTokenRecordWallClockStepsBack: with time.Now's readings (monotonic
// included), a wall clock that stepped back is still seen as one, as
// expiry is judged on the wall clock: a copy of a token whose entry was
// dropped is refused.
func TestTokenRecordWallClockStepsBack(t *testing.T) {
	t0 := time.Now()
	exp := time.Unix(t0.Unix()+60, 0)
	r := newTokenRecord(4)
	if err := r.claim("jti-a", "c1", 1, 1, exp, t0); err != nil {
		t.Fatal(err)
	}
	if err := r.claim("jti-z", "c1", 9, 1, exp.Add(time.Hour), t0.Add(2*time.Minute)); err != nil { // drops jti-a
		t.Fatal(err)
	}
	stepped := withMono(t, t0, 2*time.Minute+time.Second) // wall back 2 min, monotonic on 1 s
	if err := r.claim("jti-a", "c1", 2, 1, exp, stepped); !errors.Is(err, reason.DecisionExpired) {
		t.Errorf("copy of a dropped token after the wall clock stepped back = %v; want %s", err, reason.DecisionExpired)
	}
}

// TestConsumerDurableCreatedAgain: a durable deleted and created again
// under the same name (an administrator's change, consumer state lost)
// delivers the stream from its start again, each message as a first
// delivery. A message already handled and acknowledged is not handed
// over a second time: the same consumer name and stream sequence
// delivered for the first time again is not a redelivery.
func TestConsumerDurableCreatedAgain(t *testing.T) {
	w := newWorld(t)
	w.capStream()
	a := w.newActor(testTenant)
	w.publish(forward{w: w, a: a, target: testTarget, plain: []byte(`{"refund":"R-9"}`)}.msg())

	r := &recorder{}
	cfg := DefaultConsumerConfig()
	cfg.Tenant, cfg.Targets, cfg.TrustedGateways = testTenant, []string{testTarget}, []string{w.gwSign.PublicKey()}
	cfg.Durable, cfg.OnReject = "refunds", r.reject
	c, err := NewConsumer(w.js, cfg, WithClock(func() time.Time { return testClock }))
	if err != nil {
		t.Fatal(err)
	}
	stop := consumeInBackground(t, c, r)
	w.waitSettled("refunds", 1)
	if err := stop(); err != nil {
		t.Fatalf("Consume = %v", err)
	}
	if err := w.js.DeleteConsumer(context.Background(), StreamCapability, "refunds"); err != nil {
		t.Fatal(err)
	}

	stop = consumeInBackground(t, c, r) // creates "refunds" again
	w.waitSettled("refunds", 1)
	if err := stop(); err != nil {
		t.Fatalf("Consume = %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.calls) != 1 {
		t.Errorf("handler called %d times; want once: the durable created again delivers the handled message again", len(r.calls))
	}
	if len(r.rejected) != 1 || !errors.Is(r.rejected[0].err, reason.DecisionDuplicate) {
		t.Errorf("OnReject calls = %v; want one %v", r.rejected, reason.DecisionDuplicate)
	}
}

// TestTokenRecordClockAheadThenBack: a clock reading that was ahead (a
// VM resumed, an NTP step forward corrected since) drops the entries it
// passes. Back at the right time, a token not recorded that expires
// later than every dropped entry was never handed over and is; one that
// expires no later may be a dropped token's copy and is still refused.
func TestTokenRecordClockAheadThenBack(t *testing.T) {
	t0 := testClock
	r := newTokenRecord(8)
	if err := r.claim("jti-a", "c1", 1, 1, t0.Add(time.Minute), t0); err != nil {
		t.Fatal(err)
	}
	if err := r.claim("jti-z", "c1", 2, 1, t0.Add(time.Hour), t0.Add(10*time.Minute)); err != nil { // ahead: drops jti-a
		t.Fatal(err)
	}
	back := t0.Add(time.Second)
	if err := r.claim("jti-b", "c1", 3, 1, t0.Add(5*time.Minute), back); err != nil {
		t.Errorf("a new token expiring after every dropped one = %v; want handed over", err)
	}
	if err := r.claim("jti-c", "c1", 4, 1, t0.Add(30*time.Second), back); !errors.Is(err, reason.DecisionExpired) {
		t.Errorf("a token expiring before a dropped one = %v; want %s", err, reason.DecisionExpired)
	}
	if err := r.claim("jti-a", "c1", 5, 1, t0.Add(time.Minute), back); !errors.Is(err, reason.DecisionExpired) {
		t.Errorf("a copy of the dropped token = %v; want %s", err, reason.DecisionExpired)
	}
	if err := r.claim("jti-z", "c1", 6, 1, t0.Add(time.Hour), back); !errors.Is(err, reason.DecisionDuplicate) {
		t.Errorf("a copy of a recorded token = %v; want %s", err, reason.DecisionDuplicate)
	}
}

// TestConsumerClockAheadThenBack: after a clock reading that was ahead,
// a delivery whose token verifies by the clock's current reading is not
// terminated. One the record cannot tell from a dropped token's copy is
// refused and handed back (a Consumer with a fresh record, as after a
// restart, handles it); one expiring after every dropped entry is
// handled.
func TestConsumerClockAheadThenBack(t *testing.T) {
	w := newWorld(t)
	w.capStream()
	a := w.newActor(testTenant)
	expiring := func(d time.Duration) *nats.Msg {
		return forward{w: w, a: a, target: "orders.status", plain: []byte(`{"q":"status"}`),
			edit: func(c *decision.Claims) { c.Expires = testClock.Add(d) }}.msg()
	}
	var now atomic.Pointer[time.Time]
	at := func(d time.Duration) { t := testClock.Add(d); now.Store(&t) }
	at(0)
	r := &recorder{}
	cfg := DefaultConsumerConfig()
	cfg.Tenant, cfg.Targets, cfg.TrustedGateways = testTenant, []string{"orders.status"}, []string{w.gwSign.PublicKey()}
	cfg.Durable, cfg.NakDelay, cfg.OnReject = "status", 20*time.Millisecond, r.reject
	clock := WithClock(func() time.Time { return *now.Load() })
	c, err := NewConsumer(w.js, cfg, clock)
	if err != nil {
		t.Fatal(err)
	}
	stop := consumeInBackground(t, c, r)
	w.publish(expiring(time.Minute)) // seq 1, handled at testClock
	w.waitSettled("status", 1)
	at(10 * time.Minute)           // ahead
	w.publish(expiring(time.Hour)) // seq 2: its reading drops seq 1's token
	w.waitSettled("status", 2)
	at(time.Second)                      // back
	w.publish(expiring(time.Minute))     // seq 3: expires with seq 1's token
	w.publish(expiring(5 * time.Minute)) // seq 4: later than every dropped entry
	waitFor(t, "seq 3 handed back twice and seq 4 handled", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.rejected) >= 2 && len(r.calls) == 3
	})
	if err := stop(); err != nil {
		t.Fatalf("Consume = %v", err)
	}
	if n := r.rejections(reason.DecisionExpired); n != len(r.rejected) {
		t.Errorf("OnReject calls = %v; want only %s", r.rejected, reason.DecisionExpired)
	}

	// Not terminated: a Consumer with a fresh record handles seq 3.
	fresh := &recorder{}
	cfg.OnReject = fresh.reject
	c2, err := NewConsumer(w.js, cfg, clock)
	if err != nil {
		t.Fatal(err)
	}
	stop = consumeInBackground(t, c2, fresh)
	w.waitSettled("status", 4)
	if err := stop(); err != nil {
		t.Fatalf("Consume = %v", err)
	}
	if len(fresh.calls) != 1 || len(fresh.rejected) != 0 {
		t.Errorf("fresh record: handler calls %v, OnReject calls %v; want seq 3 handled", fresh.calls, fresh.rejected)
	}
}
