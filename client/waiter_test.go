package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/subjects"
)

// TestWaitersTakeOnlyTheirMessages: the agent's one subscription hands a
// notice to the waiter of its Agentgw-Message-Id and a reply to the
// waiter of its Agentgw-Request-Id, nothing to a waiter of another
// envelope, and nothing of an id a waiter gave up for a new one.
func TestWaitersTakeOnlyTheirMessages(t *testing.T) {
	w, ag, subj := replyWorld(t)
	a := mustWait(t, ag)
	b := mustWait(t, ag)
	a.expect("taken")
	send := func(data, key, id string) {
		m := nats.NewMsg(subj)
		m.Data = []byte(data)
		if key == header.MessageID {
			m.Header.Set(notice.Header, notice.Kind)
		}
		if key != "" {
			m.Header.Set(key, id)
		}
		if err := w.nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	send("notice of taken, before the re-issue", header.MessageID, "taken")
	if err := w.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitQueued(t, a, 1)
	a.expect("a") // re-issued: the taken id's messages, queued ones too, are not a's
	b.expect("b")
	if n := ag.nc.NumSubscriptions(); n != 1 {
		t.Errorf("%d subscriptions with two waiters; want one", n)
	}
	send("notice of taken", header.MessageID, "taken")
	send("reply to taken", headerRequestID, "taken")
	send("nothing named", "", "")
	send("notice of c", header.MessageID, "c")
	// A notice is read by its message id only, whatever request id it
	// names; a reply by its request id only.
	m := nats.NewMsg(subj)
	m.Data = []byte("notice of c naming a")
	m.Header.Set(notice.Header, notice.Kind)
	m.Header.Set(header.MessageID, "c")
	m.Header.Set(headerRequestID, "a")
	if err := w.nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	m = nats.NewMsg(subj)
	m.Data = []byte("reply naming b as a notice would")
	m.Header.Set(header.MessageID, "b")
	if err := w.nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	send("notice of b", header.MessageID, "b")
	send("reply to a", headerRequestID, "a")
	send("notice of a", header.MessageID, "a")
	send("reply to b", headerRequestID, "b")
	if err := w.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	got := func(x *waiter, n int) []string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var out []string
		for range n {
			m, err := x.next(ctx)
			if err != nil {
				t.Fatalf("next: %v", err)
			}
			out = append(out, string(m.Data))
		}
		return out
	}
	if g := got(a, 2); g[0] != "reply to a" || g[1] != "notice of a" {
		t.Errorf("a got %q; want its reply and notice, in order", g)
	}
	if g := got(b, 2); g[0] != "notice of b" || g[1] != "reply to b" {
		t.Errorf("b got %q; want its notice and reply, in order", g)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if m, err := a.next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a's next after its two = %v, %v; want nothing more", m, err)
	}
	a.close()
	if n := ag.nc.NumSubscriptions(); n != 1 {
		t.Errorf("%d subscriptions with one waiter left; want one", n)
	}
	b.close()
	b.close() // a second close is harmless
	if n := ag.nc.NumSubscriptions(); n != 0 {
		t.Errorf("%d subscriptions with no waiter; want none", n)
	}
}

