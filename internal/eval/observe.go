package eval

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/header"
)

// outputStreams are where every ingress message ends.
var outputStreams = []string{gateway.StreamCap, gateway.StreamApproval, gateway.StreamDenied}

// output is the terminal output of one ingress message.
type output struct {
	stream  string
	subject string
	header  map[string][]string
	data    []byte // kept for the approval queue only: an answer binds to it
}

// observer reads the output streams and the audit stream from where they
// stood when it started, and indexes what it reads by ingress sequence.
type observer struct {
	mu      sync.Mutex
	changed chan struct{}
	outputs map[uint64]output
	audit   map[uint64][]audit.Event
	// start is each stream's first sequence this run, for the scan.
	start map[string]uint64
	ccs   []jetstream.ConsumeContext
	err   error
}

func observe(ctx context.Context, js jetstream.JetStream) (*observer, error) {
	o := &observer{changed: make(chan struct{}), outputs: map[uint64]output{}, audit: map[uint64][]audit.Event{}, start: map[string]uint64{}}
	for _, name := range append(append([]string(nil), outputStreams...), gateway.StreamAudit) {
		st, err := js.Stream(ctx, name)
		if err != nil {
			o.stop()
			return nil, fmt.Errorf("eval: stream %s: %w", name, err)
		}
		next := st.CachedInfo().State.LastSeq + 1
		o.start[name] = next
		oc, err := js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: next,
		})
		if err != nil {
			o.stop()
			return nil, fmt.Errorf("eval: read %s: %w", name, err)
		}
		cc, err := oc.Consume(o.handler(name))
		if err != nil {
			o.stop()
			return nil, fmt.Errorf("eval: read %s: %w", name, err)
		}
		o.ccs = append(o.ccs, cc)
	}
	return o, nil
}

func (o *observer) handler(stream string) jetstream.MessageHandler {
	return func(m jetstream.Msg) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if stream == gateway.StreamAudit {
			evs, err := audit.Decode(m.Data())
			if err != nil && o.err == nil {
				o.err = fmt.Errorf("eval: an audit message does not decode: %w", err)
			}
			for _, ev := range evs {
				if ev.IngressSeq != 0 && decisionKind(ev.Kind) {
					o.audit[ev.IngressSeq] = append(o.audit[ev.IngressSeq], ev)
				}
			}
		} else {
			seq, err := strconv.ParseUint(m.Headers().Get(header.IngressSeq), 10, 64)
			if err == nil {
				if _, dup := o.outputs[seq]; !dup {
					out := output{stream: stream, subject: m.Subject(), header: m.Headers()}
					if stream == gateway.StreamApproval {
						out.data = m.Data()
					}
					o.outputs[seq] = out
				}
			}
		}
		close(o.changed)
		o.changed = make(chan struct{})
	}
}

// wait returns the output of seq and its decision events once the output
// is there and an event for it is, or grace after the output if none
// comes. ok is false if no output came before timeout.
func (o *observer) wait(ctx context.Context, seq uint64, timeout, grace time.Duration) (out output, evs []audit.Event, ok bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var graceC <-chan time.Time
	for {
		o.mu.Lock()
		out, ok = o.outputs[seq]
		evs = o.audit[seq]
		ch := o.changed
		o.mu.Unlock()
		if ok && len(evs) > 0 {
			return out, evs, true
		}
		if ok && graceC == nil {
			g := time.NewTimer(grace)
			defer g.Stop()
			graceC = g.C
		}
		select {
		case <-ch:
		case <-graceC:
			return out, evs, true
		case <-deadline.C:
			return out, evs, ok
		case <-ctx.Done():
			return out, evs, ok
		}
	}
}

func (o *observer) stop() {
	for _, cc := range o.ccs {
		cc.Stop()
	}
}

// decisionKind reports whether an event of kind records what became of
// an ingress message: a decision, a hold, or an approver's answer.
func decisionKind(kind string) bool {
	switch kind {
	case audit.KindDecision, audit.KindApprovalRequest, audit.KindApprovalGranted, audit.KindApprovalDenied:
		return true
	}
	return false
}
