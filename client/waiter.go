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

// replies is an Agent's one subscription to its reply subject, shared by
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
// when the last leaves. A waiter registers before its envelope is
// published, and nats.go sends the subscription before the publish on
// the same connection, so its reply cannot arrive unseen.
type replies struct {
	mu      sync.Mutex
	sub     *nats.Subscription
	waiters map[*waiter]struct{}
	byID    map[string][]*waiter
}

// waiter receives the messages on the reply subject that name its
// envelope's message id.
type waiter struct {
	r     *replies
	id    string      // the message id it waits for; "" before the first
	queue []*nats.Msg // under r.mu
	ready chan struct{}
	down  chan nats.Status // the connection's CLOSED, which ends every wait
	nc    *nats.Conn
	done  bool // closed; under r.mu
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
	r := &a.replies
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sub == nil || !r.sub.IsValid() {
		// None yet, or it ended with its connection: a closed connection
		// refuses the new one.
		sub, err := a.nc.Subscribe(subj, r.deliver)
		if err != nil {
			return nil, fmt.Errorf("client: subscribe %s: %w", subj, err)
		}
		r.sub = sub
		if r.waiters == nil {
			r.waiters, r.byID = map[*waiter]struct{}{}, map[string][]*waiter{}
		}
	}
	w := &waiter{r: r, ready: make(chan struct{}, 1), nc: a.nc, down: a.nc.StatusChanged(nats.CLOSED)}
	r.waiters[w] = struct{}{}
	return w, nil
}

// deliver hands m to the waiters of the envelope it names. It runs on
// the subscription's one goroutine and never blocks.
func (r *replies) deliver(m *nats.Msg) {
	id := m.Header.Get(header.MessageID)
	if m.Header.Get(notice.Header) != notice.Kind {
		id = m.Header.Get(headerRequestID)
	}
	if id == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.byID[id] {
		w.queue = append(w.queue, m)
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
	r.byID[id] = append(r.byID[id], w)
}

// forget removes w from its id's waiters. Under r.mu.
func (w *waiter) forget() {
	if w.id == "" {
		return
	}
	r := w.r
	ws := r.byID[w.id]
	for i, o := range ws {
		if o == w {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(r.byID, w.id)
	} else {
		r.byID[w.id] = ws
	}
	w.id = ""
}

// next returns the next message naming w's envelope, in the order the
// subscription received them, or the context's error, or
// nats.ErrConnectionClosed once the connection is closed for good.
func (w *waiter) next(ctx context.Context) (*nats.Msg, error) {
	for {
		w.r.mu.Lock()
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
			return nil, ctx.Err()
		case <-w.down:
			return nil, nats.ErrConnectionClosed
		case <-w.ready:
		}
	}
}

// close ends w's wait, and the subscription when w was the last waiter.
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
	delete(r.waiters, w)
	if len(r.waiters) == 0 && r.sub != nil {
		_ = r.sub.Unsubscribe()
		r.sub, r.waiters, r.byID = nil, nil, nil
	}
}
