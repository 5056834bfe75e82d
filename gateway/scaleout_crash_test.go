package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/subjects/reason"
)

// heldThenCrash starts instance a, which dies after its first hold put,
// and sends it a request the policy holds: a wrote the hold to the bucket
// and never journaled the request's decision.
func (h *harness) heldThenCrash() (a *instance, body []byte, env *envelope.Body, heldSeq uint64) {
	h.t.Helper()
	a = h.startInstance("a", dieAfter(true))
	waitFor(h.t, func() bool { return a.held() == 2 })
	body = h.heldRequest()
	env, err := envelope.Parse(body, envelope.Limits{})
	must(h.t, err)
	heldSeq = h.send(body)
	waitFor(h.t, a.nc.IsClosed)
	return a, body, env, heldSeq
}

// expiredOutput matches an expiry's denied record.
func expiredOutput(m *jetstream.RawStreamMsg) bool {
	return strings.HasSuffix(m.Header.Get(header.MsgID), ".expired")
}

// TestScaleOutHoldEndedRequestExpired: as in
// TestScaleOutHoldEndedThenDecidedOtherwise, but the request itself has
// expired by the time it is decided again, so it is refused before its
// digests are taken: its rebuilt approval request still names them.
func TestScaleOutHoldEndedRequestExpired(t *testing.T) { heldEndedRebuilt(t, false, 0) }

// TestScaleOutHoldEndedLongOutage: as above, with the partition down
// long past the hold's deadline and the request's freshness (every
// instance stopped a while, say). The ended hold outlives its freshness
// until the request is acknowledged, so the request, decided again, still
// finds it and ends once, expired, its approval request rebuilt: not a
// second time, message_expired.
func TestScaleOutHoldEndedLongOutage(t *testing.T) { heldEndedRebuilt(t, false, time.Hour) }

// TestScaleOutHoldEndedRequestNowOversized: as above, with max_body_bytes
// lowered meanwhile, so the next owner refuses the message as oversized
// before reading its payload: the approval request it rebuilds still
// names the payload's digest, not zeros.
func TestScaleOutHoldEndedRequestNowOversized(t *testing.T) { heldEndedRebuilt(t, true, 0) }

// heldEndedRebuilt holds a request, kills its instance before the
// journal append, lets the request expire (and, with oversized, lowers
// max_body_bytes below it), and checks the digests of the approval
// request the next owner rebuilds. outage is how much longer the
// partition stays down: the next owner's expiry scan then runs (every
// 100 ms) for the two seconds its lease takeover takes with the clock
// that far past the hold's life.
func heldEndedRebuilt(t *testing.T, oversized bool, outage time.Duration) {
	h := scaledOutCrashHarness(t)
	a, body, env, heldSeq := h.heldThenCrash()
	if oversized {
		h.cfg.Limits.MaxBodyBytes = len(body) - 1
	}
	h.clock.Advance(h.cfg.Limits.MaxTTL + h.cfg.Limits.Skew + h.cfg.Consumer.AckWait + time.Second + outage)
	b := h.startInstance("b")
	h.waitIn(StreamDenied, heldSeq, expiredOutput)
	out := h.waitIn(StreamApproval, heldSeq, func(*jetstream.RawStreamMsg) bool { return true })
	var req approval.Request
	must(t, json.Unmarshal(out.Data, &req))
	h.checkApprovalToken(out)
	if req.BodyDigest != hexDigest(envelope.Digest(body)) || req.PayloadDigest != hexDigest(env.PayloadDigest()) {
		t.Errorf("rebuilt approval request digests %s, %s; want the request's", req.BodyDigest, req.PayloadDigest)
	}
	if rel, exp := h.fates(env.MessageID); rel != 0 || exp != 1 {
		t.Errorf("held request released %d times, expired %d times; want expired once", rel, exp)
	}
	h.endScaleOut(t, b, a)
}

