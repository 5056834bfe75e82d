package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
)

// pubAcks publishes outputs to JetStream with reply subjects of its own
// and matches the PubAcks to the batch that waits for them. It replaces
// jetstream's PublishMsgAsync on the hot path: that keeps a future with
// two channels per message and decodes every PubAck with encoding/json,
// a tenth of the gateway's allocations for a yes/no the acker needs. A
// batch waits on one channel; a PubAck that says stored is recognised
// without decoding, anything else is decoded and its error reported.
type pubAcks struct {
	nc     *nats.Conn
	prefix string // "<inbox>."
	sub    *nats.Subscription
	status chan nats.Status
	exited chan struct{}
	mu     sync.Mutex
	next   uint64
	wait   map[uint64]waiter
}

// waiter is one published output: its batch and its index there.
type waiter struct {
	g *pubGroup
	i int
}

// pubGroup is the outputs of one batch awaiting their PubAcks.
type pubGroup struct {
	items []*item // the message each output belongs to
	msgs  []*nats.Msg
	ids   []uint64
	errs  []error // per output, once answered: nil means stored
	done  []bool
	left  int
	all   chan struct{} // closed when every output is answered
}

func newPubAcks(nc *nats.Conn) (*pubAcks, error) {
	p := &pubAcks{nc: nc, prefix: nc.NewInbox() + ".", wait: make(map[uint64]waiter)}
	sub, err := nc.Subscribe(p.prefix+"*", p.answer)
	if err != nil {
		return nil, fmt.Errorf("gateway: PubAck subscription: %w", err)
	}
	// A slow-consumer drop would only delay the batch to its deadline;
	// outputs in flight are bounded by the pipeline anyway.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("gateway: PubAck subscription: %w", err)
	}
	p.sub = sub
	// A PubAck in flight when the connection drops never arrives: fail
	// those outputs at once (their messages are naked and redelivered)
	// rather than at the batch's deadline, as jetstream's publisher does.
	p.status, p.exited = nc.StatusChanged(nats.RECONNECTING, nats.CLOSED), make(chan struct{})
	go p.watch()
	return p, nil
}

func (p *pubAcks) watch() {
	defer close(p.exited)
	for s := range p.status {
		p.failAll(errDisconnected)
		if s == nats.CLOSED {
			return
		}
	}
}

// failAll answers every output still awaited with err.
func (p *pubAcks) failAll(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, w := range p.wait {
		delete(p.wait, id)
		p.resolve(w, err)
	}
}

// resolve records the answer for w; p.mu is held.
func (p *pubAcks) resolve(w waiter, err error) {
	g := w.g
	g.errs[w.i], g.done[w.i] = err, true
	g.left--
	if g.left == -1 {
		close(g.all)
	}
}

func newPubGroup(n int) *pubGroup {
	return &pubGroup{
		items: make([]*item, 0, n), msgs: make([]*nats.Msg, 0, n), ids: make([]uint64, 0, n),
		all: make(chan struct{}),
	}
}

// publish sends m, an output of it, as part of g. An error means it was
// not sent; it is then not part of g.
func (p *pubAcks) publish(g *pubGroup, it *item, m *nats.Msg) error {
	id := p.register(g, it, m)
	err := p.nc.PublishMsg(&nats.Msg{Subject: m.Subject, Reply: p.prefix + strconv.FormatUint(id, 10), Data: m.Data, Header: m.Header})
	if err != nil {
		p.unsent(g, id)
	}
	return err
}

// unsent takes output id, the last one registered in g, out of g: it
// was not sent. The connection watcher may have answered it meanwhile
// (failAll, between register and the failed send), and so counted it
// already: it is then not counted again, or g would count one output
// too few, close its channel before every output was answered and, at
// the next such miscount, close it twice.
func (p *pubAcks) unsent(g *pubGroup, id uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, waiting := p.wait[id]; waiting {
		delete(p.wait, id)
		g.left--
	}
	n := len(g.msgs) - 1
	g.items, g.msgs, g.ids, g.errs, g.done = g.items[:n], g.msgs[:n], g.ids[:n], g.errs[:n], g.done[:n]
}

