package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// ErrNoDecision: no verified decision notice arrived in time. The
// gateway may be down or behind, or run with notify_senders off.
var ErrNoDecision = errors.New("client: no decision notice")

// Decision is what the gateway decided for one envelope this agent sent,
// from its decision notice (docs/wire.md, "Decision notices").
type Decision struct {
	MessageID  string
	Route      string // notice.RouteAllow, RouteApproval or RouteDeny
	Target     string // allow: the capability target it was delivered to
	ApprovalID string // approval: the id approvers answer
	Deadline   time.Time
	Reason     reason.Code // deny: the reason code
	// Answers and Answer are set when the envelope was an approval
	// answer the gateway took: the held request's message id and
	// grant or deny. Route, Target and Reason are then the held
	// request's outcome.
	Answers, Answer string
	Claims          *decision.Claims
}

// DeniedError is the error of a denial: the reason code, and only that
// (the policy that decided is for operators).
type DeniedError struct {
	MessageID string
	Reason    reason.Code
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("client: message %s denied: %s", e.MessageID, e.Reason)
}

// DecisionWatch receives the decision notices on the agent's reply
// subject. Open it before sending, so no notice arrives unseen; close
// it when done.
type DecisionWatch struct {
	a   *Agent
	sub *nats.Subscription
	opt WaitOptions
}

// WatchDecisions subscribes to the agent's reply subject for decision
// notices whose token a gateway of opt.TrustedGateways signed, within
// opt.Skew (zero: DefaultSkew). Errors wrap ErrConfig when no gateway is
// trusted or the skew is negative.
func (a *Agent) WatchDecisions(opt WaitOptions) (*DecisionWatch, error) {
	if err := opt.check("decision notices"); err != nil {
		return nil, err
	}
	subj, err := subjects.Reply(a.tenant, a.pub)
	if err != nil {
		return nil, err
	}
	sub, err := a.nc.SubscribeSync(subj)
	if err != nil {
		return nil, fmt.Errorf("client: subscribe %s: %w", subj, err)
	}
	return &DecisionWatch{a: a, sub: sub, opt: opt}, nil
}

// Close ends the subscription.
func (w *DecisionWatch) Close() error { return w.sub.Unsubscribe() }

// Await waits, until ctx is done, for the verified notice of the envelope
// messageID. A denial of it returns the Decision and a *DeniedError; an
// approval answer the gateway took is not a denial of the answer, even
// when the held request ends denied (Answers is set). Messages on the
// subject that are not verified notices of messageID are skipped.
func (w *DecisionWatch) Await(ctx context.Context, messageID string) (*Decision, error) {
	return await(ctx, messageID, w.sub.NextMsgWithContext, func(m *nats.Msg) *Decision { return w.a.noticeOf(m, messageID, w.opt) })
}

// await reads messages with next until noticeOf takes one for the
// notice of messageID: Await's loop, for a watch's subscription and for
// SendAndDecide's waiter alike.
func await(ctx context.Context, messageID string, next func(context.Context) (*nats.Msg, error), noticeOf func(*nats.Msg) *Decision) (*Decision, error) {
	for {
		m, err := next(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w for %s: %w", ErrNoDecision, messageID, err)
		}
		d := noticeOf(m)
		if d == nil {
			continue
		}
		if d.Route == notice.RouteDeny && d.Answers == "" {
			return d, &DeniedError{MessageID: messageID, Reason: d.Reason}
		}
		return d, nil
	}
}

// SendAndDecide sends req and waits, until ctx is done, for the
// gateway's decision notice: delivered, held for approval, or denied
// (a *DeniedError). Without a notice in time it returns the receipt and
// ErrNoDecision.
func (a *Agent) SendAndDecide(ctx context.Context, req Request, opt WaitOptions) (*Receipt, *Decision, error) {
	if err := opt.check("decision notices"); err != nil {
		return nil, nil, err
	}
	if req.NoNotice {
		return nil, nil, fmt.Errorf("%w: NoNotice: SendAndDecide waits for the notice", ErrRequest)
	}
	w, err := a.wait()
	if err != nil {
		return nil, nil, err
	}
	defer w.close()
	rcpt, err := a.send(ctx, req, w.expect)
	if err != nil {
		return nil, nil, err
	}
	d, err := await(ctx, rcpt.MessageID, w.next, func(m *nats.Msg) *Decision { return a.noticeOf(m, rcpt.MessageID, opt) })
	return rcpt, d, err
}

// noticeOf returns the Decision of m when m is a verified decision notice
// of the envelope messageID: marked as a notice, its Agentgw-Message-Id
// messageID, and verifyNotice's checks passed for that envelope. Any
// other message, from a trusted gateway or not, is nil; a marked notice
// of messageID that does not verify goes to opt.OnReject first.
func (a *Agent) noticeOf(m *nats.Msg, messageID string, opt WaitOptions) *Decision {
	if m.Header.Get(notice.Header) != notice.Kind || m.Header.Get(header.MessageID) != messageID {
		return nil
	}
	d, err := a.verifyNotice(m, opt)
	if err != nil {
		if opt.OnReject != nil {
			opt.OnReject(err)
		}
		return nil // not from a trusted gateway: not our notice
	}
	if d.MessageID != messageID {
		return nil // a verified notice of another envelope under this one's header
	}
	return d
}

// verifyNotice checks a notice document — a trusted gateway's token,
// addressed to this agent of its tenant, route notice, bound to the notice's bytes and
// naming the notice's envelope — and decodes the notice. Data that is
// not a notice document carries no token: decision_token_missing.
func (a *Agent) verifyNotice(m *nats.Msg, opt WaitOptions) (*Decision, error) {
	token, data, err := notice.ParseDoc(m.Data)
	if err != nil {
		return nil, reason.Deny(reason.DecisionMissing, "not a decision notice document")
	}
	claims, err := a.verifyToken(token, opt)
	if err != nil {
		return nil, err
	}
	if claims.Route != decision.RouteNotice || claims.Subject != a.pub || claims.Tenant != a.tenant || claims.PayloadDigest != decision.Digest(data) {
		return nil, reason.Deny(reason.DecisionBinding, "notice token does not bind these bytes to this agent of its tenant")
	}
	n, err := notice.Parse(data)
	if err != nil {
		// A Denial, as every other refusal here (TypeScript: internal_error).
		return nil, reason.Mark(reason.Deny(reason.Internal, "%v", err), notice.ErrInvalid)
	}
	if n.MessageID != claims.MessageID {
		return nil, reason.Deny(reason.DecisionBinding, "notice names another envelope than its token")
	}
	d := &Decision{MessageID: n.MessageID, Route: n.Route, Target: n.Target, ApprovalID: n.ApprovalID,
		Reason: reason.Code(n.Reason), Answers: n.Answers, Answer: n.Answer, Claims: claims}
	if n.Deadline != nil {
		d.Deadline = *n.Deadline
	}
	return d, nil
}
