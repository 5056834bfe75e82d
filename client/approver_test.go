package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects/reason"
)

func (w *world) approvalStream() {
	w.t.Helper()
	w.stream(jetstream.StreamConfig{Name: StreamApproval, Subjects: []string{"agentgw.approval.>"}, Storage: jetstream.FileStorage})
}

// heldRequest is what the gateway publishes when policy asks for approval.
func heldRequest(requester *actor, held string) approval.Request {
	return approval.Request{
		HeldMessageID: held,
		TraceID:       "0af7651916cd43dd8448eb211c80319c",
		Tenant:        testTenant,
		Agent:         requester.pub,
		Capability:    string(envelope.ToolCall),
		Target:        testTarget,
		Risk:          "high",
		PolicyIDs:     []string{"large-refunds-need-approval"},
		PolicyVersion: "sha256-7d1f",
		BodyDigest:    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		PayloadDigest: "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
		Fields:        map[string]any{"amount_cents": 250000},
		RequestedAt:   testClock,
		Deadline:      testClock.Add(10 * time.Minute),
	}
}

func (w *world) publishRequest(req approval.Request) {
	w.t.Helper()
	w.publish(w.requestMsg(req, nil, nil))
}

// requestClaims are the claims the gateway signs into the token of req.
func requestClaims(req approval.Request, data []byte) decision.Claims {
	exp := req.Deadline
	if !exp.After(req.RequestedAt) { // a request made already expired
		exp = req.RequestedAt.Add(time.Second)
	}
	return decision.Claims{
		Subject: req.Agent, Audience: req.Target, IssuedAt: req.RequestedAt, Expires: exp,
		Tenant: req.Tenant, Scope: "refund:draft", TraceID: req.TraceID, MessageID: req.HeldMessageID,
		BodyDigest: strings.TrimPrefix(req.BodyDigest, "sha256:"), PayloadDigest: decision.Digest(data),
		PolicyIDs: req.PolicyIDs, PolicyVersion: req.PolicyVersion, Route: decision.RouteApproval,
	}
}

// requestMsg is req as the gateway publishes it, its token signed by the
// world's gateway key; edit, if set, changes the claims before signing,
// and after, if set, the bytes after signing.
func (w *world) requestMsg(req approval.Request, edit func(*decision.Claims), after func([]byte) []byte) *nats.Msg {
	w.t.Helper()
	m := nats.NewMsg("agentgw.approval." + req.Tenant + "." + req.Target)
	m.Data, _ = json.Marshal(req)
	c := requestClaims(req, m.Data)
	if edit != nil {
		edit(&c)
	}
	tok, err := decision.Sign(w.gwSign, c)
	if err != nil {
		w.t.Fatalf("sign the request's token: %v", err)
	}
	m.Header.Set(decision.Header, tok.Reveal())
	m.Header.Set(header.DecidedAt, c.IssuedAt.UTC().Format(time.RFC3339Nano)) // as the gateway sets it
	if after != nil {
		m.Data = after(m.Data)
	}
	return m
}

func (w *world) approver(a *actor) *Approver {
	w.t.Helper()
	ap, err := NewApprover(w.nc, w.js, w.approverConfig(a), WithClock(func() time.Time { return testClock }))
	if err != nil {
		w.t.Fatalf("NewApprover = %v", err)
	}
	return ap
}

// approvalDurable creates the tenant's shared approval queue, as the
// gateway's set-up pre-creates <tenant>-approvals, and returns its name.
func (w *world) approvalDurable() string {
	w.t.Helper()
	const durable = testTenant + "-approvals"
	if _, err := w.js.CreateOrUpdateConsumer(ctxT(w.t), StreamApproval, jetstream.ConsumerConfig{
		Durable: durable, FilterSubject: "agentgw.approval." + testTenant + ".>",
		AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
	}); err != nil {
		w.t.Fatal(err)
	}
	return durable
}

// approverConfig is a's approver config, trusting the world's gateway.
func (w *world) approverConfig(a *actor) ApproverConfig {
	return ApproverConfig{AgentConfig: w.agentConfig(a), TrustedGateways: []string{w.gwSign.PublicKey()}}
}

