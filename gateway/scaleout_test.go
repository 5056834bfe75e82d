package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/agentgw/agentgw/gateway/audit"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/store/journal"
	"github.com/agentgw/agentgw/store/lease"
	"github.com/agentgw/agentgw/subjects/reason"
)

// instance is one scaled-out gateway of a test, on its own connection.
type instance struct {
	gw     *Gateway
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

func (h *harness) startInstance(name string, setup ...func(*instance)) *instance {
	h.t.Helper()
	cfg := h.cfg
	cfg.DataDir = filepath.Join(h.dir, "data-"+name)
	cfg.ScaleOut = &ScaleOutConfig{Instance: name, LeaseTTL: 2 * time.Second, LeaseRenew: 500 * time.Millisecond, LeaseMargin: 400 * time.Millisecond,
		JournalMaxAge: h.journalMaxAge}
	h.leaseBucketTTL(cfg.ScaleOut.LeaseTTL)
	nc := natstest.Connect(h.t, h.srv)
	logger := zerolog.New(h.logs).With().Str("instance", name).Timestamp().Logger()
	gw, err := New(cfg, append([]Option{WithClock(h.clock.Now), WithLogger(logger), WithConn(nc)}, h.opts...)...)
	must(h.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{gw: gw, nc: nc, cancel: cancel, done: make(chan error, 1)}
	for _, f := range setup {
		f(in)
	}
	go func() { in.done <- gw.Run(ctx) }()
	h.t.Cleanup(func() { in.stop(h.t) })
	// One at a time: nats-server 2.15.2 races (-race) between a stream
	// update and a consumer create on the same stream.
	select {
	case <-gw.Ready():
	case <-time.After(30 * time.Second):
		h.t.Fatalf("instance %s not ready", name)
	}
	return in
}

// leaseBucketTTL gives the lease bucket the scaled-out instances' TTL
// when a single instance made it with the default (15 s) and holds no
// lease now: the offline change docs/scale-out.md describes, which a
// scaled-out instance would otherwise refuse (lease.ErrBucketMismatch).
func (h *harness) leaseBucketTTL(ttl time.Duration) {
	h.t.Helper()
	ctx := context.Background()
	kv, err := h.js.KeyValue(ctx, lease.DefaultBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return
	}
	must(h.t, err)
	st, err := kv.Status(ctx)
	must(h.t, err)
	if st.TTL() == ttl {
		return
	}
	if keys, err := kv.ListKeys(ctx); err == nil {
		for k := range keys.Keys() {
			h.t.Fatalf("the lease bucket's TTL is changed offline, but %s is live", k)
		}
	}
	_, err = h.js.UpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: lease.DefaultBucket, Description: "agentgw: partition leases and member heartbeats",
		History: 1, TTL: ttl, Storage: jetstream.FileStorage, Replicas: 1, LimitMarkerTTL: ttl})
	must(h.t, err)
}

