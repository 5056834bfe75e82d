package faults

import (
	"context"
	mrand "math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/internal/devenv"
	"github.com/agentgw/agentgw/internal/gwtest"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/internal/natstest"
)

// TestLostPubAcksDoNotStall loses the PubAcks of several outputs of one
// batch without a disconnect, as when a stream leader dies with publishes
// in flight: a subject mapping on the (embedded, in-process) server sends
// the gateway's audit publishes to a subscriber that never answers, until
// it has swallowed those of two batches. The gateway must give up on them
// after its 30 s wait, nak, re-emit on redelivery and end with everything
// acknowledged; before d0b3916 one shared timer covered the whole batch,
// and the second lost PubAck blocked the partition forever.
func TestLostPubAcksDoNotStall(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	must(t, err)
	mat, _, err := devenv.Ensure(filepath.Join(t.TempDir(), "material"))
	must(t, err)
	cfg, err := gateway.LoadConfig(mat.Config)
	must(t, err)
	cfg.DataDir = t.TempDir()
	cfg.ReloadInterval = 0
	gw, err := gateway.New(cfg, gateway.WithConn(nc))
	must(t, err)
	gwtest.Run(t, gw, "in process")

	silent, err := nc.SubscribeSync("blackhole.>")
	must(t, err)
	defer silent.Unsubscribe()
	acc := srv.GlobalAccount()
	must(t, acc.AddMapping("agentgw.audit.*", "blackhole.audit.{{wildcard(1)}}"))
	e := &env{t: t, mat: mat, nc: nc, js: js}
	l := &load{t: t, e: e, nc: nc, js: js, agent: newAgentKeys(t, e), gwXKey: mat.GatewayXKey, kinds: map[string]kind{}, counts: map[kind]int{}}
	rng := mrand.New(mrand.NewPCG(1, 2))
	send := func(n int) (seqs []uint64) {
		for range n {
			m, _, err := l.build(kPlain, time.Now(), 0, rng)
			must(t, err)
			seq, ok := l.publish(context.Background(), m, true)
			if !ok {
				t.Fatal("publish failed")
			}
			seqs = append(seqs, seq)
		}
		return seqs
	}
	// Three at once: an idle gateway takes the first alone and the other
	// two together, so one batch has two PubAcks that never come.
	for range 3 {
		m, _, err := l.build(kPlain, time.Now(), 0, rng)
		must(t, err)
		_, err = js.PublishMsgAsync(m)
		must(t, err)
	}
	<-js.PublishAsyncComplete()
	// Lift the fault once the three audit publishes were swallowed.
	for i := range 3 {
		if _, err := silent.NextMsg(45 * time.Second); err != nil {
			t.Fatalf("only %d audit publishes swallowed (%v): the fault did not happen", i, err)
		}
	}
	acc.RemoveMapping("agentgw.audit.*")
	send(3)
	// Everything must end acknowledged: a gateway stuck waiting for a
	// PubAck may still publish a batch or two, but never acks again.
	wctx, wcancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer wcancel()
	for {
		// Every ingress consumer: the dev config has fair_tenants on, so
		// the tenant's own consumer decides and the catch-all only acks.
		if info, err := e.consumerInfo(wctx); err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
			break
		}
		if wctx.Err() != nil {
			t.Fatalf("ingress not acknowledged 100 s after the fault ended: the gateway is stuck")
		}
		time.Sleep(200 * time.Millisecond)
	}
	rep, err := invariant.Collect(context.Background(), js)
	must(t, err)
	if err := rep.Err(); err != nil {
		t.Error(err)
	}
	t.Logf("%s: %s", t.Name(), rep)
}

// TestFullDownstreamOutlastsDuplicateWindow keeps the audit stream full
// (discard new) for longer than streams.duplicate_window while the
// capability stream still has room: each message's capability output is
// stored and its audit event refused, so the message is naked and
// re-emitted every 2 s. Once the first copy is older than the window,
// JetStream no longer de-duplicates it; the gateway must re-emit only the
// output that was not stored (before d0b3916 the capability output was
// stored again on every re-emission).
func TestFullDownstreamOutlastsDuplicateWindow(t *testing.T) {
	t.Parallel()
	start := time.Now()
	e := newEnv(t, envOptions{maxMsgsPerOutput: 10, maxTTL: 5 * time.Second, skew: time.Second, dupWindow: 6 * time.Second})
	e.startGateway()
	l := newLoad(t, e, 1)
	rng := mrand.New(mrand.NewPCG(3, 4))
	ctx := context.Background()
	send := func(k kind, n int) (seqs []uint64) {
		for range n {
			m, id, err := l.build(k, time.Now(), 5*time.Second, rng)
			must(t, err)
			seq, ok := l.publish(ctx, m, true)
			if !ok {
				t.Fatal("publish failed")
			}
			l.record(true, sent{seq: seq, msgID: id, kind: k})
			seqs = append(seqs, seq)
		}
		return seqs
	}
	// Five allowed and five denied, then the audit stream topped up to its
	// ten messages: full.
	first := append(send(kPlain, 5), send(kBadSig, 5)...)
	waitOutputs(t, e, first, 30*time.Second)
	fillAudit(ctx, t, e, first[len(first)-1], 10)
	send(kPlain, 3)                  // capability output stored, audit event refused
	time.Sleep(3 * e.opts.dupWindow) // several re-emissions past the window
	for _, name := range []string{gateway.StreamCap, gateway.StreamAudit} {
		raiseLimit(ctx, t, e.js, name)
	}
	settle(t, e, 60*time.Second)
	r := check(t, e, l)
	report(t, r, map[string]int{"full_downstream_past_dup_window": 1}, start)
}