// register adds m, an output of it, to g as awaited and returns its id,
// the last token of its reply subject.
func (p *pubAcks) register(g *pubGroup, it *item, m *nats.Msg) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	p.wait[p.next] = waiter{g, len(g.msgs)}
	g.items, g.msgs, g.ids = append(g.items, it), append(g.msgs, m), append(g.ids, p.next)
	g.errs, g.done = append(g.errs, nil), append(g.done, false)
	g.left++
	return p.next
}

// seal marks g complete: no more outputs will be added. Its channel
// closes once all are answered (at once if there are none).
func (p *pubAcks) seal(g *pubGroup) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if g.left == 0 {
		close(g.all)
	}
	g.left-- // sealed: reaching -1 closes the channel
}

// answer is the subscription's handler: one PubAck (or a no-responders
// status) for the output whose id ends the subject.
func (p *pubAcks) answer(m *nats.Msg) {
	id, err := strconv.ParseUint(m.Subject[min(len(p.prefix), len(m.Subject)):], 10, 64)
	if err != nil {
		return
	}
	res := pubAckError(m)
	p.mu.Lock()
	defer p.mu.Unlock()
	w, ok := p.wait[id]
	if !ok {
		return // answered already, or given up on
	}
	delete(p.wait, id)
	p.resolve(w, res)
}

// results returns the outcome of each output of g, and forgets g: an
// output not answered yet counts as failed with unanswered.
func (p *pubAcks) results(g *pubGroup, unanswered error) []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]error, len(g.msgs))
	for i, id := range g.ids {
		if !g.done[i] {
			delete(p.wait, id)
			out[i] = unanswered
			continue
		}
		out[i] = g.errs[i]
	}
	return out
}

func (p *pubAcks) close() {
	if p == nil {
		return
	}
	_ = p.sub.Unsubscribe()
	p.nc.RemoveStatusListener(p.status)
	<-p.exited
}

var (
	errNoStream       = errors.New("gateway: no stream took the output (no responders)")
	errDisconnected   = errors.New("gateway: connection lost before the PubAck")
	errMalformedAck   = errors.New("gateway: malformed PubAck")
	pubAckStoredStart = []byte(`{"stream":"`)
	pubAckErrorMember = []byte(`"error"`)
)

// pubAckError reads a PubAck: nil when the output is stored (or was a
// duplicate of a stored one), else why not.
func pubAckError(m *nats.Msg) error {
	if len(m.Data) == 0 {
		if m.Header.Get("Status") == "503" {
			return errNoStream
		}
		return errMalformedAck
	}
	// The server writes a stored message's PubAck as {"stream":...,
	// "seq":...}; an error has an "error" member. Only the common case is
	// read without decoding.
	if bytes.HasPrefix(m.Data, pubAckStoredStart) && !bytes.Contains(m.Data, pubAckErrorMember) && json.Valid(m.Data) {
		return nil
	}
	var ack struct {
		Stream string `json:"stream"`
		Seq    uint64 `json:"seq"`
		Error  *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &ack); err != nil {
		return errMalformedAck
	}
	if ack.Error != nil {
		if ack.Error.ErrCode == jsMessageExceedsMaximum || ack.Error.ErrCode == jsHeaderExceedsMaximum {
			return fmt.Errorf("%w: %s (code %d, error %d)", errTooLarge, ack.Error.Description, ack.Error.Code, ack.Error.ErrCode)
		}
		return fmt.Errorf("gateway: JetStream refused the output: %s (code %d, error %d)", ack.Error.Description, ack.Error.Code, ack.Error.ErrCode)
	}
	if ack.Stream == "" || ack.Seq == 0 {
		return errMalformedAck
	}
	return nil
}
