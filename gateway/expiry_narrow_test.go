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