// TestScaleOutGrantTakenLongOutage: an instance dies after its grant
// took a hold in the bucket but before the grant's batch was journaled,
// and the partition stays down long past the hold's deadline and the
// grant's freshness. Decided again, the grant (and its approver's
// credential) has expired and is denied;
// the take it made must then be given back, and was kept for that past
// its freshness, so the held request ends once, expired, rather than
// never.
func TestScaleOutGrantTakenLongOutage(t *testing.T) {
	h := scaledOutCrashHarness(t)
	a := h.startInstance("a", dieAfter(false))
	waitFor(t, func() bool { return a.held() == 2 })
	heldSeq := h.send(h.heldRequest())
	out := h.outputFor(heldSeq)
	var req approval.Request
	must(t, json.Unmarshal(out.Data, &req))
	ansSeq := h.grant(req)
	waitFor(t, a.nc.IsClosed)

	lim := h.cfg.Limits
	h.clock.Advance(lim.ApprovalTTL + lim.MaxTTL + 2*lim.Skew + h.cfg.Consumer.AckWait + time.Hour)
	b := h.startInstance("b") // its expiry scans the bucket while it waits for a's leases
	if got := h.outputFor(ansSeq); !strings.HasPrefix(got.Subject, "agentgw.denied.") {
		t.Fatalf("grant decided an hour late: %s %q; want it denied (expired)", got.Subject, got.Header.Get(header.Reason))
	}
	h.waitIn(StreamDenied, heldSeq, expiredOutput)
	if rel, exp := h.fates(req.HeldMessageID); rel != 0 || exp != 1 {
		t.Errorf("held request released %d times, expired %d times; want expired once", rel, exp)
	}
	h.endScaleOut(t, b, a)
}

// TestScaleOutHeldAgainMatchesHold: a request held, its instance dead
// before the journal append, held again by the partition's next owner
// under a policy of another version: the approval request published
// names the hold's deadline and policy version, so a grant built from it
// releases the request.
func TestScaleOutHeldAgainMatchesHold(t *testing.T) {
	h := scaledOutCrashHarness(t)
	h.cfg.Limits.ApprovalTTL = time.Hour
	a, _, env, heldSeq := h.heldThenCrash()
	p := filepath.Join(h.dir, "unrelated.cedar")
	must(t, os.WriteFile(p, []byte("forbid (principal, action, resource == Target::\"nothing.here\");\n"), 0o600))
	h.cfg.Policies = append(h.cfg.Policies, p)
	h.clock.Advance(h.cfg.Consumer.AckWait + time.Second)
	b := h.startInstance("b")
	out := h.waitIn(StreamApproval, heldSeq, func(*jetstream.RawStreamMsg) bool { return true })
	var req approval.Request
	must(t, json.Unmarshal(out.Data, &req))
	h.checkApprovalToken(out)
	kv, err := h.js.KeyValue(context.Background(), HoldsBucket)
	must(t, err)
	e, err := kv.Get(context.Background(), holdKey(holdID(env.Tenant, env.MessageID)))
	must(t, err)
	var kh kvHold
	must(t, json.Unmarshal(e.Value(), &kh))
	var rec held
	must(t, json.Unmarshal(kh.Value, &rec))
	if !req.Deadline.Equal(rec.Deadline) || req.PolicyVersion != rec.PolicyVersion {
		t.Errorf("published deadline %s, policy %s; the hold's %s, %s", req.Deadline, req.PolicyVersion, rec.Deadline, rec.PolicyVersion)
	}
	if got := h.outputFor(h.grant(req)); reason.Code(got.Header.Get(header.Reason)) != "" {
		t.Errorf("grant built from the published request: %s %q; want the release", got.Subject, got.Header.Get(header.Reason))
	}
	if rel, _ := h.fates(env.MessageID); rel != 1 {
		t.Errorf("released %d times; want once", rel)
	}
	h.endScaleOut(t, b, a)
}

