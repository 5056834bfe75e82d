package gateway

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/subjects/reason"
)

// setAuditMaxMsgSize sets the audit stream's max_msg_size, as an
// operator may.
func (h *harness) setAuditMaxMsgSize(size int32) {
	h.t.Helper()
	ctx := context.Background()
	s, err := h.js.Stream(ctx, StreamAudit)
	must(h.t, err)
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = size
	_, err = h.js.UpdateStream(ctx, cfg)
	must(h.t, err)
}

// TestRefusedAuditGroupSplitPerEvent: the events of a batch's messages of
// one tenant go out as one audit message carried by the last of them;
// the others are acknowledged once their own outputs are stored. An
// audit stream whose max_msg_size each event fits but the message does
// not refuses it: its events then go out one per message, under ids
// derived from its own, every decision keeps exactly one event, and the
// carrier is acknowledged.
func TestRefusedAuditGroupSplitPerEvent(t *testing.T) {
	h := newHarness(t)
	h.cfg.NotifySenders = false
	must(t, EnsureStreams(context.Background(), h.js, h.cfg.Streams, h.cfg.Consumer.Partitions))
	var seqs []uint64
	for range 6 {
		seqs = append(seqs, h.send(h.body(nil)))
	}
	var once sync.Once
	h.beforeRun = func(gw *Gateway) {
		gw.hooks = &pipelineHooks{prepared: func([]uint64) {
			once.Do(func() { h.setAuditMaxMsgSize(2048) }) // one event fits, two do not
		}}
	}
	h.start()
	for _, seq := range seqs {
		if out := h.outputFor(seq); out.Header.Get(header.Route) != "allow" {
			t.Fatalf("ingress %d: route %q; want allow", seq, out.Header.Get(header.Route))
		}
	}
	<-h.gw.Ready()
	h.waitAcked(seqs[len(seqs)-1])
	events := map[uint64]int{}
	split := 0
	for _, m := range h.all(StreamAudit) {
		evs, err := audit.Decode(m.Data)
		must(t, err)
		for _, ev := range evs {
			events[ev.IngressSeq]++
		}
		id := m.Header.Get(header.MsgID)
		if i := strings.LastIndex(id, ".audit."); i >= 0 {
			if _, err := strconv.Atoi(id[i+len(".audit."):]); err == nil {
				split++
				if len(evs) != 1 {
					t.Errorf("audit message %s holds %d events; want one", id, len(evs))
				}
			}
		}
	}
	for _, seq := range seqs {
		if events[seq] != 1 {
			t.Errorf("ingress %d has %d audit events; want 1 (all: %v)", seq, events[seq], events)
		}
	}
	if split < 2 {
		t.Fatalf("%d audit messages of one event each from a split message; want the first batch's group split", split)
	}
	h.stop()
	h.scanSecrets()
}

// TestRefusedAuditGroupOfManyEvents: an audit message of more events
// than a message has outputs of its own, refused as too large, is
// recorded split in its carrier's outcome, which a redelivery reads
// back whole: each event is stored in a message of its own, its id the
// refused message's followed by its index, and the carrier is
// acknowledged.
func TestRefusedAuditGroupOfManyEvents(t *testing.T) {
	const events = 40
	h := newHarness(t)
	must(t, EnsureStreams(context.Background(), h.js, h.cfg.Streams, h.cfg.Consumer.Partitions))
	seq := h.publish(h.ingress(h.agent, "tenant_a"), []byte("not an envelope"), nil)
	rec := nats.NewMsg("agentgw.denied.tenant_a.missing_header")
	for k, v := range map[string]string{
		header.MsgID: "agw-carrier", header.Route: "deny", header.IngressSeq: strconv.FormatUint(seq, 10),
		header.Tenant: "tenant_a", header.Agent: h.agent.pub, header.Reason: string(reason.MissingHeader),
	} {
		rec.Header.Set(k, v)
	}
	group := nats.NewMsg("agentgw.audit.tenant_a")
	group.Header.Set(header.MsgID, "agw-carrier.audit")
	for i := range events {
		ev := audit.Event{Time: h.clock.Now(), Kind: audit.KindDecision, Route: "deny", Reason: string(reason.MissingHeader),
			IngressSeq: 1000 + uint64(i), Tenant: "tenant_a", Output: rec.Subject}
		group.Data = ev.AppendLine(group.Data)
	}
	outcome, err := encodeOutputs([]*nats.Msg{rec, group}, nil)
	must(t, err)
	h.beforeRun = func(gw *Gateway) {
		b := gw.ledger.NewBatch()
		defer b.Close()
		must(t, b.PutOutcome(seq, outcome))
		must(t, b.Commit())
		// Set once the gateway has made its streams, before the outcome
		// is re-emitted.
		var once sync.Once
		gw.hooks = &pipelineHooks{prepared: func([]uint64) {
			once.Do(func() { h.setAuditMaxMsgSize(1024) })
		}}
	}
	h.start()
	<-h.gw.Ready()
	h.waitAcked(seq)
	got := map[string]uint64{}
	for _, m := range h.all(StreamAudit) {
		evs, err := audit.Decode(m.Data)
		must(t, err)
		if len(evs) != 1 {
			t.Fatalf("audit message %s holds %d events; want one", m.Header.Get(header.MsgID), len(evs))
		}
		got[m.Header.Get(header.MsgID)] = evs[0].IngressSeq
	}
	if len(got) != events {
		t.Fatalf("%d audit messages stored; want %d", len(got), events)
	}
	for i := range events {
		if id := fmt.Sprintf("agw-carrier.audit.%d", i); got[id] != 1000+uint64(i) {
			t.Errorf("audit message %s holds the event of ingress %d; want %d", id, got[id], 1000+i)
		}
	}
	if out := h.outputFor(seq); out.Header.Get(header.MsgID) != "agw-carrier" {
		t.Errorf("denied record %s; want the recorded one", out.Header.Get(header.MsgID))
	}
}
