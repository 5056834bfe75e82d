package bench

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/header"
)

// route is where an output landed.
type route uint8

const (
	routeNone route = iota
	routeAllow
	routeDeny
	routeHeld
	numRoutes
)

// Output subjects the observer listens on. Every system under test
// publishes its terminal output for an ingress message to one of them;
// audit events (agentgw.audit.>) are not terminal and not observed.
var observed = []struct {
	subject string
	route   route
}{
	{"agentgw.cap.>", routeAllow},
	{"agentgw.denied.>", routeDeny},
	{"agentgw.approval.>", routeHeld},
}

// observer records, per ingress sequence, when its first terminal output
// was seen and where. It is a core subscriber: it sees an output when the
// server routes the publish, which is when JetStream stores it.
type observer struct {
	base   time.Time      // monotonic origin of every timestamp
	seen   []atomic.Int64 // by ingress sequence: ns since base, 0 = not yet
	routes []atomic.Uint32
	count  atomic.Int64
	last   atomic.Int64 // latest first-seen time
	byRt   [numRoutes]atomic.Int64
	dups   atomic.Int64 // outputs seen again (re-emissions)
	stray  atomic.Int64 // outputs without a usable sequence
	subs   []*nats.Subscription
	waiter atomic.Pointer[waiter]
}

// waiter is closed once the observer has seen n distinct sequences.
type waiter struct {
	n    int64
	ch   chan struct{}
	once sync.Once
}

func (w *waiter) check(count int64) {
	if count >= w.n {
		w.once.Do(func() { close(w.ch) })
	}
}

func newObserver(nc *nats.Conn, base time.Time, maxSeq int) (*observer, error) {
	o := &observer{base: base, seen: make([]atomic.Int64, maxSeq+1), routes: make([]atomic.Uint32, maxSeq+1)}
	for _, s := range observed {
		rt := s.route
		sub, err := nc.Subscribe(s.subject, func(m *nats.Msg) { o.record(m, rt) })
		if err != nil {
			o.close()
			return nil, fmt.Errorf("bench: subscribe %s: %w", s.subject, err)
		}
		// The observer must never be the one that drops: no limits.
		_ = sub.SetPendingLimits(-1, -1)
		o.subs = append(o.subs, sub)
	}
	if err := nc.Flush(); err != nil {
		o.close()
		return nil, fmt.Errorf("bench: observer: %w", err)
	}
	return o, nil
}

func (o *observer) now() int64 { return int64(time.Since(o.base)) }

func (o *observer) record(m *nats.Msg, rt route) {
	t := o.now()
	if strings.HasPrefix(m.Subject, "agentgw.approval.") && m.Header.Get(header.Route) == "" {
		// Not a decision output (nothing else publishes there in a bench).
		o.stray.Add(1)
		return
	}
	seq, err := strconv.ParseUint(m.Header.Get(header.IngressSeq), 10, 64)
	if err != nil || seq == 0 || seq >= uint64(len(o.seen)) {
		o.stray.Add(1)
		return
	}
	if !o.seen[seq].CompareAndSwap(0, t) {
		o.dups.Add(1)
		return
	}
	o.routes[seq].Store(uint32(rt))
	o.byRt[rt].Add(1)
	for {
		l := o.last.Load()
		if t <= l || o.last.CompareAndSwap(l, t) {
			break
		}
	}
	n := o.count.Add(1)
	if w := o.waiter.Load(); w != nil {
		w.check(n)
	}
}

// expect returns a channel closed once n distinct sequences have been
// seen in total. It replaces the previous expectation.
func (o *observer) expect(n int64) <-chan struct{} {
	w := &waiter{n: n, ch: make(chan struct{})}
	o.waiter.Store(w)
	w.check(o.count.Load())
	return w.ch
}

func (o *observer) close() {
	for _, s := range o.subs {
		_ = s.Unsubscribe()
	}
}