// TestScaleOutHoldOfAnOversizedRedelivery: max_body_bytes is lowered
// while a held request's instance is dead before its journal append. The
// request is now refused as oversized, and its hold, which it wrote when
// it was verified, is removed: it ends once.
func TestScaleOutHoldOfAnOversizedRedelivery(t *testing.T) {
	h := scaledOutCrashHarness(t)
	h.cfg.Limits.ApprovalTTL = time.Hour
	a, body, env, heldSeq := h.heldThenCrash()
	h.cfg.Limits.MaxBodyBytes = len(body) - 1
	b := h.startInstance("b")
	if got := h.outputFor(heldSeq); reason.Code(got.Header.Get(header.Reason)) != reason.Oversized {
		t.Fatalf("decided again: %s %q; want %s", got.Subject, got.Header.Get(header.Reason), reason.Oversized)
	}
	h.clock.Advance(2 * time.Hour)
	time.Sleep(300 * time.Millisecond) // the expiry scans the bucket again
	if rel, exp := h.fates(env.MessageID); rel != 0 || exp != 0 {
		t.Errorf("oversized request released %d times, expired %d times; want neither", rel, exp)
	}
	h.endScaleOut(t, b, a)
}

// TestHoldsValueThatDoesNotRead: a value at a message's own hold key that
// does not decode is no hold of that message: removing or giving back
// its hold finds nothing there, rather than failing the message's batch
// on every redelivery.
func TestHoldsValueThatDoesNotRead(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	js, err := jetstream.New(natstest.Connect(t, srv))
	must(t, err)
	kv, err := ensureHoldsBucket(context.Background(), js, 1)
	must(t, err)
	_, err = kv.Put(context.Background(), holdKey("tenant_a/x"), []byte("not json"))
	must(t, err)
	k := &kvHolds{kv: kv}
	if ended, err := k.retire(nil, "tenant_a/x", 1); ended != nil || err != nil {
		t.Errorf("retire over a bad value = %v, %v; want nothing, no error", ended, err)
	}
	if back, err := k.untake(nil, "tenant_a/x", 1); back || err != nil {
		t.Errorf("untake over a bad value = %v; want no error", err)
	}
}