// answerIn reads the approve envelope stored at seq and returns its body
// (checked like any ingress message) and its Answer.
func (w *world) answerIn(a *actor, seq uint64) (*envelope.Body, approval.Answer) {
	w.t.Helper()
	s, err := w.js.Stream(context.Background(), "AGENTGW_IN")
	if err != nil {
		w.t.Fatal(err)
	}
	m, err := s.GetMsg(context.Background(), seq)
	if err != nil {
		w.t.Fatal(err)
	}
	body := w.checkIngress(m, a)
	var ans approval.Answer
	dec := json.NewDecoder(bytes.NewReader(body.Payload.Plain))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ans); err != nil {
		w.t.Fatalf("answer payload: %v", err)
	}
	return body, ans
}

func TestApproverWatchAndGrant(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	w.approvalStream()
	requester := w.newActor(testTenant, "refund:draft")
	approverID := w.newActor(testTenant, "approve:refunds.*")
	ap := w.approver(approverID)

	const held = "held-message-id-0001"
	expired := heldRequest(requester, "held-message-id-0000")
	expired.Deadline = testClock.Add(-time.Second)
	own := heldRequest(approverID, "held-message-id-0002") // the approver's own request
	other := heldRequest(requester, "held-message-id-0003")
	other.Tenant = "tenant_b" // another tenant's queue
	w.publishRequest(expired)
	w.publishRequest(own)
	w.publishRequest(other)
	junk := nats.NewMsg("agentgw.approval." + testTenant + "." + testTarget)
	junk.Data = []byte(`{"held_message_id":"x","tenant":"tenant_b","target":"refunds.draft_refund"}`)
	w.publish(junk) // does not match its subject: terminated, never shown
	w.publishRequest(heldRequest(requester, held))

	var seen []approval.Request
	var rcpt *Receipt
	ctx, cancel := context.WithCancel(ctxT(t))
	err := ap.Watch(ctx, func(ctx context.Context, req approval.Request) error {
		seen = append(seen, req)
		var err error
		rcpt, err = ap.Grant(ctx, req, "verified with the customer")
		cancel()
		return err
	})
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}
	if len(seen) != 1 || seen[0].HeldMessageID != held {
		t.Fatalf("Watch showed %d requests (%v); want only %s", len(seen), seen, held)
	}
	if rcpt == nil {
		t.Fatal("Grant sent nothing")
	}
	body, ans := w.answerIn(approverID, rcpt.Seq)
	req := seen[0]
	if body.Capability != envelope.Approve || body.Target != held {
		t.Errorf("envelope capability %s target %s; want approve %s", body.Capability, body.Target, held)
	}
	want := approval.Answer{Decision: approval.Grant, Reason: "verified with the customer", BodyDigest: req.BodyDigest, PolicyVersion: req.PolicyVersion}
	if ans != want {
		t.Errorf("answer = %+v; want %+v", ans, want)
	}
	if body.TraceID != req.TraceID || body.IdempotencyKey != "approve-"+held {
		t.Errorf("trace id %s, idempotency key %s; want the request's trace and approve-%s", body.TraceID, body.IdempotencyKey, held)
	}
}

