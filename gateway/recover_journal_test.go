package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/store/journal"
	"github.com/agentgw/agentgw/subjects/reason"
)

// outputsFor counts the terminal outputs of ingress sequence seq (a
// decision notice is not one).
func (h *harness) outputsFor(seq uint64) []string {
	var where []string
	for _, name := range []string{StreamCap, StreamApproval, StreamDenied, StreamReply} {
		for _, m := range h.all(name) {
			if m.Header.Get(header.IngressSeq) == fmt.Sprint(seq) && m.Header.Get(notice.Header) == "" {
				where = append(where, m.Subject+" "+m.Header.Get(header.Reason))
			}
		}
	}
	return where
}

// TestScaleOutRecoveryAfterJournalLoss: scaled out, a partition's ledger
// is rebuilt from what the journal still holds. A partition's first
// message stays unacknowledged (its consumer's ack floor below it) while
// the next one is decided, delivered and acknowledged; the journal then
// loses both decisions (purged here: what its age limit does once they
// are older than journal_max_age) and the partition changes owner twenty
// minutes later. The new owner's recovery reads both by sequence and
// finds no outcome. It must not decide them again: the acknowledged one
// would end a second time (message_expired) although it was delivered.
// They are left to their redelivery, which the acknowledged one never
// has; a message published after the takeover is decided as usual.
func TestScaleOutRecoveryAfterJournalLoss(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.cfg.Consumer.Partitions = 1
	h.cfg.Consumer.AckWait = time.Hour // the unacknowledged message is not redelivered during the test
	var stopped atomic.Bool
	a := h.startInstance("a", func(in *instance) {
		in.gw.beforeAck = func() error {
			if stopped.CompareAndSwap(false, true) {
				return errors.New("test: the first batch is never acknowledged")
			}
			return nil
		}
	})
	waitFor(t, func() bool { return a.held() == 1 })
	first := h.send(h.body(nil))
	h.outputFor(first)
	second := h.send(h.body(nil))
	h.outputFor(second)
	cons, err := h.js.Consumer(ctx, StreamIngress, h.cfg.Consumer.Durable)
	must(t, err)
	waitFor(t, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 1 && info.Delivered.Stream == second && info.AckFloor.Stream < first
	})
	a.stop(t)

	js, err := h.js.Stream(ctx, journal.Stream)
	must(t, err)
	must(t, js.Purge(ctx))
	h.clock.Advance(20 * time.Minute)
	b := h.startInstance("b")
	waitFor(t, func() bool { return b.held() == 1 })
	// Decided after the recovery: a sync point.
	third := h.send(h.body(nil))
	if got := h.outputFor(third).Header.Get(header.Route); got != "allow" {
		t.Fatalf("message published after the takeover: %s; want allow", got)
	}
	for _, seq := range []uint64{first, second} {
		if outs := h.outputsFor(seq); len(outs) != 1 {
			t.Errorf("ingress %d ends %d times: %v; want once", seq, len(outs), outs)
		}
	}
	if n := b.gw.Stats().Decided.Load(); n != 1 {
		t.Errorf("the new owner decided %d messages; want 1 (the one published after the takeover)", n)
	}
	h.endScaleOut(t, b, a)
}

// TestScaleOutRecoveryPendingAfterJournalLoss: the same journal loss, but
// every message in the unacknowledged range is pending (the gateway died
// holding them, undecided): none can have been acknowledged, so the new
// owner decides them first, although they were stored before anything
// the journal still holds. The purge is marked (the next claim finds the
// journal emptied), and they were issued before it, so a copy of each may
// have been decided then: they are denied ledger_incomplete, not let
// through on a ledger that cannot know.
func TestScaleOutRecoveryPendingAfterJournalLoss(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.cfg.Consumer.Partitions = 1
	h.cfg.Consumer.AckWait = time.Hour // the dead deliveries come back only by recovery
	a := h.startInstance("a")
	waitFor(t, func() bool { return a.held() == 1 })
	a.stop(t)
	held := []uint64{h.send(h.body(nil)), h.send(h.body(nil))}
	crashHolding(t, h.js, h.cfg.Consumer.Durable, len(held))
	js, err := h.js.Stream(ctx, journal.Stream)
	must(t, err)
	must(t, js.Purge(ctx))

	b := h.startInstance("b")
	for _, seq := range held {
		h.wantReason(seq, reason.LedgerIncomplete)
	}
	if n := b.gw.Stats().Recovered.Load(); n != uint64(len(held)) {
		t.Errorf("Stats().Recovered = %d; want %d", n, len(held))
	}
	h.endScaleOut(t, b, a)
}

// TestJournalFrom: the time from which a journal holds every record is
// the replay's start, or the first message's time once the stream has
// lost messages and that is later; and the fate of a message without an
// outcome is unknown only when it was stored before that, less a margin.
func TestJournalFrom(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	since := now.Add(-7 * time.Minute)
	for _, tc := range []struct {
		name string
		st   jetstream.StreamState
		want time.Time
	}{
		{"never-written", jetstream.StreamState{}, since},
		{"nothing-lost", jetstream.StreamState{Msgs: 9, FirstSeq: 1, FirstTime: now.Add(-time.Hour), LastSeq: 9}, since},
		{"aged", jetstream.StreamState{Msgs: 9, FirstSeq: 40, FirstTime: since.Add(-time.Second), LastSeq: 48}, since},
		{"lost-recent", jetstream.StreamState{Msgs: 1, FirstSeq: 49, FirstTime: now.Add(-time.Second), LastSeq: 49}, now.Add(-time.Second)},
		{"emptied", jetstream.StreamState{FirstSeq: 49, LastSeq: 48}, now},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := journalFrom(&jetstream.StreamInfo{State: tc.st, TimeStamp: now}, since); !got.Equal(tc.want) {
				t.Errorf("journalFrom = %s; want %s", got, tc.want)
			}
		})
	}
	from := now.Add(-time.Hour)
	for _, tc := range []struct {
		stored, from time.Time
		want         bool
	}{
		{now.Add(-48 * time.Hour), time.Time{}, false}, // single instance: the ledger holds every outcome
		{from.Add(-time.Second), from, true},
		{from.Add(journalClockMargin - time.Second), from, true},
		{from.Add(journalClockMargin), from, false},
		{now, from, false},
	} {
		if got := unknownFate(tc.stored, tc.from); got != tc.want {
			t.Errorf("unknownFate(stored %s, from %s) = %v; want %v", tc.stored, tc.from, got, tc.want)
		}
	}
}