// TestWaitEndsWhenConnectionCloses: a wait without a deadline ends with
// nats.ErrConnectionClosed when its connection is closed, as a
// subscription of its own ended, rather than waiting for ever.
func TestWaitEndsWhenConnectionCloses(t *testing.T) {
	w := newWorld(t)
	a := w.newActor(testTenant)
	nc := natstest.Connect(t, w.srv)
	ag, err := NewAgent(nc, w.agentConfig(a), WithClock(func() time.Time { return testClock }))
	if err != nil {
		t.Fatal(err)
	}
	x := mustWait(t, ag)
	defer x.close()
	x.expect("m")
	ended := make(chan error, 1)
	go func() {
		_, err := x.next(context.Background())
		ended <- err
	}()
	nc.Close()
	select {
	case err := <-ended:
		if !errors.Is(err, nats.ErrConnectionClosed) {
			t.Errorf("next = %v; want %v", err, nats.ErrConnectionClosed)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the wait outlived its connection")
	}
	if _, err := ag.wait(); !errors.Is(err, nats.ErrConnectionClosed) {
		t.Errorf("wait on a closed connection = %v; want %v", err, nats.ErrConnectionClosed)
	}
}

// waitQueued waits until x holds n messages.
func waitQueued(t *testing.T, x *waiter, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		x.r.mu.Lock()
		got := len(x.queue)
		x.r.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiter holds %d messages; want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWaitWithNothingRetiresItsSubscription: a wait that ends without
// having been handed anything (its subscription may be one the server
// refused) retires the subscription: the next wait opens a new one, and
// the old one closes when its last waiter leaves. A wait that was handed
// a message retires nothing.
func TestWaitWithNothingRetiresItsSubscription(t *testing.T) {
	w, ag, subj := replyWorld(t)
	open := func(id string) *waiter { return waitingFor(t, ag, id) }
	answered, empty := open("answered"), open("empty")
	m := nats.NewMsg(subj)
	m.Header.Set(headerRequestID, "answered")
	if err := w.nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	if _, err := answered.next(within(t, 100*time.Millisecond)); err != nil {
		t.Fatalf("answered: %v", err)
	}
	if _, err := answered.next(within(t, 100*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("answered, again: %v; want the deadline", err)
	}
	if later := open("later"); later.s != answered.s {
		t.Error("a wait that was handed a message retired its subscription")
	} else {
		later.close()
	}
	if _, err := empty.next(within(t, 100*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("empty: %v; want the deadline", err)
	}
	fresh := open("fresh")
	if fresh.s == empty.s || ag.nc.NumSubscriptions() != 2 {
		t.Errorf("after a wait handed nothing: same subscription %v, %d subscriptions; want a new one beside the old", fresh.s == empty.s, ag.nc.NumSubscriptions())
	}
	answered.close()
	empty.close()
	if n := ag.nc.NumSubscriptions(); n != 1 {
		t.Errorf("%d subscriptions once the old one's waiters left; want the new one only", n)
	}
	fresh.close()
	if n := ag.nc.NumSubscriptions(); n != 0 {
		t.Errorf("%d subscriptions with no waiter; want none", n)
	}
}

// TestWaiterQueueIsBounded: a waiter holds at most maxQueued unread
// messages; more naming its envelope are dropped.
func TestWaiterQueueIsBounded(t *testing.T) {
	w, ag, subj := replyWorld(t)
	x := waitingFor(t, ag, "flooded")
	marker := waitingFor(t, ag, "marker")
	for i := range maxQueued + 51 {
		m := nats.NewMsg(subj)
		m.Header.Set(headerRequestID, "flooded")
		if i == maxQueued+50 {
			m.Header.Set(headerRequestID, "marker")
		}
		if err := w.nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	// The subscription hands messages over in order: once the marker's
	// waiter has it, the flood was handed over, or dropped.
	if _, err := marker.next(ctxT(t)); err != nil {
		t.Fatalf("marker: %v", err)
	}
	x.r.mu.Lock()
	n := len(x.queue)
	x.r.mu.Unlock()
	if n != maxQueued {
		t.Errorf("waiter holds %d messages; want %d", n, maxQueued)
	}
}

// replyWorld is a world with an agent, and the agent's reply subject.
func replyWorld(t *testing.T) (*world, *Agent, string) {
	t.Helper()
	w := newWorld(t)
	ag := w.agent(w.newActor(testTenant))
	subj, err := subjects.Reply(ag.tenant, ag.pub)
	if err != nil {
		t.Fatal(err)
	}
	return w, ag, subj
}

// mustWait registers a waiter of ag.
func mustWait(t *testing.T, ag *Agent) *waiter {
	t.Helper()
	x, err := ag.wait()
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// waitingFor registers a waiter of ag for id, closed with the test if
// not before.
func waitingFor(t *testing.T, ag *Agent, id string) *waiter {
	t.Helper()
	x := mustWait(t, ag)
	x.expect(id)
	t.Cleanup(x.close)
	return x
}

// within is a context that ends after d, or with the test.
func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestWaitAfterRefusedSubscription: a server at its max_subscriptions
// refuses the agent's reply subscription with an -ERR, and nats.go keeps
// it as valid, so no message reaches the waits on it. One that ends with
// nothing handed to it retires it: a wait that comes while another still
// holds the refused subscription opens a new one, which the server takes
// once a place is free, and gets its reply.
func TestWaitAfterRefusedSubscription(t *testing.T) {
	w := newWorldOn(t, natstest.Options{Configure: func(o *server.Options) { o.MaxSubs = 1 }})
	nc := natstest.Connect(t, w.srv)
	ag, err := NewAgent(nc, w.agentConfig(w.newActor(testTenant)), WithClock(func() time.Time { return testClock }))
	if err != nil {
		t.Fatal(err)
	}
	subj, err := subjects.Reply(ag.tenant, ag.pub)
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan error, 4)
	nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { refused <- err })
	filler, err := nc.SubscribeSync("agentgw.test.filler")
	if err != nil {
		t.Fatal(err)
	}
	reply := func(id string) {
		m := nats.NewMsg(subj)
		m.Header.Set(headerRequestID, id)
		if err := w.nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		if err := w.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	held := waitingFor(t, ag, "held")
	short := waitingFor(t, ag, "short")
	select {
	case err := <-refused:
		if !errors.Is(err, nats.ErrMaxSubscriptionsExceeded) {
			t.Fatalf("the server said %v; want maximum subscriptions exceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server took the reply subscription over its max_subscriptions")
	}
	reply("short")
	if m, err := short.next(within(t, 200*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a wait on the refused subscription got %v, %v; want nothing until its deadline", m, err)
	}

	if err := filler.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	later := waitingFor(t, ag, "later")
	if later.s == held.s {
		t.Error("a wait after one that got nothing joined the refused subscription")
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	reply("later")
	if _, err := later.next(within(t, 10*time.Second)); err != nil {
		t.Fatalf("a wait on the new subscription: %v; want its reply", err)
	}
}