// TestHoldsLostRaceOnReplicatedBucket: on an R3 holds bucket, as in a
// production scale-out, every instance's expiry scan may try to expire
// the same hold at once. At most one wins a scan, the hold unchanged when
// none does (the server can refuse them all while an earlier write to
// the key is in flight), and for the others a lost race is a lost race,
// not a failure to log and retry: on a replicated stream the server
// refuses a write to a key whose other write is still in flight with
// another error code than a stale revision's.
func TestHoldsLostRaceOnReplicatedBucket(t *testing.T) {
	servers := natstest.StartCluster(t, 3)
	js, err := jetstream.New(natstest.Connect(t, servers[0]))
	must(t, err)
	ctx := context.Background()
	var kv jetstream.KeyValue
	deadline := time.Now().Add(30 * time.Second)
	for kv, err = ensureHoldsBucket(ctx, js, 3); err != nil; kv, err = ensureHoldsBucket(ctx, js, 3) {
		if time.Now().After(deadline) {
			t.Fatalf("R3 holds bucket: %v", err)
		}
		time.Sleep(200 * time.Millisecond) // until every peer has reported in
	}
	k := &kvHolds{kv: kv}
	const racers = 6
	for round := range 10 {
		id := fmt.Sprintf("tenant_a/held-%d", round)
		h := kvHold{State: kvHeld, Creator: 1, Deadline: time.Now(), Value: []byte(`{}`)}
		val, _ := json.Marshal(h)
		rev, err := kv.Create(ctx, holdKey(id), val)
		must(t, err)
		due := kvDue{key: holdKey(id), id: id, rev: rev, h: &h}
		var wg sync.WaitGroup
		errs := make([]error, racers)
		// The server may refuse every racer while a write to the key is
		// still in flight (the create's, just acknowledged): nobody wins
		// that scan, the hold is unchanged, and the next scan races again.
		for scan := 0; ; scan++ {
			won := make([]bool, racers)
			for i := range racers {
				wg.Go(func() { _, won[i], errs[i] = k.markExpired(ctx, due, []byte("outputs")) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("%s: expiry %d that lost = %v; want no error", id, i, err)
				}
			}
			n := countTrue(won)
			if n > 1 {
				t.Errorf("%s: %d of %d expiries won; want at most one", id, n, racers)
			}
			if n == 1 {
				break
			}
			got, gotRev, err := k.get(due.key)
			must(t, err)
			if got == nil || got.State != kvHeld || gotRev != rev {
				t.Fatalf("%s after a scan nobody won = %+v at %d; want the hold unchanged at %d", id, got, gotRev, rev)
			}
			if scan == 4 {
				t.Fatalf("%s: five scans of %d racers and nobody won", id, racers)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The removals of the entry at the revision the others saw.
		for i := range racers {
			wg.Go(func() { errs[i] = k.remove(ctx, due.key, rev) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("%s: removal %d at a moved revision = %v; want no error", id, i, err)
			}
		}
		got, _, err := k.get(due.key)
		must(t, err)
		if got == nil || got.State != kvExpired {
			t.Errorf("%s after the races = %+v; want the winner's expiry", id, got)
		}
	}
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// TestScaleOutEndedHoldsRemoved: approval holds outlive their freshness
// only until the messages that put and took them are acknowledged. A
// request granted and one that expired leave nothing in the bucket once
// the clock is past their holds' life.
func TestScaleOutEndedHoldsRemoved(t *testing.T) {
	h := scaledOutCrashHarness(t)
	a := h.startInstance("a")
	waitFor(t, func() bool { return a.held() == 2 })
	granted := h.outputFor(h.send(h.heldRequest()))
	var req approval.Request
	must(t, json.Unmarshal(granted.Data, &req))
	h.outputFor(h.grant(req))
	expiring := h.send(h.heldRequest())
	h.outputFor(expiring)
	h.clock.Advance(h.cfg.Limits.ApprovalTTL + time.Second)
	h.waitIn(StreamDenied, expiring, expiredOutput)

	lim := h.cfg.Limits
	h.clock.Advance(lim.MaxTTL + 2*lim.Skew + time.Second)
	kv, err := h.js.KeyValue(context.Background(), HoldsBucket)
	must(t, err)
	var left []string
	waitFor(t, func() bool {
		left = left[:0]
		keys, err := kv.ListKeys(context.Background())
		must(t, err)
		for k := range keys.Keys() {
			if strings.HasPrefix(k, "h.") {
				left = append(left, k)
			}
		}
		return len(left) == 0
	})
	h.endScaleOut(t, a)
}

// TestScaleOutAnswerMarkedBeforeCrashRefused: an instance dies after a
// response set its request's answered marker in the bucket but before
// the response's batch was journaled, and the partition's next owner
// refuses the response (the responder's credential expired meanwhile).
// The marker is given back: the responder, with a new credential,
// answers again and the request gets that answer, once.
func TestScaleOutAnswerMarkedBeforeCrashRefused(t *testing.T) {
	h := scaledOutCrashHarness(t)
	const lifetime = 10 * time.Second
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.*"}, lifetime, "")
	a := h.startInstance("a", func(in *instance) {
		in.gw.holds = &dyingHolds{holdStore: in.gw.holds, onOnce: true, die: in.nc.Close}
	})
	env := h.deliveredRefund()
	first := h.respond(h.consumer, env.MessageID, `{"refund_id":"r1","status":"drafted"}`)
	waitFor(t, a.nc.IsClosed)

	// The next owner decides the response after its credential expired
	// (past the skew), even as of its recovered decision time; the
	// request's one-minute response deadline has not passed.
	h.clock.Advance(lifetime + h.cfg.Limits.Skew + h.cfg.Consumer.AckWait + time.Second)
	b := h.startInstance("b")
	if got := h.outputFor(first); reason.Code(got.Header.Get(header.Reason)) != reason.CredentialExpired {
		t.Fatalf("response decided again: %s %q; want denied %s", got.Subject, got.Header.Get(header.Reason), reason.CredentialExpired)
	}
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.*"}, time.Hour, "")
	again := h.outputFor(h.respond(h.consumer, env.MessageID, `{"refund_id":"r2","status":"drafted"}`))
	if want := "agentgw.reply.tenant_a." + h.agent.pub; again.Subject != want {
		t.Fatalf("the answer after the refused one: %s %q; want the reply on %s", again.Subject, again.Header.Get(header.Reason), want)
	}
	if n := len(h.replies()); n != 1 {
		t.Errorf("replies = %d; want 1", n)
	}
	h.endScaleOut(t, b, a)
}

// TestScaleOutResponseRecordOfRequestDecidedOtherwise: an instance dies
// after an allowed request's response record landed in the bucket but
// before its batch was journaled, and the partition's next owner denies
// the request (a policy now forbids it). The record is removed with that
// decision: the request was never delivered, and an answer naming it is
// refused, not sealed to the requester, who was told it was denied.
func TestScaleOutResponseRecordOfRequestDecidedOtherwise(t *testing.T) {
	h := scaledOutCrashHarness(t)
	a, env, seq := h.refundAllowedThenDied(t)
	p := filepath.Join(h.dir, "forbid-refunds.cedar")
	must(t, os.WriteFile(p, []byte("forbid (principal, action == Action::\"tool_call\", resource == Target::\"refunds.draft_refund\");\n"), 0o600))
	h.cfg.Policies = append(h.cfg.Policies, p)
	b := h.startInstance("b")
	h.wantReason(seq, reason.PolicyDenied)
	h.wantReason(h.respond(h.consumer, env.MessageID, `{"refund_id":"r1","status":"drafted"}`), reason.NoSuchRequest)
	h.endScaleOut(t, b, a)
}

// refundAllowedThenDied starts instance a, which allows a sealed refund
// (its target takes responses, answered by h.consumer) and dies once the
// request's response record is in the shared bucket, before its journal
// append: nothing is published. It returns a, the request and its
// ingress sequence.
func (h *harness) refundAllowedThenDied(t *testing.T) (*instance, *envelope.Body, uint64) {
	t.Helper()
	h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:refunds.*"}, time.Hour, "")
	a := h.startInstance("a", func(in *instance) {
		in.gw.holds = &dyingHolds{holdStore: in.gw.holds, onResp: true, die: in.nc.Close}
	})
	waitFor(t, func() bool { return a.held() == 2 })
	body, _ := h.sealedRefund(h.agent, 1500, nil)
	env, err := envelope.Parse(body, envelope.Limits{})
	must(t, err)
	seq := h.send(body)
	waitFor(t, a.nc.IsClosed)
	return a, env, seq
}

// A grant released its request, whose target takes responses, and its
// instance died after the response record was written and before the
// journal append. Decided again by the next owner, the grant does not
// release the request (its approver revoked: the request stays held; or
// a policy now forbids the request: it is denied at release), so the
// request was never delivered and takes no answer.
func TestScaleOutReleasedResponseRecordOfGrantDecidedOtherwise(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(h *harness, approver *actor)
		granted reason.Code // how the grant ends the second time
	}{
		{"approver revoked", func(h *harness, ap *actor) {
			must(t, os.WriteFile(h.cfg.Revocations.File, []byte("jtis: []\nprincipals: []\nkeys: ["+ap.pub+"]\n"), 0o600))
		}, reason.Revoked},
		{"request forbidden", func(h *harness, _ *actor) {
			p := filepath.Join(h.dir, "forbid-payments.cedar")
			must(t, os.WriteFile(p, []byte("forbid (principal, action == Action::\"tool_call\", resource == Target::\"payments.send\");\n"), 0o600))
			h.cfg.Policies = append(h.cfg.Policies, p)
		}, reason.PolicyDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := scaledOutCrashHarness(t)
			cat := fmt.Sprintf(testCatalog, h.consumer.xkey)
			cat = strings.Replace(cat, "    approver_visible: [amount_cents]\n", "    approver_visible: [amount_cents]\n    response_deadline: 1m\n", 1)
			must(t, os.WriteFile(h.cfg.Catalog, []byte(cat), 0o600))
			h.consumer.token = h.credential(h.issuer, h.consumer, "tenant_a", []string{"respond:payments.*"}, time.Hour, "")
			a := h.startInstance("a", func(in *instance) {
				in.gw.holds = &dyingHolds{holdStore: in.gw.holds, onResp: true, die: in.nc.Close}
			})
			_, req, ap, grantSeq := h.grantThenCrash(a)
			tc.change(h, ap)
			b := h.startInstance("b")
			h.wantReason(grantSeq, tc.granted)
			h.wantReason(h.respond(h.consumer, req.HeldMessageID, `{"ok":true}`), reason.NoSuchRequest)
			if n := len(h.replies()); n != 0 {
				t.Errorf("the requester got %d replies to a request never delivered", n)
			}
			h.endScaleOut(t, b, a)
		})
	}
}

// TestHoldsMarkerOutlivesRecoveredBatches: a single-use marker of the
// holds bucket (a held message id, a request's one answer) is not
// removed at the last instant it can matter by the scanning instance's
// clock: a batch recovered after a crash is judged up to ack_wait back,
// on an instance whose clock may be behind by the clocks' margin, and
// would take a copy as fresh and set the marker again (another agent's
// copy of an ended request held again, for a stale grant to release).
// It is due once that much more has passed.
func TestHoldsMarkerOutlivesRecoveredBatches(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	js, err := jetstream.New(natstest.Connect(t, srv))
	must(t, err)
	kv, err := ensureHoldsBucket(context.Background(), js, 1)
	must(t, err)
	k := &kvHolds{kv: kv}
	last := time.Unix(1_800_000_000, 0)
	if ok, err := k.once(nil, heldMarker, "tenant_a/m", last, 7); !ok || err != nil {
		t.Fatalf("once = %v, %v", ok, err)
	}
	const ackWait = 30 * time.Second
	for _, c := range []struct {
		at  time.Time
		due bool
	}{
		{last.Add(time.Second), false},
		{last.Add(ackWait), false},
		{last.Add(ackWait + journalClockMargin), false},
		{last.Add(ackWait + journalClockMargin + time.Second), true},
	} {
		due, err := k.scan(context.Background(), c.at, time.Hour, markerGrace(ackWait))
		must(t, err)
		if got := len(due) == 1; got != c.due {
			t.Errorf("marker due at its last instant + %s: %v; want %v", c.at.Sub(last), got, c.due)
		}
	}
}

// TestScaleOutGivenBackHoldSwept: an instance dies after a grant took a
// hold, before the grant's batch was journaled. Requester and approver
// are then revoked, and the next owner's sweep skips the hold, taken.
// The grant, decided again, is refused and gives the take back; the hold,
// pending again, is swept then, and the revoked requester's request is
// withdrawn at once rather than left for another answer or its expiry.
func TestScaleOutGivenBackHoldSwept(t *testing.T) {
	h := scaledOutCrashHarness(t)
	h.cfg.Limits.ApprovalTTL = time.Hour
	a := h.startInstance("a", dieAfter(false))
	heldSeq, _, ap, ansSeq := h.grantThenCrash(a)
	replaceFile(t, h.cfg.Revocations.File, "jtis: []\nprincipals: []\nkeys: ["+ap.pub+", "+h.agent.pub+"]\n")

	// b decides nothing until its start's and its tenures' sweeps have
	// run (and skipped the hold, taken).
	open := make(chan struct{})
	b := h.startInstance("b", func(in *instance) { in.gw.holds = &gatedHolds{holdStore: in.gw.holds, open: open} })
	waitFor(t, func() bool { return b.held() == 2 })
	time.Sleep(time.Second) // ten expiry ticks: the sweeps they were asked for have run
	close(open)
	if got := reason.Code(h.outputFor(ansSeq).Header.Get(header.Reason)); got != reason.Revoked {
		t.Fatalf("the grant decided again: %q; want revoked", got)
	}
	m := h.waitIn(StreamDenied, heldSeq, func(m *jetstream.RawStreamMsg) bool {
		return strings.HasSuffix(m.Header.Get(header.MsgID), ".withdrawn")
	})
	if got := reason.Code(m.Header.Get(header.Reason)); got != reason.Revoked {
		t.Fatalf("withdrawn: %q (%s); want revoked", got, m.Header.Get(header.Detail))
	}
	h.endScaleOut(t, b, a)
}

// TestScaleOutHeldReplayRefusedAgainRetiresItsHold: an operator's
// re-submission, held for an approver, whose instance died after the
// hold's write and before its batch was journaled, is decided again once
// its replay authorization has expired: refused replay_refused, which
// judges it before its body is read. The hold its first decision put is
// still retired, so the message ends once: neither the expiry nor a
// grant ends it again.
func TestScaleOutHeldReplayRefusedAgainRetiresItsHold(t *testing.T) {
	h := scaledOutCrashHarness(t)
	h.cfg.Limits.ApprovalTTL = time.Hour
	a := h.startInstance("a", dieAfter(true))
	waitFor(t, func() bool { return a.held() == 2 })
	body := h.heldRequest()
	env, err := envelope.Parse(body, envelope.Limits{})
	must(t, err)
	h.gw = a.gw // the gateway whose keys sign the authorization
	op := h.replayOperator()
	hdr := h.signed(h.agent, h.agent.token, body)
	h.setReplayAuth(hdr, body, 1, op, h.clock.Now().Add(replayAuthTTL).Unix())
	seq := h.publish(h.ingress(h.agent, "tenant_a"), body, hdr)
	waitFor(t, a.nc.IsClosed)

	h.clock.Advance(replayAuthTTL + h.cfg.Consumer.AckWait + time.Second)
	b := h.startInstance("b")
	if got := reason.Code(h.outputFor(seq).Header.Get(header.Reason)); got != reason.ReplayRefused {
		t.Fatalf("decided again: %q; want replay_refused", got)
	}
	kv, err := h.js.KeyValue(context.Background(), HoldsBucket)
	must(t, err)
	if e, err := kv.Get(context.Background(), holdKey(holdID(env.Tenant, env.MessageID))); err == nil {
		t.Fatalf("the first decision's hold is left in the bucket: %.60s", e.Value())
	}
	h.endScaleOut(t, b, a)
}

// grantThenCrash, with instance a holding both partitions and set to
// die at its next bucket write of the kind its setup chose, holds a
// critical request and sends a grant of it by a new approver, and waits
// for a to die.
func (h *harness) grantThenCrash(a *instance) (heldSeq uint64, req approval.Request, ap *actor, grantSeq uint64) {
	h.t.Helper()
	waitFor(h.t, func() bool { return a.held() == 2 })
	heldSeq = h.send(h.heldRequest())
	must(h.t, json.Unmarshal(h.outputFor(heldSeq).Data, &req))
	ap = newActor(h.t)
	ap.token = h.credential(h.issuer, ap, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
	grantSeq = h.grantBy(ap, req)
	waitFor(h.t, a.nc.IsClosed)
	return heldSeq, req, ap, grantSeq
}
