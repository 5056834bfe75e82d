package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

func approvalsCmd(args []string) int {
	return group("approvals", "Held requests awaiting an approver (stream "+gateway.StreamApproval+").", []subcommand{
		{"ls", "list a tenant's held requests", func(a []string) int { return approvalsList("ls", a) }},
		{"watch", "list held requests, then print new ones as they arrive", func(a []string) int { return approvalsList("watch", a) }},
		{"grant", "release a held request to its capability subject", func(a []string) int { return approvalsAnswer(approval.Grant, a) }},
		{"deny", "refuse a held request (it goes to the denied stream)", func(a []string) int { return approvalsAnswer(approval.Deny, a) }},
	}, args)
}

// heldRequest is one approval request as read from the stream.
type heldRequest struct {
	Seq   uint64 `json:"seq"`
	State string `json:"state"` // pending, or expired (past its deadline)
	approval.Request
}

// readRequest reads an approval request as client.Approver does: decoded
// strictly, of tenant and naming its subject's target, and carrying a
// token of one of gateways (route approval) bound to its exact bytes. The
// token of a request past its deadline expired with it: such a request
// (which --all shows, and an answer refuses) is checked as of when the
// gateway decided it (Agentgw-Decided-At; its deadline without one). The
// header only picks the instant: the token must still verify then.
func readRequest(m jetstream.Msg, tenant string, gateways []string) (approval.Request, error) {
	req, err := client.DecodeRequest(m.Subject(), m.Data(), tenant)
	if err != nil {
		return req, err
	}
	now := time.Now()
	if !req.Deadline.IsZero() && now.After(req.Deadline) {
		now = req.Deadline
		if at, err := time.Parse(time.RFC3339Nano, m.Headers().Get(header.DecidedAt)); err == nil {
			now = at
		}
	}
	err = client.VerifyRequest(m.Headers().Get(decision.Header), m.Data(), req,
		decision.VerifyOptions{TrustedGateways: gateways, Now: now, Skew: client.DefaultSkew})
	if err != nil {
		return approval.Request{}, fmt.Errorf("not shown: %w", err)
	}
	return req, nil
}

func approvalsList(sub string, args []string) int {
	c := newCmd("approvals "+sub, "--tenant T --gateway-key N... [--all] [--json]", `
List the held requests of a tenant from `+gateway.StreamApproval+`: held message id,
requesting agent, target, risk, the payload fields the catalog marks
approver-visible, and the deadline. Only requests whose decision token a
key of --gateway-key signed over their exact bytes are listed; others
are reported on stderr and skipped. Requests past their deadline are
hidden unless --all (the gateway has denied them as approval_expired).
A request whose answer the gateway took through 'approvals grant' or
'approvals deny' (or client.Approver.Watch) is acknowledged on the
approval queue and no longer listed; one answered otherwise stays listed
until its deadline ('agentgw audit tail --trace <trace id>' shows it).
watch keeps printing new requests until interrupted.

Connected as an nkey user (--creds: the approver's seed or .creds) of a
server that requires authentication, as on the 'agentgw run' server, it
reads the pre-created approval queue <tenant>-approvals through the API
prefix `+client.TenantAPIPrefix+` and hands every request back: listing consumes nothing,
but requests another reader holds are not shown until it lets them go.
Likewise watch holds what it has read on that shared queue while it
runs: an approver service (client.Approver.Watch) bound to the same
queue is shown those requests only as they are redelivered to it, up
to the queue's ack wait later. Run watch beside such a service only to
look, and briefly.`)
	var cf connFlags
	cf.register(c.fs)
	cf.tenantSide = true
	tenant := c.fs.String("tenant", "", "tenant whose requests to list")
	all := c.fs.Bool("all", false, "include requests past their deadline")
	asJSON := c.fs.Bool("json", false, "print one JSON object per request")
	var gwKeys listFlag
	c.fs.Var(&gwKeys, "gateway-key", "gateway signing `key` (N…) whose requests to show; repeatable")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(); !ok {
		return code
	}
	if code, ok := c.require("tenant", "gateway-key"); !ok {
		return code
	}
	if !subjects.ValidToken(*tenant) {
		return c.usageErr("--tenant %q is not [a-z0-9_-]{1,64}", *tenant)
	}
	nc, js, code, ok := c.connect(&cf)
	if !ok {
		return code
	}
	defer nc.Close()
	ctx, cancel := interruptible()
	defer cancel()

	follow := sub == "watch"
	jl := newJSONLines(c.out)
	var t *table
	if !*asJSON {
		t = newTable(c.out, follow, column{"SEQ", 6}, column{"HELD MESSAGE ID", 32}, column{"AGENT", 12},
			column{"TARGET", 22}, column{"RISK", 8}, column{"DEADLINE", 20}, column{"STATE", 7}, column{"FIELDS", 0})
	}
	err := scanApprovals(ctx, nc, js, cf.bound, *tenant, follow, func(m jetstream.Msg) error {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		req, err := readRequest(m, *tenant, gwKeys)
		if err != nil {
			fmt.Fprintf(c.err, "agentgw %s: seq %d: skipped: %v\n", c.name, md.Sequence.Stream, err)
			return nil
		}
		h := heldRequest{Seq: md.Sequence.Stream, State: "pending", Request: req}
		if !req.Deadline.IsZero() && time.Now().After(req.Deadline) {
			h.State = "expired"
			if !*all {
				return nil
			}
		}
		if *asJSON {
			return jl.write(h)
		}
		fields := "-"
		if len(req.Fields) > 0 {
			b, _ := json.Marshal(req.Fields)
			fields = clean(string(b))
		}
		t.row(fmt.Sprint(h.Seq), clean(req.HeldMessageID), short(req.Agent), clean(req.Target), clean(req.Risk),
			stamp(req.Deadline), h.State, fields)
		return nil
	})
	if t != nil {
		t.flush()
	}
	if err != nil {
		return c.fail(err, streamHint(gateway.StreamApproval, err))
	}
	return exitOK
}

