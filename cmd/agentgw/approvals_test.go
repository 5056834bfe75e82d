package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/subjects"
)

// heldRequestMsg publishes rq to the approval stream as the gateway gw
// does: with its token (route approval) bound to the request's bytes. A
// nil gw publishes it without one.
func heldRequestMsg(t *testing.T, js jetstream.JetStream, gw *identity.Signer, rq approval.Request) {
	t.Helper()
	subj, err := subjects.Approval(rq.Tenant, rq.Target)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(subj)
	m.Data, _ = json.Marshal(rq)
	m.Header.Set(header.MessageID, rq.HeldMessageID)
	m.Header.Set(header.DecidedAt, rq.RequestedAt.Format(time.RFC3339Nano))
	if gw != nil {
		exp := rq.Deadline
		if !exp.After(rq.RequestedAt) {
			exp = rq.RequestedAt.Add(time.Second)
		}
		tok, err := decision.Sign(gw, decision.Claims{
			Subject: rq.Agent, Audience: rq.Target, IssuedAt: rq.RequestedAt, Expires: exp,
			Tenant: rq.Tenant, Scope: "pay:send", TraceID: rq.TraceID, MessageID: rq.HeldMessageID,
			BodyDigest: strings.TrimPrefix(rq.BodyDigest, "sha256:"), PayloadDigest: decision.Digest(m.Data),
			PolicyVersion: rq.PolicyVersion, Route: decision.RouteApproval,
		})
		if err != nil {
			t.Fatal(err)
		}
		m.Header.Set(decision.Header, tok.Reveal())
	}
	publish(t, js, m)
}

// lastIngress returns the newest message on the ingress stream.
func lastIngress(t *testing.T, js jetstream.JetStream, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, gateway.StreamIngress)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		t.Fatalf("ingress seq %d: %v", seq, err)
	}
	return m
}
func TestApprovalsList(t *testing.T) {
	srv, js := streams(t)
	url := srv.ClientURL()
	agent, _ := testAgent(t, "tenant_a")
	gw := testGateway(t)
	now := time.Now().UTC()
	b, p := "sha256:"+strings.Repeat("b", 64), "sha256:"+strings.Repeat("a", 64)
	reqs := []approval.Request{
		{HeldMessageID: "held-00000000000000001", TraceID: strings.Repeat("d", 32), Tenant: "tenant_a", Agent: agent, Capability: "tool_call",
			Target: "payments.send", Risk: "critical", PolicyVersion: "sha256:v", BodyDigest: b, PayloadDigest: p,
			Fields: map[string]any{"amount_cents": 125000, "currency": "EUR"}, RequestedAt: now, Deadline: now.Add(15 * time.Minute)},
		{HeldMessageID: "held-00000000000000002", TraceID: strings.Repeat("e", 32), Tenant: "tenant_a", Agent: agent, Capability: "tool_call",
			Target: "payments.send", Risk: "critical", PolicyVersion: "sha256:v", BodyDigest: b, PayloadDigest: p,
			RequestedAt: now.Add(-time.Hour), Deadline: now.Add(-45 * time.Minute)},
		{HeldMessageID: "held-00000000000000003", TraceID: strings.Repeat("f", 32), Tenant: "tenant_b", Agent: agent, Capability: "tool_call",
			Target: "payments.send", Risk: "critical", PolicyVersion: "sha256:v", BodyDigest: b, PayloadDigest: p,
			RequestedAt: now, Deadline: now.Add(time.Hour)},
	}
	for _, rq := range reqs {
		heldRequestMsg(t, js, gw, rq)
	}
	// Someone able to publish on the queue, without the gateway's key:
	// harmless fields beside the real request's id and digests.
	forged := reqs[0]
	forged.Fields = map[string]any{"amount_cents": 1, "currency": "EUR"}
	heldRequestMsg(t, js, nil, forged)
	heldRequestMsg(t, js, testGateway(t), forged)

	mustRun(t, "", exitUsage, "approvals", "ls", "--server", url, "--tenant", "tenant_a")
	r := mustRun(t, "", exitOK, "approvals", "ls", "--server", url, "--tenant", "tenant_a", "--gateway-key", gw.PublicKey())
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "held-00000000000000001") || !strings.Contains(lines[1], "critical") ||
		!strings.Contains(lines[1], `{"amount_cents":125000,"currency":"EUR"}`) || !strings.Contains(lines[1], stamp(reqs[0].Deadline)) ||
		!strings.Contains(lines[1], short(agent)) {
		t.Errorf("approvals ls: want only the pending request of tenant_a\n%s", r)
	}
	if strings.Count(r.stderr, "skipped: not shown: decision_token_") != 2 {
		t.Errorf("approvals ls: want the two forged requests reported, not listed\n%s", r)
	}

	r = mustRun(t, "", exitOK, "approvals", "ls", "--server", url, "--tenant", "tenant_a", "--all", "--json", "--gateway-key", gw.PublicKey())
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	var states []string
	for dec.More() {
		var h heldRequest
		if err := dec.Decode(&h); err != nil {
			t.Fatal(err)
		}
		states = append(states, h.HeldMessageID+"="+h.State)
	}
	if strings.Join(states, " ") != "held-00000000000000001=pending held-00000000000000002=expired" {
		t.Errorf("approvals ls --all --json: %v", states)
	}
}