func TestApproverAnswerRules(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	requester := w.newActor(testTenant)
	approverID := w.newActor(testTenant, "approve:refunds.*")
	ap := w.approver(approverID)

	rcpt, err := ap.Deny(ctxT(t), heldRequest(requester, "held-message-id-0004"), "amount too large")
	if err != nil {
		t.Fatalf("Deny = %v", err)
	}
	_, ans := w.answerIn(approverID, rcpt.Seq)
	if ans.Decision != approval.Deny || ans.Reason != "amount too large" {
		t.Errorf("answer = %+v; want a deny with its reason", ans)
	}

	cases := []struct {
		name string
		edit func(*approval.Request)
		want error
	}{
		{"self_approval", func(r *approval.Request) { r.Agent = approverID.pub }, ErrSelfApproval},
		{"other_tenant", func(r *approval.Request) { r.Tenant = "tenant_b" }, ErrRequest},
		{"no_digest", func(r *approval.Request) { r.BodyDigest = "" }, ErrRequest},
		{"no_policy_version", func(r *approval.Request) { r.PolicyVersion = "" }, ErrRequest},
		{"no_held_id", func(r *approval.Request) { r.HeldMessageID = "" }, ErrRequest},
		{"bad_held_id", func(r *approval.Request) { r.HeldMessageID = "short" }, ErrRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := heldRequest(requester, "held-message-id-0005")
			tc.edit(&req)
			if _, err := ap.Grant(ctxT(t), req, ""); !errors.Is(err, tc.want) {
				t.Fatalf("Grant(%s) = %v; want %v", tc.name, err, tc.want)
			}
		})
	}
	if _, err := ap.Answer(ctxT(t), heldRequest(requester, "held-message-id-0006"), "maybe", ""); !errors.Is(err, ErrRequest) {
		t.Errorf("Answer(maybe) = %v; want %v", err, ErrRequest)
	}
	// An overlong held id still yields a valid idempotency key.
	if k := answerKey(string(make([]byte, 128))); len(k) > 128 {
		t.Errorf("answerKey(128 chars) is %d chars; want at most 128", len(k))
	}
}

// TestDecodeRequestReadsExactNames: an approval request is read as the
// TypeScript approver reads it: member names exactly (a case variant is
// an unknown member and ignored, not a second spelling whose value wins),
// no duplicate names, valid UTF-8.
func TestDecodeRequestReadsExactNames(t *testing.T) {
	const subj = "agentgw.approval.tenant_a.payments.send"
	base := `"tenant":"tenant_a","target":"payments.send","body_digest":"sha256:aa","policy_version":"v"`
	req, err := DecodeRequest(subj, []byte(`{`+base+`,"agent":"UONE","Agent":"UTWO","BODY_DIGEST":"sha256:bb"}`), "tenant_a")
	if err != nil {
		t.Fatalf("DecodeRequest = %v", err)
	}
	if req.Agent != "UONE" || req.BodyDigest != "sha256:aa" {
		t.Errorf("DecodeRequest read agent %q, body_digest %q; want the exact names' UONE, sha256:aa", req.Agent, req.BodyDigest)
	}
	for name, data := range map[string]string{
		"duplicate":                     `{` + base + `,"agent":"UONE","agent":"UTWO"}`,
		"bad UTF-8":                     `{` + base + `,"agent":"U` + "\xff" + `"}`,
		"only a case variant of tenant": `{"Tenant":"tenant_a","target":"payments.send"}`,
	} {
		if _, err := DecodeRequest(subj, []byte(data), "tenant_a"); err == nil {
			t.Errorf("%s: DecodeRequest accepted it", name)
		}
	}
}

// TestDecodeRequestBoundsBeforeDecoding: a request nested past
// maxRequestDepth is refused by the bounds scan before a decode builds
// its levels: the request is not authenticated yet.
func TestDecodeRequestBoundsBeforeDecoding(t *testing.T) {
	const subj = "agentgw.approval.tenant_a.payments.send"
	const levels = 9000 // under jsonv2's own limit, which would refuse it too
	data := []byte(`{"tenant":"tenant_a","target":"payments.send","fields":{"a":` +
		strings.Repeat("[", levels) + strings.Repeat("]", levels) + `}}`)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var err error
	for range 10 {
		_, err = DecodeRequest(subj, data, "tenant_a")
	}
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatalf("DecodeRequest accepted %d levels", levels)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 10*uint64(len(data)) {
		t.Errorf("10 refusals of %d bytes allocated %d bytes; want at most the input's size each", len(data), got)
	}
}