func approvalsAnswer(decision string, args []string) int {
	sub := "grant"
	if decision == approval.Deny {
		sub = "deny"
	}
	c := newCmd("approvals "+sub, "--credential FILE --gateway-key N... --id HELD_MESSAGE_ID [--agent KEY] [--tenant T] [--audience A] [--reason TEXT]", `
Find the held request with message id --id on `+gateway.StreamApproval+`, signed by a
key of --gateway-key as 'approvals ls' shows it, and answer
it with client.Approver: an 'approve' envelope signed with the approver's
credential (--credential, an agentgw .creds file whose scopes include
approve:<target>), bound to the request's body digest and policy version.
The gateway checks the answer like any envelope; a grant releases the
request to its capability subject exactly once.

Then waits (up to --timeout) for the gateway's verdict, the decision
notice of the answer on the approver's reply subject (signed by a key of
--gateway-key), and prints it: the answer taken and what became of the
request, or the answer refused with the reason code (exit 3; e.g.
approval_invalid for a request already answered). A grant whose release
was denied (the requester revoked meanwhile) exits 3 too. Once the
gateway has answered, the request is acknowledged on the approval queue,
so 'approvals ls' no longer lists it. --no-wait-decision sends and
returns.

Message ids are unique per agent only: once one agent's hold under an id
has ended, another agent may be held under it. When requests of several
agents are held under --id, it refuses (exit 2) until --agent names the
requesting agent ('approvals ls' shows it), rather than answer one you
may not have looked at.

Refuses (exit 3) to answer your own request or one past its deadline.
Answers carry plain payloads, so no curve key is needed. Connects as the
approver's key (--credential) unless --creds, $NATS_CREDS, $NATS_NKEY or
a NATS context name another user, and finds the request as 'approvals ls' does.`)
	var cf connFlags
	cf.register(c.fs)
	cf.tenantSide = true
	creds := c.credentialFlag("the approver's")
	id := c.fs.String("id", "", "held message `id` (from 'approvals ls')")
	agentKey := c.fs.String("agent", "", "the requesting agent's `key` (from 'approvals ls'): required when requests of several agents are held under --id")
	tenant := c.fs.String("tenant", "", "tenant (default: the credential's)")
	audience := c.fs.String("audience", "", "gateway audience (default: the credential's)")
	why := c.fs.String("reason", "", "reason `text`, recorded with the answer")
	timeout := c.fs.Duration("timeout", 30*time.Second, "give up after this long")
	asJSON := c.fs.Bool("json", false, "print the receipt as JSON")
	noDecision := c.fs.Bool("no-wait-decision", false, "do not wait for the gateway's verdict")
	var gwKeys listFlag
	c.fs.Var(&gwKeys, "gateway-key", "gateway signing `key` (N…) whose requests and verdicts to trust; repeatable")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(); !ok {
		return code
	}
	if code, ok := c.require("id", "gateway-key"); !ok {
		return code
	}
	if *timeout <= 0 {
		return c.usageErr("--timeout must be positive")
	}
	if code, ok := c.needCredential(*creds, &cf); !ok {
		return code
	}
	tok, kp, err := identity.ReadCreds(*creds)
	if err != nil {
		return c.fail(err, "--credential must be the approver's .creds file (from 'agentgw creds issue').")
	}
	defer kp.Wipe()
	nc, js, code, ok := c.connect(&cf)
	if !ok {
		return code
	}
	defer nc.Close()
	cfg := client.ApproverConfig{AgentConfig: client.DefaultAgentConfig(), TrustedGateways: gwKeys}
	cfg.Credential, cfg.Key, cfg.Tenant, cfg.Audience = tok, kp, *tenant, *audience
	ap, err := client.NewApprover(nc, js, cfg)
	if err != nil {
		return c.usageErr("%v", err)
	}
	ctx, cancel := interruptible()
	defer cancel()
	ctx, stop := context.WithTimeout(ctx, *timeout)
	defer stop()

	reqs, err := findRequests(ctx, nc, js, cf.bound, ap.Agent().Tenant(), *id, gwKeys)
	if err != nil {
		return c.fail(err, streamHint(gateway.StreamApproval, err))
	}
	if *agentKey != "" {
		reqs = slices.DeleteFunc(reqs, func(r approval.Request) bool { return r.Agent != *agentKey })
	}
	if len(reqs) > 1 {
		// Message ids are unique per agent only: once one agent's hold
		// under an id has ended, another agent may be held under it, and
		// the answer would be bound to whichever request was read last,
		// perhaps not the one the approver looked at.
		var who []string
		for _, r := range reqs {
			who = append(who, clean(r.Agent))
		}
		return c.usageErr("requests of %d agents are held under --id %s (%s): name the one to answer with --agent", len(reqs), clean(*id), strings.Join(who, ", "))
	}
	req, found := approval.Request{}, len(reqs) == 1
	if found {
		req = reqs[0]
	}
	if !found {
		return c.fail(fmt.Errorf("no held request %q for tenant %s", *id, ap.Agent().Tenant()),
			"List them with 'agentgw approvals ls --tenant "+ap.Agent().Tenant()+" --gateway-key <key>'; only requests that key signed are found.")
	}
	if !req.Deadline.IsZero() && time.Now().After(req.Deadline) {
		fmt.Fprintf(c.err, "agentgw %s: request %s expired at %s; the gateway denies it as approval_expired\n", c.name, clean(*id), stamp(req.Deadline))
		return exitRejected
	}
	var watch *client.DecisionWatch
	// A notice refused for a gateway key not among --gateway-key: the
	// gateway's key rotated since it held the request.
	var untrusted untrustedKey
	if !*noDecision {
		if watch, err = ap.Agent().WatchDecisions(client.WaitOptions{TrustedGateways: gwKeys, OnReject: untrusted.reject}); err != nil {
			return c.fail(err, "")
		}
		defer func() { _ = watch.Close() }()
	}
	rc, err := ap.Answer(ctx, req, decision, *why)
	switch {
	case errors.Is(err, client.ErrSelfApproval):
		fmt.Fprintf(c.err, "agentgw %s: %v: an agent may not approve its own request\n", c.name, err)
		return exitRejected
	case errors.Is(err, client.ErrRequest):
		return c.fail(err, "")
	case err != nil:
		return c.fail(err, "")
	}
	var verdict *client.Decision
	if watch != nil {
		verdict, err = watch.Await(ctx, rc.MessageID)
		var denied *client.DeniedError
		switch {
		case errors.Is(err, client.ErrNoDecision):
			fmt.Fprintf(c.err, "agentgw %s: answer %s sent, but no verdict within %s: 'agentgw audit tail --trace %s' shows it.\n", c.name, rc.MessageID, *timeout, rc.TraceID)
			untrusted.say(c.err)
			return exitRejected
		case err != nil && !errors.As(err, &denied):
			return c.fail(err, "")
		}
		// Answered now, or past answering: the queue need not show it. A
		// refusal of this approver's answer leaves it for others.
		if verdict != nil && (verdict.Answers != "" || verdict.Reason == reason.ApprovalExpired) {
			if err := ackRequest(ctx, nc, js, cf.bound, ap.Agent().Tenant(), *id, req.Agent, gwKeys); err != nil {
				fmt.Fprintf(c.err, "agentgw %s: the request stays listed on the approval queue: %v\n", c.name, err)
			}
		}
	}
	code = exitOK
	if verdict != nil && (verdict.Answers == "" || decision == approval.Grant && verdict.Route != notice.RouteAllow) {
		code = exitRejected
	}
	if *asJSON {
		out := map[string]any{
			"decision": decision, "held_message_id": req.HeldMessageID, "message_id": rc.MessageID,
			"trace_id": rc.TraceID, "stream": rc.Stream, "seq": rc.Seq,
		}
		if verdict != nil {
			out["verdict"] = decisionJSON(verdict)
		}
		_ = newJSONLines(c.out).write(out)
		return code
	}
	fmt.Fprintf(c.out, "sent %s for %s (target %s)\nmessage_id  %s\ntrace_id    %s\nstream_seq  %s %d\n",
		decision, clean(req.HeldMessageID), clean(req.Target), rc.MessageID, rc.TraceID, rc.Stream, rc.Seq)
	switch {
	case verdict == nil:
		fmt.Fprintf(c.err, "The gateway decides on the answer: 'agentgw audit tail --trace %s'.\n", rc.TraceID)
	case verdict.Answers == "":
		fmt.Fprintf(c.out, "verdict     answer refused: %s\n", verdict.Reason)
	default:
		fmt.Fprintf(c.out, "verdict     %s\n", decisionText(verdict))
	}
	return code
}