func TestApprovalsAnswer(t *testing.T) {
	srv, js := streams(t)
	url := srv.ClientURL()
	k := newCredsKit(t)
	k.approverCreds(t)
	requester, _ := testAgent(t, "tenant_a")
	gw := testGateway(t)
	now := time.Now().UTC()
	body := "sha256:" + strings.Repeat("b", 64)
	base := approval.Request{
		TraceID: strings.Repeat("d", 32), Tenant: "tenant_a", Agent: requester, Capability: "tool_call",
		Target: "payments.send", Risk: "critical", PolicyVersion: "sha256:policy", BodyDigest: body,
		PayloadDigest: "sha256:" + strings.Repeat("a", 64), RequestedAt: now, Deadline: now.Add(15 * time.Minute),
	}
	pending, expired, own := base, base, base
	pending.HeldMessageID = "held-pending-000000001"
	expired.HeldMessageID, expired.Deadline = "held-expired-000000002", now.Add(-time.Minute)
	own.HeldMessageID, own.Agent = "held-own-00000000000003", k.agent
	// A forgery of the pending request, published after it so that it
	// is the latest under that id: bound to another body, which a grant
	// taken from it would name.
	forged := pending
	forged.BodyDigest = "sha256:" + strings.Repeat("f", 64)
	for _, rq := range []approval.Request{pending, expired, own} {
		heldRequestMsg(t, js, gw, rq)
	}
	heldRequestMsg(t, js, nil, forged)
	answer := func(want int, decision, id string) result {
		t.Helper()
		r := mustRun(t, k.dir, want, "approvals", decision, "--no-wait-decision", "--server", url, "--credential", "approver.creds",
			"--gateway-key", gw.PublicKey(), "--id", id, "--reason", "looks right", "--json")
		k.assertNoSecrets(t, "approvals "+decision, r.stdout+r.stderr)
		return r
	}

	r := answer(exitOK, "grant", pending.HeldMessageID)
	var rc struct {
		Decision      string `json:"decision"`
		HeldMessageID string `json:"held_message_id"`
		MessageID     string `json:"message_id"`
		Seq           uint64 `json:"seq"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rc); err != nil || rc.Decision != "grant" || rc.HeldMessageID != pending.HeldMessageID {
		t.Fatalf("approvals grant --json: %v\n%s", err, r)
	}
	m := lastIngress(t, js, rc.Seq)
	env, err := envelope.Parse(m.Data, envelope.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var ans approval.Answer
	if err := json.Unmarshal(env.Payload.Plain, &ans); err != nil {
		t.Fatal(err)
	}
	if env.Capability != envelope.Approve || env.Target != pending.HeldMessageID || env.TraceID != pending.TraceID || env.MessageID != rc.MessageID ||
		ans != (approval.Answer{Decision: approval.Grant, Reason: "looks right", BodyDigest: body, PolicyVersion: "sha256:policy"}) {
		t.Errorf("answer envelope %+v with %+v; want an approve of %s bound to its digest and policy version", env, ans, pending.HeldMessageID)
	}
	if m.Header.Get(header.Credential) == "" || m.Header.Get(header.Signature) == "" {
		t.Error("the answer is not signed with the approver's credential")
	}

	answer(exitRejected, "deny", expired.HeldMessageID)
	r = answer(exitRejected, "grant", own.HeldMessageID)
	if !strings.Contains(r.stderr, "own request") {
		t.Errorf("self-approval refusal not explained:\n%s", r)
	}
	r = answer(exitError, "grant", "held-unknown-000000009")
	if !strings.Contains(r.stderr, "approvals ls --tenant tenant_a") {
		t.Errorf("unknown id does not say what to do:\n%s", r)
	}
}

// approverCreds issues k's agent a tenant_a credential to approve
// payments, in approver.creds.
func (k *credsKit) approverCreds(t *testing.T) {
	t.Helper()
	mustRun(t, k.dir, exitOK, "creds", "issue", "--issuer", "issuer.nk", "--agent-seed", "agent.nk", "--tenant", "tenant_a",
		"--audience", "gw", "--scopes", "approve:payments.*", "--xkey", k.xkey, "--out", "approver.creds")
}

// An approver whose --gateway-key lost the gateway's key after it held
// the request (a rotation) refuses the notice of its answer; the wait
// that ends empty says why.
func TestApprovalsAnswerNamesAnUntrustedGatewayKey(t *testing.T) {
	srv, js := streams(t)
	k := newCredsKit(t)
	k.approverCreds(t)
	requester, _ := testAgent(t, "tenant_a")
	gw, rotated := testGateway(t), testGateway(t)
	now := time.Now().UTC()
	rq := approval.Request{
		TraceID: strings.Repeat("d", 32), Tenant: "tenant_a", Agent: requester, Capability: "tool_call",
		Target: "payments.send", Risk: "critical", PolicyVersion: "sha256:policy", BodyDigest: "sha256:" + strings.Repeat("b", 64),
		PayloadDigest: "sha256:" + strings.Repeat("a", 64), RequestedAt: now, Deadline: now.Add(15 * time.Minute),
		HeldMessageID: "held-rotated-000000001",
	}
	heldRequestMsg(t, js, gw, rq)

	// Answer the answer as the gateway would, but with its new key.
	nc := natstest.Connect(t, srv)
	answers, err := nc.SubscribeSync(subjects.IngressStreamSubject)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := subjects.Reply("tenant_a", k.agent)
	if err != nil {
		t.Fatal(err)
	}
	noticed := make(chan error, 1)
	go func() {
		noticed <- func() error {
			m, err := answers.NextMsg(20 * time.Second)
			if err != nil {
				return err
			}
			env, err := envelope.Parse(m.Data, envelope.Limits{})
			if err != nil {
				return err
			}
			data := []byte(`{"v":1,"message_id":"` + env.MessageID + `","route":"allow","target":"` + rq.HeldMessageID + `"}`)
			tok, err := decision.Sign(rotated, decision.Claims{
				Subject: k.agent, Audience: k.agent, IssuedAt: time.Now(), Expires: time.Now().Add(time.Minute),
				Tenant: "tenant_a", Scope: "approve:payments.send", TraceID: env.TraceID, MessageID: env.MessageID,
				BodyDigest: decision.Digest(m.Data), PayloadDigest: decision.Digest(data), Route: decision.RouteNotice,
			})
			if err != nil {
				return err
			}
			n := nats.NewMsg(reply)
			n.Header.Set(notice.Header, notice.Kind)
			n.Header.Set(header.MessageID, env.MessageID)
			if n.Data, err = notice.AppendDoc(nil, tok.Reveal(), data); err != nil {
				return err
			}
			return nc.PublishMsg(n)
		}()
	}()

	r := mustRun(t, k.dir, exitRejected, "approvals", "grant", "--server", srv.ClientURL(), "--credential", "approver.creds",
		"--gateway-key", gw.PublicKey(), "--id", rq.HeldMessageID, "--reason", "ok", "--timeout", "5s")
	if err := <-noticed; err != nil {
		t.Fatalf("notice: %v", err)
	}
	if !strings.Contains(r.stderr, "no verdict within 5s") ||
		!strings.Contains(r.stderr, "names a gateway key not among --gateway-key") || !strings.Contains(r.stderr, rotated.PublicKey()) {
		t.Errorf("approvals grant, its notice signed with a key it does not trust: want the wait to name the key\n%s", r)
	}
}
