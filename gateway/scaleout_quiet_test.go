package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/store/journal"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestScaleOutQuietJournalTakeGivenBack: an instance dies after its
// grant took a hold and before the grant's batch was journaled (as in
// TestScaleOutTakeBeforeCrashAnswerRefused), in a deployment whose
// journal had been quiet: the records appended before the held request
// have aged out (removed here: only the claims' fences, which carry
// nothing a rebuilt ledger holds), so the stream's first message is the
// held request's own record. Nothing the ledger needs is gone and the
// grant, refused when decided again, was certainly never published: its
// take is given back, and the held request ends, expired.
func TestScaleOutQuietJournalTakeGivenBack(t *testing.T) {
	ctx := context.Background()
	h := scaledOutCrashHarness(t)
	a := h.startInstance("a", dieAfter(false))
	waitFor(t, func() bool { return a.held() == 2 })

	js, err := h.js.Stream(ctx, journal.Stream)
	must(t, err)
	before := js.CachedInfo().State.LastSeq // a's claims' fences

	heldSeq := h.send(h.heldRequest())
	out := h.outputFor(heldSeq)
	if !strings.HasPrefix(out.Subject, "agentgw.approval.") {
		t.Fatalf("request went to %s (%s); want the approval queue", out.Subject, out.Header.Get(header.Reason))
	}
	var req approval.Request
	must(t, json.Unmarshal(out.Data, &req))
	ap := newActor(t)
	ap.token = h.credential(h.issuer, ap, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
	ansSeq := h.grantBy(ap, req)
	waitFor(t, a.nc.IsClosed)
	replaceFile(t, h.cfg.Revocations.File, "jtis: []\nprincipals: []\nkeys: ["+ap.pub+"]\n")

	// What the age limit does to a quiet journal: the records stored
	// before the held request are gone (here: the fences only).
	for seq := uint64(1); seq <= before; seq++ {
		_ = js.DeleteMsg(ctx, seq)
	}
	info, err := js.Info(ctx)
	must(t, err)
	t.Logf("journal: first seq %d at %s, last seq %d", info.State.FirstSeq, info.State.FirstTime, info.State.LastSeq)

	b := h.startInstance("b")
	if got := h.outputFor(ansSeq); reason.Code(got.Header.Get(header.Reason)) != reason.Revoked {
		t.Fatalf("grant decided again: %s %q; want denied %s", got.Subject, got.Header.Get(header.Reason), reason.Revoked)
	}
	h.clock.Advance(h.cfg.Limits.ApprovalTTL + time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, exp := h.fates(req.HeldMessageID); exp > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rel, exp := h.fates(req.HeldMessageID); rel != 0 || exp != 1 {
		t.Fatalf("held request released %d times, expired %d times; want expired once (the grant was never published)", rel, exp)
	}
	h.endScaleOut(t, b, a)
}
