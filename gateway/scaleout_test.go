package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/agentgw/agentgw/gateway/audit"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/subjects/reason"
)

// instance is one scaled-out gateway of a test, on its own connection.
type instance struct {
	gw     *Gateway
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

func (h *harness) startInstance(name string) *instance {
	h.t.Helper()
	cfg := h.cfg
	cfg.DataDir = filepath.Join(h.dir, "data-"+name)
	cfg.ScaleOut = &ScaleOutConfig{Instance: name, LeaseTTL: 2 * time.Second, LeaseRenew: 500 * time.Millisecond, LeaseMargin: 400 * time.Millisecond}
	nc := natstest.Connect(h.t, h.srv)
	logger := zerolog.New(h.logs).With().Str("instance", name).Timestamp().Logger()
	gw, err := New(cfg, append([]Option{WithClock(h.clock.Now), WithLogger(logger), WithConn(nc)}, h.opts...)...)
	must(h.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{gw: gw, nc: nc, cancel: cancel, done: make(chan error, 1)}
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
	type sent struct {
		body []byte
		hdr  nats.Header
		subj string
		seq  uint64
	}
	var msgs []sent
	for range 16 {
		ag := newActor(t)
		ag.token = h.credential(h.issuer, ag, "tenant_a", []string{"kb:read"}, time.Hour, "")
		body := h.body(nil)
		s := sent{body: body, hdr: h.signed(ag, ag.token, body), subj: h.ingress(ag, "tenant_a")}
		s.seq = h.publish(s.subj, s.body, s.hdr)
		msgs = append(msgs, s)
	}
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

// TestScaleOutGrantTakenBeforeCrashReleases: an instance dies after its
// grant took a hold in the bucket (a revision-checked update that lands
// at once) but before the grant's batch was journaled or published. The
// grant comes back to the partition's next owner after the lease TTL,
// past the request's deadline, and finds its own take: the take was made
// by the deadline, and the expiry leaves a taken hold alone, so the
// grant carries on and releases the held request. The state the crash
// leaves is written by hand here: the grant is published while no
// instance runs and its take put in the bucket under its sequence.
func TestScaleOutGrantTakenBeforeCrashReleases(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true
	h.cfg.Consumer.Partitions = 2
	h.cfg.Limits.ApprovalTTL = 3 * time.Second // as the fault tests: shorter than a lease takeover
	h.opts = append(h.opts, func(g *Gateway) { g.expireEvery = 100 * time.Millisecond })
	a := h.startInstance("a")
	waitFor(t, func() bool { return a.held() == 2 })

	body := h.body(func(bb *envelope.Builder) {
		bb.Capability, bb.Target = envelope.ToolCall, "payments.send"
		bb.Payload = envelope.Payload{Plain: json.RawMessage(`{"amount_cents":990000,"iban":"DE00123"}`)}
	})
	heldSeq := h.send(body)
	out := h.outputFor(heldSeq)
	if !strings.HasPrefix(out.Subject, "agentgw.approval.") {
		t.Fatalf("request went to %s (%s); want the approval queue", out.Subject, out.Header.Get(header.Reason))
	}
	var req approval.Request
	must(t, json.Unmarshal(out.Data, &req))
	a.stop(t)

	// The grant, delivered to the instance that dies with it.
	ap := newActor(t)
	ap.token = h.credential(h.issuer, ap, "tenant_a", []string{"approve:payments.*"}, time.Hour, "")
	raw, _ := json.Marshal(approval.Answer{Decision: approval.Grant, BodyDigest: req.BodyDigest, PolicyVersion: req.PolicyVersion})
	ans := h.body(func(bb *envelope.Builder) {
		bb.Capability, bb.Target = envelope.Approve, req.HeldMessageID
		bb.Payload = envelope.Payload{Plain: raw}
	})
	ansSeq := h.publish(h.ingress(ap, "tenant_a"), ans, h.signed(ap, ap.token, ans))
	// Its take, made by the deadline, is all that landed.
	ctx := context.Background()
	kv, err := h.js.KeyValue(ctx, HoldsBucket)
	must(t, err)
	key := holdKey(holdID("tenant_a", req.HeldMessageID))
	e, err := kv.Get(ctx, key)
	must(t, err)
	var hv kvHold
	must(t, json.Unmarshal(e.Value(), &hv))
	if hv.State != kvHeld {
		t.Fatalf("hold state %q; want %q", hv.State, kvHeld)
	}
	hv.State, hv.TakenBy = kvTaken, ansSeq
	v, _ := json.Marshal(hv)
	_, err = kv.Update(ctx, key, v, e.Revision())
	must(t, err)

	// The next owner takes over after the deadline.
	h.clock.Advance(h.cfg.Limits.ApprovalTTL + time.Second)
	b := h.startInstance("b")
	waitFor(t, func() bool { return b.held() == 2 })

	got := h.outputFor(ansSeq)
	if !strings.HasPrefix(got.Subject, "agentgw.cap.tenant_a.payments.send") {
		t.Fatalf("grant that took the hold before the crash: %s %s (%s); want the release on agentgw.cap.tenant_a.payments.send",
			got.Subject, got.Header.Get(header.Route), got.Header.Get(header.Reason))
	}
	time.Sleep(500 * time.Millisecond) // the expiry scans the bucket again
	for _, m := range h.all(StreamDenied) {
		if m.Header.Get(header.IngressSeq) == fmt.Sprint(heldSeq) {
			t.Fatalf("released request also denied %s", m.Header.Get(header.Reason))
		}
	}
	h.endScaleOut(t, b)
}
