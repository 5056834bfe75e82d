package client

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/subjects"
)

// replies holds an Agent's subscription to its reply subject, shared by
// every SendAndWait and SendAndDecide in flight. Each message is handed
// to the waiter of the envelope it names (a notice's Agentgw-Message-Id,
// a reply's Agentgw-Request-Id) and to no other, so n calls in flight
// cost one delivery of each reply and notice, not n. A message naming no
// waiting envelope is dropped, as a subscription opened per call would
// never have seen it. What a waiter is handed is still only a candidate:
// the waiter verifies it (a trusted gateway's token, addressed to the
// agent, bound to the bytes) exactly as it verified every message on a
// subscription of its own.
//
// The subscription is opened when the first waiter registers and closed
// when the last of its waiters leaves. A waiter registers before its
// envelope is published, and nats.go sends the subscription before the
// publish on the same connection, so its reply cannot arrive unseen.
//
// nats-server can refuse a subscription (max_subscriptions, a permission
// missing) while nats.go keeps it as valid, and a refused one would end
// every wait that shares it. So a wait that ends without having been
// handed anything retires the subscription it waited on: the waits that
// come after it open a new one, and the old one closes when its last
// waiter leaves.
type replies struct {
	mu  sync.Mutex
	cur *replySub // the subscription new waits join; nil when none
}

// replySub is one subscription to the reply subject and its waiters.
type replySub struct {
	sub     *nats.Subscription
	waiters map[*waiter]struct{}
	byID    map[string][]*waiter
	retired bool // new waits open a new subscription
}

// maxQueued bounds the messages a waiter holds unread: past it, more
// messages naming its envelope are dropped, as nats.go drops messages
// past a subscription's pending limits. A reply and two notices are what
// the gateway sends for one request.
const maxQueued = 1024

// waiter receives the messages on the reply subject that name its
// envelope's message id.
type waiter struct {
	r      *replies
	s      *replySub
	id     string      // the message id it waits for; "" before the first
	queue  []*nats.Msg // under r.mu
	handed bool        // a message was queued for it; under r.mu
	ready  chan struct{}
	down   chan nats.Status // the connection's CLOSED, which ends every wait
	nc     *nats.Conn
	done   bool // closed; under r.mu
}

// wait registers a waiter for a message not yet published, opening the
// agent's subscription to its reply subject if no other waiter has. The
// caller names the envelope with expect before publishing it and closes
// the waiter when done.
func (a *Agent) wait() (*waiter, error) {
	subj, err := subjects.Reply(a.tenant, a.pub)
	if err != nil {
		return nil, err
	}
	r := a.replies
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.cur; s == nil || s.retired || !s.sub.IsValid() {
		// None yet, one retired, or one that ended with its connection
		// (a closed connection refuses the new one).
		s = &replySub{waiters: map[*waiter]struct{}{}, byID: map[string][]*waiter{}}
		sub, err := a.nc.Subscribe(subj, func(m *nats.Msg) { r.deliver(s, m) })
		if err != nil {
			return nil, fmt.Errorf("client: subscribe %s: %w", subj, err)
		}
		s.sub, r.cur = sub, s
	}
	w := &waiter{r: r, s: r.cur, ready: make(chan struct{}, 1), nc: a.nc, down: a.nc.StatusChanged(nats.CLOSED)}
	r.cur.waiters[w] = struct{}{}
	return w, nil
}

// deliver hands m, received on s, to the waiters of the envelope it
// names. It runs on the subscription's one goroutine and never blocks.
func (r *replies) deliver(s *replySub, m *nats.Msg) {
	id := m.Header.Get(header.MessageID)
	if m.Header.Get(notice.Header) != notice.Kind {
		id = m.Header.Get(headerRequestID)
	}
	if id == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range s.byID[id] {
		if len(w.queue) >= maxQueued {
			continue
		}
		w.queue = append(w.queue, m)
		w.handed = true
		select {
		case w.ready <- struct{}{}:
		default:
		}
	}
}

// expect makes id the message id w waits for, in place of any earlier
// one: Send re-issues a request whose id another publisher took under a
// new id, and the taken id's messages, those queued included, are not
// this request's.
func (w *waiter) expect(id string) {
	r := w.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if w.done {
		return
	}
	w.forget()
	clear(w.queue)
	w.queue = w.queue[:0]
	w.id = id
	w.s.byID[id] = append(w.s.byID[id], w)
}

// forget removes w from its id's waiters. Under r.mu.
func (w *waiter) forget() {
	if w.id == "" {
		return
	}
	byID := w.s.byID
	ws := byID[w.id]
	for i, o := range ws {
		if o == w {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(byID, w.id)
	} else {
		byID[w.id] = ws
	}
	w.id = ""
}

// next returns the next message naming w's envelope, in the order the
// subscription received them while ctx is not done, or ctx's error, or
// nats.ErrConnectionClosed once the connection is closed for good. A
// wait that ends with nothing handed to it retires its subscription
// (see replies).
func (w *waiter) next(ctx context.Context) (*nats.Msg, error) {
	for {
		w.r.mu.Lock()
		// A message queued while the caller was busy is not taken once
		// the wait is over, nor can a stream of them hold it past ctx.
		if err := ctx.Err(); err != nil {
			if !w.handed {
				w.s.retired = true
			}
			w.r.mu.Unlock()
			return nil, err
		}
		if len(w.queue) > 0 {
			m := w.queue[0]
			w.queue[0] = nil
			w.queue = w.queue[1:]
			w.r.mu.Unlock()
			return m, nil
		}
		w.r.mu.Unlock()
		if w.nc.IsClosed() {
			return nil, nats.ErrConnectionClosed
		}
		select {
		case <-ctx.Done():
			w.r.mu.Lock()
			if !w.handed {
				w.s.retired = true
			}
			w.r.mu.Unlock()
			return nil, ctx.Err()
		case <-w.down:
			return nil, nats.ErrConnectionClosed
		case <-w.ready:
		}
	}
}

// close ends w's wait, and its subscription when w was the last waiter
// on it.
func (w *waiter) close() {
	r := w.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if w.done {
		return
	}
	w.done = true
	w.nc.RemoveStatusListener(w.down)
	w.forget()
	w.queue = nil
	s := w.s
	delete(s.waiters, w)
	if len(s.waiters) == 0 {
		_ = s.sub.Unsubscribe()
		if r.cur == s {
			r.cur = nil
		}
	}
}