// endScaleOut checks every ingress message has its one output, stops the
// instances in order, then scans everything emitted for secrets and every
// audit event against its schema.
func (h *harness) endScaleOut(t *testing.T, instances ...*instance) {
	t.Helper()
	r, err := invariant.Wait(context.Background(), h.js, 15*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
	for _, in := range instances {
		in.stop(t)
	}
	h.scanSecrets()
	h.validateAudit()
	// Journaled partitions write one audit message per decision
	// (recordOutcomes: a journal append can stop part way).
	for _, m := range h.all(StreamAudit) {
		if n := len(audit.Lines(m.Data)); n != 1 {
			t.Errorf("scale-out audit message %s holds %d events; want 1", m.Header.Get(header.MsgID), n)
		}
	}
}

func (in *instance) stop(t testing.TB) {
	if in.gw == nil {
		return
	}
	in.cancel()
	if err := <-in.done; err != nil && !in.nc.IsClosed() {
		t.Errorf("gateway Run: %v", err)
	}
	if err := in.gw.Close(); err != nil {
		t.Errorf("gateway Close: %v", err)
	}
	in.gw = nil
}

// held is the number of partitions the instance holds now.
func (in *instance) held() int {
	select {
	case <-in.gw.Ready():
	default:
		return 0
	}
	in.gw.scale.mu.Lock()
	defer in.gw.scale.mu.Unlock()
	return len(in.gw.scale.live)
}

// spreadSent is a message spreadAgents published, to publish again.
type spreadSent struct {
	body []byte
	hdr  nats.Header
	subj string
	seq  uint64
}

// spreadAgents publishes one kb.search message from each of n new
// agents of tenant_a, which the partition transform spreads over the
// partitions, and returns them.
func (h *harness) spreadAgents(n int) []spreadSent {
	var msgs []spreadSent
	for range n {
		ag := newActor(h.t)
		ag.token = h.credential(h.issuer, ag, "tenant_a", []string{"kb:read"}, time.Hour, "")
		body := h.body(nil)
		s := spreadSent{body: body, hdr: h.signed(ag, ag.token, body), subj: h.ingress(ag, "tenant_a")}
		s.seq = h.publish(s.subj, s.body, s.hdr)
		msgs = append(msgs, s)
	}
	return msgs
}

// TestScaleOutSharesPartitionsAndFailsOver: two instances split four
// partitions, each deciding its agents' messages; when one dies without
// releasing anything (its connection cut), the other takes its
// partitions after the lease TTL, rebuilds their ledgers from the
// journal, and denies a replay of a message the dead one allowed.
func TestScaleOutSharesPartitionsAndFailsOver(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true // the cut connection is logged as an error
	h.cfg.Consumer.Partitions = 4
	a, b := h.startInstance("a"), h.startInstance("b")
	waitFor(t, func() bool { return a.held() == 2 && b.held() == 2 })

	// Agents spread over the partitions.
	msgs := h.spreadAgents(16)
	for _, s := range msgs {
		if out := h.outputFor(s.seq); out.Header.Get(header.Route) != string(store.RouteAllow) {
			t.Fatalf("message %d: route %s (%s); want allow", s.seq, out.Header.Get(header.Route), out.Header.Get(header.Reason))
		}
	}
	da, db := a.gw.Stats().Decided.Load(), b.gw.Stats().Decided.Load()
	if da == 0 || db == 0 || da+db != uint64(len(msgs)) {
		t.Fatalf("decisions a=%d b=%d; want both > 0 summing to %d", da, db, len(msgs))
	}

	// a dies: no graceful release, no more renewals.
	a.nc.Close()
	waitFor(t, func() bool { return b.held() == 4 })

	// Every message replayed: all denied, including those a allowed.
	for _, s := range msgs {
		seq := h.publish(s.subj, s.body, s.hdr)
		h.wantReason(seq, reason.ReplayDetected)
	}
	// New traffic still flows.
	fresh := h.send(h.body(nil))
	if out := h.outputFor(fresh); out.Header.Get(header.Route) != string(store.RouteAllow) {
		t.Fatalf("after failover: route %s (%s); want allow", out.Header.Get(header.Route), out.Header.Get(header.Reason))
	}
	h.endScaleOut(t, b, a)
}

// partitionOf is the partition the server put ingress message seq in.
func (h *harness) partitionOf(seq uint64) string {
	h.t.Helper()
	s, err := h.js.Stream(context.Background(), StreamIngress)
	must(h.t, err)
	m, err := s.GetMsg(context.Background(), seq)
	must(h.t, err)
	return strings.Split(m.Subject, ".")[2]
}

// TestScaleOutApprovalAcrossPartitions: the approver's envelope lands in
// another partition than the held request, maybe on another instance:
// the shared holds bucket lets the grant find the hold, releases it
// exactly once, and refuses a second grant; a request nobody answers
// expires exactly once although both instances scan for expiries.
func TestScaleOutApprovalAcrossPartitions(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true
	h.cfg.Consumer.Partitions = 4
	h.opts = append(h.opts, func(g *Gateway) { g.expireEvery = 100 * time.Millisecond })
	a, b := h.startInstance("a"), h.startInstance("b")
	waitFor(t, func() bool { return a.held() == 2 && b.held() == 2 })

	hold := func() (uint64, approval.Request) {
		body := h.body(func(bb *envelope.Builder) {
			bb.Capability, bb.Target = envelope.ToolCall, "payments.send"
			bb.Payload = envelope.Payload{Plain: json.RawMessage(`{"amount_cents":990000,"iban":"DE00123"}`)}
		})
		seq := h.send(body)
		out := h.outputFor(seq)
		if !strings.HasPrefix(out.Subject, "agentgw.approval.") {
			t.Fatalf("request went to %s (%s); want the approval queue", out.Subject, out.Header.Get(header.Reason))
		}
		var req approval.Request
		must(t, json.Unmarshal(out.Data, &req))
		return seq, req
	}
	heldSeq, req := hold()
	// Approvers whose messages land in other partitions than the agent's.
	var approvers []*actor
	for len(approvers) < 2 {
		ap := newActor(t)
		ap.token = h.credential(h.issuer, ap, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
		probe := h.body(nil)
		seq := h.publish(h.ingress(ap, "tenant_a"), probe, h.signed(ap, ap.token, probe))
		h.outputFor(seq)
		if h.partitionOf(seq) != h.partitionOf(heldSeq) {
			approvers = append(approvers, ap)
		}
	}
	answer := func(ap *actor) uint64 {
		raw, _ := json.Marshal(approval.Answer{Decision: approval.Grant, BodyDigest: req.BodyDigest, PolicyVersion: req.PolicyVersion})
		body := h.body(func(bb *envelope.Builder) {
			bb.Capability, bb.Target = envelope.Approve, req.HeldMessageID
			bb.Payload = envelope.Payload{Plain: raw}
		})
		return h.publish(h.ingress(ap, "tenant_a"), body, h.signed(ap, ap.token, body))
	}
	out := h.outputFor(answer(approvers[0]))
	if !strings.HasPrefix(out.Subject, "agentgw.cap.tenant_a.payments.send") {
		t.Fatalf("granted request went to %s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
	h.wantReason(answer(approvers[1]), reason.ApprovalInvalid)

	// One nobody answers: expired exactly once.
	expSeq, _ := hold()
	h.clock.Advance(h.cfg.Limits.ApprovalTTL + time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for h.find(StreamDenied, header.IngressSeq, fmt.Sprint(expSeq)) == nil {
		if time.Now().After(deadline) {
			t.Fatal("held request did not expire")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // both instances scan again
	n := 0
	for _, m := range h.all(StreamDenied) {
		if m.Header.Get(header.IngressSeq) == fmt.Sprint(expSeq) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("expiry published %d times; want 1", n)
	}
	if got := len(h.all(StreamCap)); got != 1 {
		t.Fatalf("capability deliveries = %d; want exactly 1", got)
	}
	h.endScaleOut(t, b, a)
}

// dyingHolds kills its instance the moment one of its approval hold
// writes (or, with onOnce, a single-use marker) lands in the bucket, as a kill -9 between that write and the
// journal append of the batch making it would: the instance's
// connection is cut, so nothing of the batch is journaled, published or
// acknowledged.
type dyingHolds struct {
	holdStore
	onPut, onTake, onOnce, onResp bool
	die                           func()
}

func (d *dyingHolds) once(b *ledgerBatch, kind, id string, expires time.Time, seq uint64) (bool, error) {
	first, err := d.holdStore.once(b, kind, id, expires, seq)
	if first && d.onOnce {
		d.die()
	}
	return first, err
}

func (d *dyingHolds) putHold(b *ledgerBatch, id string, deadline time.Time, v []byte, seq uint64, replace bool) error {
	err := d.holdStore.putHold(b, id, deadline, v, seq, replace)
	if err == nil && ((d.onPut && !strings.HasPrefix(id, respPrefix)) || (d.onResp && strings.HasPrefix(id, respPrefix))) {
		d.die()
	}
	return err
}

func (d *dyingHolds) takeHold(b *ledgerBatch, id string, seq uint64) (bool, error) {
	took, err := d.holdStore.takeHold(b, id, seq)
	if took && d.onTake {
		d.die()
	}
	return took, err
}

// dieAfter makes an instance die after its first hold put (put) or
// take (!put).
func dieAfter(put bool) func(*instance) {
	return func(in *instance) {
		in.gw.holds = &dyingHolds{holdStore: in.gw.holds, onPut: put, onTake: !put, die: in.nc.Close}
	}
}

// gatedHolds holds back every hold lookup of its instance until open
// is closed.
type gatedHolds struct {
	holdStore
	open <-chan struct{}
}

func (g *gatedHolds) hold(b *ledgerBatch, id string, seq uint64) (foundHold, bool, error) {
	<-g.open
	return g.holdStore.hold(b, id, seq)
}

// heldRequest builds a request the test policy holds for approval.
func (h *harness) heldRequest() []byte {
	return h.body(func(bb *envelope.Builder) {
		bb.Capability, bb.Target = envelope.ToolCall, "payments.send"
		bb.Payload = envelope.Payload{Plain: json.RawMessage(`{"amount_cents":990000,"iban":"DE00123"}`)}
	})
}

// grant publishes a grant of req from a new approver.
func (h *harness) grant(req approval.Request) uint64 {
	h.t.Helper()
	ap := newActor(h.t)
	ap.token = h.credential(h.issuer, ap, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
	return h.grantBy(ap, req)
}

// grantBy publishes a grant of req from approver ap.
func (h *harness) grantBy(ap *actor, req approval.Request) uint64 {
	h.t.Helper()
	raw, _ := json.Marshal(approval.Answer{Decision: approval.Grant, BodyDigest: req.BodyDigest, PolicyVersion: req.PolicyVersion})
	body := h.body(func(bb *envelope.Builder) {
		bb.Capability, bb.Target = envelope.Approve, req.HeldMessageID
		bb.Payload = envelope.Payload{Plain: raw}
	})
	return h.publish(h.ingress(ap, "tenant_a"), body, h.signed(ap, ap.token, body))
}

// waitIn waits for a message of stream with ingress sequence seq that
// ok accepts.
func (h *harness) waitIn(stream string, seq uint64, ok func(*jetstream.RawStreamMsg) bool) *jetstream.RawStreamMsg {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range h.all(stream) {
			if m.Header.Get(header.IngressSeq) == fmt.Sprint(seq) && ok(m) {
				return m
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("nothing on %s for ingress sequence %d", stream, seq)
	return nil
}

// fates counts the ends of held request messageID: releases (capability
// stream) and expiries (denied stream, Nats-Msg-Id suffix .expired).
func (h *harness) fates(messageID string) (released, expired int) {
	for _, m := range h.all(StreamCap) {
		if m.Header.Get(header.MessageID) == messageID {
			released++
		}
	}
	for _, m := range h.all(StreamDenied) {
		if m.Header.Get(header.MessageID) == messageID && strings.HasSuffix(m.Header.Get(header.MsgID), ".expired") {
			expired++
		}
	}
	return released, expired
}

// scaledOutCrashHarness is two instances' harness with the fault tests'
// approval TTL (shorter than a lease takeover) and a fast expiry scan.
func scaledOutCrashHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.allowErrors = true // the cut connection is logged as an error
	h.cfg.Consumer.Partitions = 2
	h.cfg.Limits.ApprovalTTL = 3 * time.Second
	h.opts = append(h.opts, func(g *Gateway) { g.expireEvery = 100 * time.Millisecond })
	return h
}

// TestScaleOutGrantTakenBeforeCrashReleases: an instance dies after its
// grant took a hold in the bucket (a revision-checked update that lands
// at once) but before the grant's batch was journaled. The grant is
// decided again by the partition's next owner after the lease TTL, past
// the request's deadline, and finds its own take: it was made by the
// deadline, and the expiry leaves a taken hold alone, so the grant
// carries on and releases the held request, which ends exactly once.
func TestScaleOutGrantTakenBeforeCrashReleases(t *testing.T) {
	h := scaledOutCrashHarness(t)
	a := h.startInstance("a", dieAfter(false))
	waitFor(t, func() bool { return a.held() == 2 })

	heldSeq := h.send(h.heldRequest())
	out := h.outputFor(heldSeq)
	if !strings.HasPrefix(out.Subject, "agentgw.approval.") {
		t.Fatalf("request went to %s (%s); want the approval queue", out.Subject, out.Header.Get(header.Reason))
	}
	var req approval.Request
	must(t, json.Unmarshal(out.Data, &req))
	ansSeq := h.grant(req)
	waitFor(t, a.nc.IsClosed)

	// The next owner decides the grant after the deadline, even as of
	// its recovered decision time.
	h.clock.Advance(h.cfg.Limits.ApprovalTTL + h.cfg.Consumer.AckWait + time.Second)
	b := h.startInstance("b")
	got := h.outputFor(ansSeq)
	time.Sleep(500 * time.Millisecond) // the expiry scans the bucket again
	if rel, exp := h.fates(req.HeldMessageID); rel != 1 || exp != 0 {
		t.Errorf("held request released %d times, expired %d times; want released once", rel, exp)
	}
	if !strings.HasPrefix(got.Subject, "agentgw.cap.tenant_a.payments.send") {
		t.Fatalf("grant that took the hold before the crash: %s %s (%s); want the release on agentgw.cap.tenant_a.payments.send",
			got.Subject, got.Header.Get(header.Route), got.Header.Get(header.Reason))
	}
	h.endScaleOut(t, b, a)
}

// TestScaleOutHoldPutBeforeCrashEndsOnce: an instance dies after its
// request's hold landed in the bucket but before the request's batch was
// journaled. Another instance expires the hold at its deadline; the
// partition's next owner then decides the request again and finds the
// hold its first decision put: the request goes to the approval queue
// (its one output) without being held a second time, its approval
// request rebuilt from the ended hold, so a grant of it finds nothing
// pending and the request ends once, expired.
func TestScaleOutHoldPutBeforeCrashEndsOnce(t *testing.T) {
	h := scaledOutCrashHarness(t)
	a := h.startInstance("a", dieAfter(true))
	waitFor(t, func() bool { return a.held() == 2 })

	heldSeq := h.send(h.heldRequest())
	waitFor(t, a.nc.IsClosed)
	h.clock.Advance(h.cfg.Limits.ApprovalTTL + h.cfg.Consumer.AckWait + time.Second)

	// b's pipeline waits until its expiry scan has expired the hold.
	open := make(chan struct{})
	b := h.startInstance("b", func(in *instance) { in.gw.holds = &gatedHolds{holdStore: in.gw.holds, open: open} })
	exp := h.waitIn(StreamDenied, heldSeq, func(m *jetstream.RawStreamMsg) bool {
		return strings.HasSuffix(m.Header.Get(header.MsgID), ".expired")
	})
	close(open)
	out := h.waitIn(StreamApproval, heldSeq, func(*jetstream.RawStreamMsg) bool { return true })
	var req approval.Request
	must(t, json.Unmarshal(out.Data, &req))
	h.checkApprovalToken(out)
	// Rebuilt from the ended hold: its deadline, which has passed, and
	// no approver-visible fields; not a live request approvers would see.
	if req.Deadline.After(h.clock.Now()) || len(req.Fields) != 0 {
		t.Errorf("approval request of an expired hold: deadline %v (now %v), fields %v; want the hold's passed deadline and no fields", req.Deadline, h.clock.Now(), req.Fields)
	}

	got := h.outputFor(h.grant(req))
	if got.Header.Get(header.Route) != string(store.RouteDeny) {
		t.Errorf("grant of a request whose hold expired: %s (%s); want a denial", got.Subject, got.Header.Get(header.Reason))
	}
	if rel, n := h.fates(req.HeldMessageID); rel != 0 || n != 1 {
		t.Fatalf("held request (expired: %s) released %d times, expired %d times; want expired once", exp.Header.Get(header.Reason), rel, n)
	}
	h.endScaleOut(t, b, a)
}

// TestScaleOutHoldPutBeforeCrashDecidedOtherwise: an instance dies after
// its request's hold landed in the bucket but before the request's batch
// was journaled, and the request is then decided otherwise by the
// partition's next owner: a policy now forbids it, or it expired while
// the partition changed hands. The hold its first decision put is
// removed, so the request ends once, denied: its expiry does not end it
// again, and a grant (whoever knows its digest) finds nothing to release.
func TestScaleOutHoldPutBeforeCrashDecidedOtherwise(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(h *harness)
		want   reason.Code
	}{
		{"policy", func(h *harness) {
			p := filepath.Join(h.dir, "forbid-pay.cedar")
			must(t, os.WriteFile(p, []byte("forbid (principal, action, resource == Target::\"payments.send\");\n"), 0o600))
			h.cfg.Policies = append(h.cfg.Policies, p)
		}, reason.PolicyDenied},
		{"expired", func(h *harness) {
			h.clock.Advance(h.cfg.Limits.MaxTTL + h.cfg.Limits.Skew + h.cfg.Consumer.AckWait + time.Second)
		}, reason.MessageExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := scaledOutCrashHarness(t)
			h.cfg.Limits.ApprovalTTL = time.Hour // the hold outlives the takeover
			a, body, env, heldSeq := h.heldThenCrash()
			tc.change(h)
			b := h.startInstance("b")
			out := h.outputFor(heldSeq)
			if got := reason.Code(out.Header.Get(header.Reason)); got != tc.want {
				t.Fatalf("request decided again: %s %q; want denied %s", out.Subject, got, tc.want)
			}
			req := approval.Request{HeldMessageID: env.MessageID, BodyDigest: hexDigest(envelope.Digest(body)), PolicyVersion: b.gw.Policy().Version()}
			if got := h.outputFor(h.grant(req)); reason.Code(got.Header.Get(header.Reason)) != reason.ApprovalInvalid {
				t.Errorf("grant of the denied request: %s %q; want %s (nothing pending)", got.Subject, got.Header.Get(header.Reason), reason.ApprovalInvalid)
			}
			h.clock.Advance(2 * time.Hour)
			time.Sleep(300 * time.Millisecond) // the expiry scans the bucket again
			if rel, exp := h.fates(env.MessageID); rel != 0 || exp != 0 {
				t.Errorf("denied request released %d times, expired %d times; want neither", rel, exp)
			}
			h.endScaleOut(t, b, a)
		})
	}
}

// TestScaleOutHoldEndedThenDecidedOtherwise: an instance dies after its
// request's hold landed in the bucket, the hold expires during the
// takeover, and the partition's next owner would deny the request (a
// policy now forbids it). Its hold's expiry is already its answer: it
// goes to the approval queue, its approval request rebuilt from the
// hold, and ends once, expired; no second, policy_denied, record.
func TestScaleOutHoldEndedThenDecidedOtherwise(t *testing.T) {
	h := scaledOutCrashHarness(t)
	a, body, env, heldSeq := h.heldThenCrash()
	p := filepath.Join(h.dir, "forbid-pay.cedar")
	must(t, os.WriteFile(p, []byte("forbid (principal, action, resource == Target::\"payments.send\");\n"), 0o600))
	h.cfg.Policies = append(h.cfg.Policies, p)
	h.clock.Advance(h.cfg.Limits.ApprovalTTL + h.cfg.Consumer.AckWait + time.Second)

	// b's expiry scan runs every 100 ms from its start; it takes a's
	// partitions only once their leases (2 s) have lapsed.
	b := h.startInstance("b")
	h.waitIn(StreamDenied, heldSeq, func(m *jetstream.RawStreamMsg) bool {
		return strings.HasSuffix(m.Header.Get(header.MsgID), ".expired")
	})
	out := h.waitIn(StreamApproval, heldSeq, func(*jetstream.RawStreamMsg) bool { return true })
	var req approval.Request
	must(t, json.Unmarshal(out.Data, &req))
	h.checkApprovalToken(out)
	if req.HeldMessageID != env.MessageID || req.BodyDigest != hexDigest(envelope.Digest(body)) {
		t.Errorf("rebuilt approval request = %+v; want the held request's", req)
	}
	var ends []string
	for _, m := range h.all(StreamDenied) {
		if m.Header.Get(header.MessageID) == env.MessageID {
			ends = append(ends, m.Header.Get(header.Reason))
		}
	}
	if len(ends) != 1 || ends[0] != string(reason.ApprovalExpired) {
		t.Errorf("denied records of the request = %v; want its expiry only", ends)
	}
	h.endScaleOut(t, b, a)
}

// TestScaleOutTakeBeforeCrashAnswerRefused: an instance dies after its
// grant took a hold but before the grant's batch was journaled, and the
// grant is then refused by the partition's next owner (its approver was
// revoked meanwhile). The take is given back: the held request is still
// pending, and ends once, at its expiry.
func TestScaleOutTakeBeforeCrashAnswerRefused(t *testing.T) { takeBeforeCrashAnswerRefused(t, false) }

// TestScaleOutQuietJournalKeepsTake: the same in a deployment whose
// journal had been quiet: the records appended before the held request
// have aged out (removed here: only the claims' fences), so the stream's
// oldest record is the held request's own, less than the clocks' margin
// before the grant. The next owner cannot tell the grant's records from
// ones the age limit removed, so it keeps the take (fail closed): the
// held request is neither released nor expired (docs/scale-out.md).
func TestScaleOutQuietJournalKeepsTake(t *testing.T) { takeBeforeCrashAnswerRefused(t, true) }

func takeBeforeCrashAnswerRefused(t *testing.T, quiet bool) {
	ctx := context.Background()
	h := scaledOutCrashHarness(t)
	a := h.startInstance("a", dieAfter(false))
	waitFor(t, func() bool { return a.held() == 2 })
	js, err := h.js.Stream(ctx, journal.Stream)
	must(t, err)
	fences := js.CachedInfo().State.LastSeq
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
	if quiet {
		for seq := uint64(1); seq <= fences; seq++ {
			must(t, js.DeleteMsg(ctx, seq))
		}
	}

	b := h.startInstance("b")
	if got := h.outputFor(ansSeq); reason.Code(got.Header.Get(header.Reason)) != reason.Revoked {
		t.Fatalf("grant decided again: %s %q; want denied %s", got.Subject, got.Header.Get(header.Reason), reason.Revoked)
	}
	h.clock.Advance(h.cfg.Limits.ApprovalTTL + time.Second)
	want := 1
	if quiet {
		want = 0
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && want > 0 {
		if _, exp := h.fates(req.HeldMessageID); exp > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if quiet {
		time.Sleep(time.Second) // expiry scans every 100 ms: one would have ended it
	}
	if rel, exp := h.fates(req.HeldMessageID); rel != 0 || exp != want {
		t.Fatalf("held request released %d times, expired %d times; want released never, expired %d times", rel, exp, want)
	}
	h.endScaleOut(t, b, a)
}

// TestScaleOutExpiryPastABadValue: a value in the holds bucket that does
// not decode is reported and skipped; the held requests beside it still
// expire.
func TestScaleOutExpiryPastABadValue(t *testing.T) {
	h := scaledOutCrashHarness(t)
	a := h.startInstance("a")
	waitFor(t, func() bool { return a.held() == 2 })
	kv, err := h.js.KeyValue(context.Background(), HoldsBucket)
	must(t, err)
	_, err = kv.Put(context.Background(), holdKey("tenant_a/bad"), []byte("not json"))
	must(t, err)
	body := h.heldRequest()
	env, err := envelope.Parse(body, envelope.Limits{})
	must(t, err)
	if out := h.outputFor(h.send(body)); !strings.HasPrefix(out.Subject, "agentgw.approval.") {
		t.Fatalf("request went to %s (%s); want the approval queue", out.Subject, out.Header.Get(header.Reason))
	}
	h.clock.Advance(h.cfg.Limits.ApprovalTTL + time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, exp := h.fates(env.MessageID); exp > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, exp := h.fates(env.MessageID); exp != 1 {
		t.Fatalf("held request expired %d times beside a bad value; want once", exp)
	}
	a.stop(t)
}

// TestApprovalOldestAgeWithTargetTTL: the approval-queue gauge's age of
// the oldest held request is the time since it was requested, in both
// modes, also for a target whose own approval_ttl differs from
// limits.approval_ttl. (Scaled out it was derived from the deadline and
// limits.approval_ttl, so a 1 h target held for 10 min read as 0.)
func TestApprovalOldestAgeWithTargetTTL(t *testing.T) {
	for _, scaled := range []bool{false, true} {
		t.Run(map[bool]string{false: "single", true: "scaled"}[scaled], func(t *testing.T) {
			h := newHarness(t)
			h.opts = append(h.opts, func(g *Gateway) { g.expireEvery = 50 * time.Millisecond })
			cat := filepath.Join(h.dir, "catalog.yaml")
			raw, err := os.ReadFile(cat)
			must(t, err)
			withTTL := strings.Replace(string(raw), "    risk: critical\n", "    risk: critical\n    approval_ttl: 1h\n", 1)
			if withTTL == string(raw) {
				t.Fatal("test catalog has no critical target to give an approval_ttl")
			}
			must(t, os.WriteFile(cat, []byte(withTTL), 0o600))
			var gw *Gateway
			if scaled {
				in := h.startInstance("a")
				waitFor(t, func() bool { return in.held() == 1 })
				gw = in.gw
			} else {
				h.start()
				<-h.gw.Ready()
				gw = h.gw
			}
			body := h.body(func(bb *envelope.Builder) {
				bb.Capability, bb.Target = envelope.ToolCall, "payments.send"
				bb.Payload = envelope.Payload{Plain: json.RawMessage(`{"amount_cents":990000,"iban":"DE00123"}`)}
			})
			if out := h.outputFor(h.send(body)); !strings.HasPrefix(out.Subject, "agentgw.approval.") {
				t.Fatalf("request went to %s; want the approval queue", out.Subject)
			}
			h.clock.Advance(10 * time.Minute)
			var n int
			var age time.Duration
			deadline := time.Now().Add(15 * time.Second)
			for {
				if n, age = gw.pendingApprovals(); n == 1 && age >= 10*time.Minute {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("pending approvals = %d, oldest %s; want 1, 10m (requested 10 minutes ago on the gateway's clock)", n, age)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if age > 10*time.Minute+time.Second {
				t.Fatalf("oldest held request is %s old; want 10m", age)
			}
		})
	}
}

// TestReadinessFollowsPartitions: /readyz's answer (Readiness) is "not
// serving" before Run has set up, "no partition held" for a scaled-out
// instance that holds none (two instances, one partition), and ready once
// it takes the partition over from an instance that stopped.
func TestReadinessFollowsPartitions(t *testing.T) {
	h := newHarness(t)
	h.cfg.Consumer.Partitions = 1
	cfg := h.cfg
	cfg.DataDir = filepath.Join(h.dir, "data-unstarted")
	unstarted, err := New(cfg, WithClock(h.clock.Now), WithConn(h.nc))
	must(t, err)
	if err := unstarted.Readiness(); !errors.Is(err, errNotServing) {
		t.Errorf("Readiness before Run = %v; want %v", err, errNotServing)
	}
	must(t, unstarted.Close())

	a := h.startInstance("a")
	waitFor(t, func() bool { return a.held() == 1 })
	b := h.startInstance("b")
	if err := a.gw.Readiness(); err != nil {
		t.Errorf("holder's Readiness = %v; want ready", err)
	}
	if err := b.gw.Readiness(); err == nil || !strings.Contains(err.Error(), "no partition held") {
		t.Errorf("Readiness of the instance holding nothing = %v; want no partition held", err)
	}
	a.stop(t)
	waitFor(t, func() bool { return b.held() == 1 })
	waitFor(t, func() bool { return b.gw.Readiness() == nil })
	// Ready means deciding: the new holder decides a message.
	if out := h.outputFor(h.send(h.body(nil))); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("after the takeover: %s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
	h.endScaleOut(t, b)
}
