package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestExpiryRetriedPublishesOnlyWhatIsLeft: a held request expires while
// the audit stream is full (discard new): its denied record is stored,
// its audit event refused, and the expiry retried every scan. Only what
// is left is published again, so past the denied stream's duplicate
// window (here a second) the request still ends once, not once a window.
func TestExpiryRetriedPublishesOnlyWhatIsLeft(t *testing.T) {
	f := newApprovalFlow(t)
	f.allowErrors = true // the refused audit publishes are logged
	ctx := context.Background()
	as, err := f.js.Stream(ctx, StreamAudit)
	must(t, err)
	ai, err := as.Info(ctx)
	must(t, err)
	acfg := ai.Config
	acfg.MaxMsgs, acfg.Discard = int64(ai.State.Msgs), jetstream.DiscardNew
	_, err = f.js.UpdateStream(ctx, acfg)
	must(t, err)
	ds, err := f.js.Stream(ctx, StreamDenied)
	must(t, err)
	dcfg := ds.CachedInfo().Config
	dcfg.Duplicates = time.Second
	_, err = f.js.UpdateStream(ctx, dcfg)
	must(t, err)

	f.clock.Advance(f.cfg.Limits.ApprovalTTL + time.Second)
	ends := func() (n int) {
		for _, m := range f.all(StreamDenied) {
			if m.Header.Get(header.Reason) == string(reason.ApprovalExpired) && m.Header.Get(header.MessageID) == f.req.HeldMessageID {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(15 * time.Second)
	for ends() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the held request never expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(4 * time.Second) // four scans, each past the one-second window
	if n := ends(); n != 1 {
		t.Fatalf("the held request ended %d times (approval_expired records); want once", n)
	}
}

// TestExpiryRecordTooLargeStoredWithoutBody: a held request expires while
// the denied stream takes no message as large as its record (its
// max_msg_size lowered): the record is stored without the held body, as
// the pipeline stores an oversized denial, and the request ends, instead
// of the refused record being retried for ever.
func TestExpiryRecordTooLargeStoredWithoutBody(t *testing.T) {
	f := newApprovalFlow(t)
	ctx := context.Background()
	ds, err := f.js.Stream(ctx, StreamDenied)
	must(t, err)
	dcfg := ds.CachedInfo().Config
	dcfg.MaxMsgSize = 1800 // the record is some 2,700 bytes, 1,000 without its body
	_, err = f.js.UpdateStream(ctx, dcfg)
	must(t, err)

	f.clock.Advance(f.cfg.Limits.ApprovalTTL + time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for {
		var ends []*jetstream.RawStreamMsg
		for _, m := range f.all(StreamDenied) {
			if m.Header.Get(header.Reason) == string(reason.ApprovalExpired) && m.Header.Get(header.MessageID) == f.req.HeldMessageID {
				ends = append(ends, m)
			}
		}
		if len(ends) == 1 && len(ends[0].Data) == 0 && ends[0].Header.Get(header.BodyDigest) != "" {
			return
		}
		if len(ends) > 1 || time.Now().After(deadline) {
			t.Fatalf("approval_expired records: %d; want one, stored without its body", len(ends))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
