package gateway

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/internal/natstest"
)

func TestPubAckError(t *testing.T) {
	for name, c := range map[string]struct {
		data   string
		status string
		want   error // nil, a sentinel, or errRefused for any other error
	}{
		"stored":             {data: `{"stream":"AGENTGW_CAP","seq":12}`},
		"duplicate":          {data: `{"stream":"AGENTGW_CAP","seq":12,"duplicate":true}`},
		"with domain":        {data: `{"stream":"S","seq":1,"domain":"hub"}`},
		"other order":        {data: `{"seq":3,"stream":"S"}`},
		"refused":            {data: `{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`, want: errRefused},
		"stream and error":   {data: `{"stream":"S","seq":0,"error":{"code":400,"description":"wrong last sequence"}}`, want: errRefused},
		"no responders":      {status: "503", want: errNoStream},
		"empty":              {want: errMalformedAck},
		"not json":           {data: `{"stream":"S"`, want: errMalformedAck},
		"no seq":             {data: `{"stream":"S"}`, want: nil}, // the fast path: the server only omits seq on error
		"array":              {data: `[1]`, want: errMalformedAck},
		"nothing stored":     {data: `{}`, want: errMalformedAck},
		"truncated stored":   {data: `{"stream":"S","seq":`, want: errMalformedAck},
		"error after prefix": {data: `{"stream":"S","error":{"code":500,"description":"x"}}`, want: errRefused},
		// Refused for its size: no retry stores it (refused.go).
		"message too large": {data: `{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}`, want: errTooLarge},
		"headers too large": {data: `{"error":{"code":400,"err_code":10097,"description":"header size exceeds maximum allowed of 64k"}}`, want: errTooLarge},
	} {
		m := &nats.Msg{Data: []byte(c.data), Header: nats.Header{}}
		if c.status != "" {
			m.Header.Set("Status", c.status)
		}
		got := pubAckError(m)
		if c.want != errTooLarge && refusedAsTooLarge(got) {
			t.Errorf("%s: pubAckError = %v, refused as too large; want %v", name, got, c.want)
		}
		switch {
		case c.want == nil && got != nil, c.want == errRefused && (got == nil || errors.Is(got, errMalformedAck) || errors.Is(got, errNoStream)),
			c.want != nil && c.want != errRefused && !errors.Is(got, c.want):
			t.Errorf("%s: pubAckError = %v; want %v", name, got, c.want)
		}
	}
}

var errRefused = errors.New("any refusal")

// TestPubAcksAgainstJetStream: outputs to a stream are stored and
// answered nil, an output no stream takes is answered with the
// no-responders status, a batch with nothing in it is complete at once,
// and a batch given up on leaves nothing behind.
func TestPubAcksAgainstJetStream(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	must(t, err)
	must(t, EnsureStreams(context.Background(), js, DefaultConfig().Streams, 1))
	pub, err := newPubAcks(nc)
	must(t, err)
	defer pub.close()

	empty := newPubGroup(0)
	pub.seal(empty)
	select {
	case <-empty.all:
	case <-time.After(time.Second):
		t.Fatal("an empty batch never completes")
	}

	pg := newPubGroup(3)
	it := &item{seq: 1}
	msg := func(subj, id string) *nats.Msg {
		return &nats.Msg{Subject: subj, Data: []byte("x"), Header: nats.Header{header.MsgID: {id}}}
	}
	must(t, pub.publish(pg, it, msg("agentgw.cap.t.k.search", "a")))
	must(t, pub.publish(pg, it, msg("agentgw.cap.t.k.search", "a"))) // a duplicate is stored too
	must(t, pub.publish(pg, it, msg("nowhere."+strings.Repeat("x", 3), "b")))
	pub.seal(pg)
	select {
	case <-pg.all:
	case <-time.After(10 * time.Second):
		t.Fatal("PubAcks never arrived")
	}
	res := pub.results(pg, errPubAckTimeout)
	if res[0] != nil || res[1] != nil || !errors.Is(res[2], errNoStream) {
		t.Fatalf("results = %v; want stored, stored (duplicate), no stream", res)
	}

	// Given up on before its answers: counted unanswered, forgotten.
	pg = newPubGroup(1)
	pub.register(pg, it, msg("agentgw.cap.t.k.search", "c")) // awaited, never sent
	pub.seal(pg)
	if res := pub.results(pg, errPubAckTimeout); !errors.Is(res[0], errPubAckTimeout) {
		t.Fatalf("unanswered output: %v; want the timeout", res[0])
	}
	pub.mu.Lock()
	n := len(pub.wait)
	pub.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d outputs still awaited after their batches were read", n)
	}
}

// TestPubAcksFailOnDisconnect: an output awaiting its PubAck when the
// connection drops is failed at once, not at the batch's deadline.
func TestPubAcksFailOnDisconnect(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv, nats.MaxReconnects(-1), nats.ReconnectWait(time.Hour))
	pub, err := newPubAcks(nc)
	must(t, err)
	defer pub.close()
	pg := newPubGroup(1)
	pub.register(pg, &item{seq: 1}, nats.NewMsg("agentgw.cap.t.k.search")) // awaited, never sent
	pub.seal(pg)
	srv.Shutdown()
	select {
	case <-pg.all:
	case <-time.After(10 * time.Second):
		t.Fatal("the output was not failed when the connection dropped")
	}
	if res := pub.results(pg, errPubAckTimeout); !errors.Is(res[0], errDisconnected) {
		t.Fatalf("result = %v; want errDisconnected", res[0])
	}
}

// TestPubAcksUnsentAfterFailAll: the connection watcher fails every
// awaited output (failAll) between an output's registration and its
// failed send. The output leaves its group once, not counted twice: the
// group's channel closes when it is sealed and its other outputs are
// answered, not before, and never twice.
func TestPubAcksUnsentAfterFailAll(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	p, err := newPubAcks(natstest.Connect(t, srv))
	must(t, err)
	defer p.close()
	stored := func(id uint64) *nats.Msg {
		return &nats.Msg{Subject: p.prefix + strconv.FormatUint(id, 10), Data: []byte(`{"stream":"S","seq":1}`)}
	}
	closed := func(g *pubGroup) bool {
		select {
		case <-g.all:
			return true
		default:
			return false
		}
	}
	g := newPubGroup(3)
	it, m := &item{}, &nats.Msg{Subject: "x"}
	lost := p.register(g, it, m)
	p.failAll(errDisconnected)
	p.unsent(g, lost)
	for range 2 {
		p.answer(stored(p.register(g, it, m)))
		if closed(g) {
			t.Fatal("group closed before it was sealed")
		}
	}
	p.seal(g)
	if !closed(g) {
		t.Fatal("sealed group with every output answered is not closed")
	}
	if res := p.results(g, errors.New("unanswered")); len(res) != 2 || res[0] != nil || res[1] != nil {
		t.Errorf("results %v; want the two sent outputs, stored", res)
	}
}