// ackRequest acknowledges the request of agent held under id on the approval
// queue, as client.Approver.Watch does once a request is handled, so
// that the queue no longer shows it. Without the pre-created queue
// (an unbound reader) there is nothing to acknowledge.
func ackRequest(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, bound bool, tenant, id, agent string, gateways []string) error {
	if !bound {
		return nil
	}
	return scanBound(ctx, nc, js, gateway.StreamApproval, client.ApprovalConsumerName(tenant), false, func(m jetstream.Msg) error {
		if m.Headers().Get(header.MessageID) != id {
			return nil
		}
		if r, err := readRequest(m, tenant, gateways); err != nil || r.HeldMessageID != id || r.Agent != agent {
			return nil // not the gateway's request, or another agent's: left for whoever reads it
		}
		if err := m.Ack(); err != nil {
			return err
		}
		return errConsumed
	})
}

// findRequests returns the requests of tenant held under id that a key
// of gateways signed (readRequest): the latest of each requesting agent.
// It checks the Agentgw-Message-Id header before decoding a body.
func findRequests(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, bound bool, tenant, id string, gateways []string) ([]approval.Request, error) {
	var reqs []approval.Request
	look := func() error {
		reqs = reqs[:0]
		return scanApprovals(ctx, nc, js, bound, tenant, false, func(m jetstream.Msg) error {
			if m.Headers().Get(header.MessageID) != id {
				return nil
			}
			r, err := readRequest(m, tenant, gateways)
			if err != nil || r.HeldMessageID != id {
				return nil
			}
			if i := slices.IndexFunc(reqs, func(o approval.Request) bool { return o.Agent == r.Agent }); i >= 0 {
				reqs[i] = r
			} else {
				reqs = append(reqs, r)
			}
			return nil
		})
	}
	err := look()
	// A bound queue does not show what another reader (a concurrent 'ls')
	// still holds; it hands it back at once, so look again briefly.
	for i := 0; bound && err == nil && len(reqs) == 0 && i < 10 && ctx.Err() == nil; i++ {
		time.Sleep(200 * time.Millisecond)
		err = look()
	}
	return reqs, err
}

// scanApprovals reads a tenant's approval requests: through the
// pre-created queue when bound (a tenant user), else through an ordered
// consumer on the stream.
func scanApprovals(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, bound bool, tenant string, follow bool, fn func(jetstream.Msg) error) error {
	if bound {
		return scanBound(ctx, nc, js, gateway.StreamApproval, client.ApprovalConsumerName(tenant), follow, fn)
	}
	oc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subjects.Root + ".approval." + tenant + ".>"}}
	return scanOrdered(ctx, js, gateway.StreamApproval, oc, follow, fn)
}