// TestApproverWatchSharedDurableHidesNothing: two approvers bind one
// durable, as they bind <tenant>-approvals. The first is also the
// requester of one request and its clock runs ahead, so it judges
// another expired a second ago: it shows neither, and must not consume
// them either, so the second approver (clock behind) is shown both. A
// request past its deadline by more than the skew margin is consumed.
func TestApproverWatchSharedDurableHidesNothing(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	w.approvalStream()
	durable := w.approvalDurable()
	both := w.newActor(testTenant, "refund:draft", "approve:refunds.*") // requester and approver
	other := w.newActor(testTenant, "approve:refunds.*")
	requester := w.newActor(testTenant, "refund:draft")
	bound := func(a *actor, now time.Time) *Approver {
		cfg := w.approverConfig(a)
		cfg.Durable, cfg.Bind = durable, true
		ap, err := NewApprover(w.nc, w.js, cfg,
			WithClock(func() time.Time { return now }))
		if err != nil {
			t.Fatalf("NewApprover = %v", err)
		}
		return ap
	}
	longExpired := heldRequest(requester, "held-message-id-0000")
	longExpired.Deadline = testClock.Add(-10 * time.Minute)
	justExpired := heldRequest(requester, "held-message-id-0001")
	justExpired.Deadline = testClock.Add(-time.Second)
	own := heldRequest(both, "held-message-id-0002")
	for _, r := range []approval.Request{longExpired, justExpired, own} {
		// Made before either approver's clock: its token is not from
		// the future for the one running behind.
		r.RequestedAt = testClock.Add(-30 * time.Minute)
		w.publishRequest(r)
	}

	// The first approver, at testClock, is shown none of them.
	ctx, cancel := context.WithTimeout(ctxT(t), time.Second)
	err := bound(both, testClock).Watch(ctx, func(_ context.Context, req approval.Request) error {
		t.Errorf("first approver shown %s", req.HeldMessageID)
		return nil
	})
	cancel()
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}

	// The second, its clock 20 minutes behind, is shown the two live
	// ones; the one expired long ago was consumed.
	seen := map[string]bool{}
	ctx, cancel = context.WithTimeout(ctxT(t), 10*time.Second)
	defer cancel()
	err = bound(other, testClock.Add(-20*time.Minute)).Watch(ctx, func(_ context.Context, req approval.Request) error {
		seen[req.HeldMessageID] = true
		if len(seen) == 2 {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}
	if !seen[justExpired.HeldMessageID] || !seen[own.HeldMessageID] || seen[longExpired.HeldMessageID] {
		t.Errorf("second approver shown %v; want %s and %s only", seen, justExpired.HeldMessageID, own.HeldMessageID)
	}
}

// TestApproverShowsOnlyGatewaySignedRequests: someone who can publish on
// the approval queue but does not hold the gateway's key could show an
// approver harmless fields beside a real held request's id, digests and
// policy version, and a grant would release the real request. Watch shows
// a request only with a token of a trusted gateway, route approval, bound
// to its exact bytes and to the held envelope it names; it terminates the
// others and reports them to OnReject.
func TestApproverShowsOnlyGatewaySignedRequests(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	w.approvalStream()
	requester := w.newActor(testTenant, "refund:draft")
	approverID := w.newActor(testTenant, "approve:refunds.*")
	other, err := identity.NewSigner(mustKey(t, identity.NewGatewayKey))
	if err != nil {
		t.Fatal(err)
	}
	forged := []struct {
		name  string
		edit  func(*decision.Claims)
		after func([]byte) []byte
		want  reason.Code
	}{
		{"fields changed after signing", nil, func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"amount_cents":250000`), []byte(`"amount_cents":25`), 1)
		}, reason.DecisionBinding},
		{"route notice", func(c *decision.Claims) { c.Route = decision.RouteNotice }, nil, reason.DecisionInvalid},
		{"route allow", func(c *decision.Claims) { c.Route = decision.RouteAllow }, nil, reason.DecisionInvalid},
		{"another audience", func(c *decision.Claims) { c.Audience = "payments.send" }, nil, reason.DecisionAudience},
		{"another held message", func(c *decision.Claims) { c.MessageID = "held-message-id-9999" }, nil, reason.DecisionBinding},
		{"another body", func(c *decision.Claims) { c.BodyDigest = strings.Repeat("0", 64) }, nil, reason.DecisionBinding},
		{"another agent", func(c *decision.Claims) { c.Subject = approverID.pub }, nil, reason.DecisionBinding},
		{"expired", func(c *decision.Claims) {
			c.IssuedAt, c.Expires = testClock.Add(-time.Hour), testClock.Add(-time.Minute)
		}, nil, reason.DecisionExpired},
	}
	var want []reason.Code
	for i, f := range forged {
		req := heldRequest(requester, fmt.Sprintf("held-message-id-%04d", i))
		w.publish(w.requestMsg(req, f.edit, f.after))
		want = append(want, f.want)
	}
	unsigned := nats.NewMsg("agentgw.approval." + testTenant + "." + testTarget)
	unsigned.Data, _ = json.Marshal(heldRequest(requester, "held-message-id-0100"))
	w.publish(unsigned)
	want = append(want, reason.DecisionMissing)
	untrusted := heldRequest(requester, "held-message-id-0101")
	m := w.requestMsg(untrusted, nil, nil)
	tok, err := decision.Sign(other, requestClaims(untrusted, m.Data))
	if err != nil {
		t.Fatal(err)
	}
	m.Header.Set(decision.Header, tok.Reveal())
	w.publish(m)
	want = append(want, reason.DecisionInvalid)
	const genuine = "held-message-id-0200"
	w.publishRequest(heldRequest(requester, genuine))

	var rejected []reason.Code
	cfg := w.approverConfig(approverID)
	cfg.OnReject = func(subject string, err error) { rejected = append(rejected, reason.Of(err)) }
	ap, err := NewApprover(w.nc, w.js, cfg, WithClock(func() time.Time { return testClock }))
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	ctx, cancel := context.WithCancel(ctxT(t))
	err = ap.Watch(ctx, func(_ context.Context, req approval.Request) error {
		seen = append(seen, req.HeldMessageID)
		cancel()
		return nil
	})
	if err != nil {
		t.Fatalf("Watch = %v", err)
	}
	if !slices.Equal(seen, []string{genuine}) {
		t.Errorf("Watch showed %v; want only %s", seen, genuine)
	}
	if !slices.Equal(rejected, want) {
		t.Errorf("OnReject reasons %v; want %v", rejected, want)
	}
}

// TestVerifyRequestOnVectors: the package function an approver that
// reads the queue itself uses, on the vectors' approval request and its
// token (testdata/wire/approval.json, decision.json batch "approval").
func TestVerifyRequestOnVectors(t *testing.T) {
	f := wvLoad[wvApprovalFile](t, "approval.json")
	dec := wvLoad[wvDecisionFile](t, "decision.json")
	tok := wvHeaders(f.Request).Get(decision.Header)
	if tok != wvTokens(t)["payment-approval-request"] {
		t.Fatal("the request's Agentgw-Decision is not decision.json's payment-approval-request")
	}
	data := []byte(f.Request.Body)
	req, err := DecodeRequest(f.Request.Subject, data, "tenant_a")
	if err != nil {
		t.Fatal(err)
	}
	opt := decision.VerifyOptions{TrustedGateways: []string{dec.Gateway}, Now: time.Unix(dec.VerifyAtUnix, 0),
		Skew: time.Duration(dec.SkewSeconds) * time.Second}
	if err := VerifyRequest(tok, data, req, opt); err != nil {
		t.Fatalf("VerifyRequest(vector) = %v", err)
	}
	// The token expires at the deadline: past it and the skew, refused.
	late := opt
	late.Now = req.Deadline.Add(opt.Skew + time.Second)
	if err := VerifyRequest(tok, data, req, late); reason.Of(err) != reason.DecisionExpired {
		t.Errorf("VerifyRequest past the deadline = %v; want %s", err, reason.DecisionExpired)
	}
	shown := req
	shown.TraceID = "0af7651916cd43dd8448eb211c80319c"
	if err := VerifyRequest(tok, data, shown, opt); reason.Of(err) != reason.DecisionBinding {
		t.Errorf("VerifyRequest(request of another trace) = %v; want %s", err, reason.DecisionBinding)
	}
	if err := VerifyRequest(tok, append(data, ' '), req, opt); reason.Of(err) != reason.DecisionBinding {
		t.Errorf("VerifyRequest(other bytes) = %v; want %s", err, reason.DecisionBinding)
	}
	if err := VerifyRequest("", data, req, opt); reason.Of(err) != reason.DecisionMissing {
		t.Errorf("VerifyRequest(no token) = %v; want %s", err, reason.DecisionMissing)
	}
	for _, b := range dec.Batches {
		for _, d := range b.Tokens {
			if d.Token == tok {
				continue
			}
			if err := VerifyRequest(d.Token, data, req, opt); err == nil {
				t.Errorf("VerifyRequest took %s, another message's token", d.Name)
			}
		}
	}
}

// TestApproverConfigNeedsTrustedGateways: without a trusted gateway key
// no request could be shown; the config says so at once.
func TestApproverConfigNeedsTrustedGateways(t *testing.T) {
	w := newWorld(t)
	a := w.newActor(testTenant, "approve:refunds.*")
	for name, edit := range map[string]func(*ApproverConfig){
		"none":          func(c *ApproverConfig) { c.TrustedGateways = nil },
		"agent key":     func(c *ApproverConfig) { c.TrustedGateways = []string{a.pub} },
		"not a key":     func(c *ApproverConfig) { c.TrustedGateways = []string{"gateway"} },
		"negative skew": func(c *ApproverConfig) { c.Skew = -time.Second },
	} {
		cfg := w.approverConfig(a)
		edit(&cfg)
		if _, err := NewApprover(w.nc, w.js, cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: NewApprover = %v; want %v", name, err, ErrConfig)
		}
	}
}

// TestApproverBehindHandsBackOnDurable: on a shared durable, an approver
// whose clock runs two minutes behind the gateway's finds a request
// issued "in the future". Terminating it would hide a live request from
// every approver; it is handed back and reported, and an approver whose
// clock is right is shown it. A forgery is still terminated.
func TestApproverBehindHandsBackOnDurable(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	w.approvalStream()
	durable := w.approvalDurable()
	requester := w.newActor(testTenant, "refund:draft")
	behind, right := w.newActor(testTenant, "approve:refunds.*"), w.newActor(testTenant, "approve:refunds.*")
	const live = "held-message-id-0300"
	w.publishRequest(heldRequest(requester, live))
	forged := heldRequest(requester, "held-message-id-0301")
	early := func(c *decision.Claims) { c.IssuedAt = testClock.Add(-10 * time.Minute) } // valid by either clock
	w.publish(w.requestMsg(forged, early, func(b []byte) []byte { return append(b, ' ') }))

	watch := func(a *actor, now time.Time, wait time.Duration) ([]string, []reason.Code) {
		return w.watchDurable(durable, a, now, wait)
	}
	seen, rejected := watch(behind, testClock.Add(-2*time.Minute), time.Second)
	if len(seen) != 0 || !slices.Equal(rejected, []reason.Code{reason.DecisionInvalid, reason.DecisionBinding}) {
		t.Errorf("approver behind: shown %v, rejected %v; want none shown, the live one handed back and the forgery refused", seen, rejected)
	}
	seen, _ = watch(right, testClock, 10*time.Second)
	if !slices.Equal(seen, []string{live}) {
		t.Errorf("approver on time shown %v; want %s, which the one behind must not have consumed", seen, live)
	}
}

// watchDurable watches durable as a, its clock at now, until a first
// request is shown or wait passes: the held message ids shown and the
// reasons of what it handed back or terminated.
func (w *world) watchDurable(durable string, a *actor, now time.Time, wait time.Duration) (seen []string, rejected []reason.Code) {
	w.t.Helper()
	cfg := w.approverConfig(a)
	cfg.Durable, cfg.Bind = durable, true
	cfg.OnReject = func(_ string, err error) { rejected = append(rejected, reason.Of(err)) }
	ap, err := NewApprover(w.nc, w.js, cfg, WithClock(func() time.Time { return now }))
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctxT(w.t), wait)
	defer cancel()
	if err := ap.Watch(ctx, func(_ context.Context, req approval.Request) error {
		seen = append(seen, req.HeldMessageID)
		cancel()
		return nil
	}); err != nil {
		w.t.Fatalf("Watch = %v", err)
	}
	return seen, rejected
}

// TestApproverTerminatesForgedUnshownRequests: anyone who can publish on
// agentgw.approval.<tenant>.> can write requests that look like the
// approver's own or expired ones, which Watch does not show. Handed back
// unchecked, they would hold every MaxAckPending slot of the shared
// durable and the gateway's real request would never be delivered. Watch
// checks every token first: the forgeries are terminated and reported,
// and the real request is shown.
func TestApproverTerminatesForgedUnshownRequests(t *testing.T) {
	const n = 100 // the durable's MaxAckPending
	for _, tc := range []struct {
		name   string
		forged func(approver, requester *actor, i int) approval.Request
	}{
		{"own", func(ap, _ *actor, i int) approval.Request { return heldRequest(ap, fmt.Sprintf("forged-own-%010d", i)) }},
		{"expired", func(_, rq *actor, i int) approval.Request {
			r := heldRequest(rq, fmt.Sprintf("forged-exp-%010d", i))
			r.Deadline = testClock.Add(-time.Minute)
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.ingressStream()
			w.approvalStream()
			const durable = testTenant + "-approvals"
			if _, err := w.js.CreateOrUpdateConsumer(ctxT(t), StreamApproval, jetstream.ConsumerConfig{
				Durable: durable, FilterSubject: "agentgw.approval." + testTenant + ".>",
				AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: n,
			}); err != nil {
				t.Fatal(err)
			}
			approverA := w.newActor(testTenant, "approve:refunds.*")
			requester := w.newActor(testTenant, "refund:draft")
			for i := range n { // no gateway key: no valid token
				m := nats.NewMsg("agentgw.approval." + testTenant + "." + testTarget)
				m.Data, _ = json.Marshal(tc.forged(approverA, requester, i))
				m.Header.Set(decision.Header, "not-a-token")
				w.publish(m)
			}
			real := heldRequest(requester, "real-held-message-0001")
			real.RequestedAt = testClock.Add(-time.Minute)
			w.publishRequest(real)
			cfg := w.approverConfig(approverA)
			cfg.Durable, cfg.Bind = durable, true
			var rejected []reason.Code
			cfg.OnReject = func(_ string, err error) { rejected = append(rejected, reason.Of(err)) }
			ap, err := NewApprover(w.nc, w.js, cfg, WithClock(func() time.Time { return testClock }))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(ctxT(t), 8*time.Second)
			defer cancel()
			shown := false
			if err := ap.Watch(ctx, func(_ context.Context, req approval.Request) error {
				if req.HeldMessageID == real.HeldMessageID {
					shown = true
					cancel()
				}
				return nil
			}); err != nil {
				t.Fatalf("Watch = %v", err)
			}
			if !shown {
				t.Errorf("the gateway-signed request was never shown in 8 s: %d forged %s requests hold every MaxAckPending slot (OnReject calls: %d)",
					n, tc.name, len(rejected))
			}
			if len(rejected) != n || slices.ContainsFunc(rejected, func(c reason.Code) bool { return c != reason.DecisionInvalid }) {
				t.Errorf("OnReject reported %d forgeries (%v); want %d, each %s", len(rejected), slices.Compact(rejected), n, reason.DecisionInvalid)
			}
			info, err := w.js.Consumer(ctxT(t), StreamApproval, durable)
			if err != nil {
				t.Fatal(err)
			}
			ci, err := info.Info(ctxT(t))
			for i := 0; err == nil && ci.NumAckPending > 0 && i < 40; i++ {
				time.Sleep(50 * time.Millisecond) // the last settlements are on their way
				ci, err = info.Info(ctxT(t))
			}
			if err != nil {
				t.Fatal(err)
			}
			if ci.NumAckPending != 0 || ci.NumRedelivered != 0 {
				t.Errorf("durable after Watch: %d pending, %d handed back; want none", ci.NumAckPending, ci.NumRedelivered)
			}
		})
	}
}
