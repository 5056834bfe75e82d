package gateway

import (
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/subjects"
)

// stageNotices prepares the decision notices of a decided message, once
// its route is final (finish): one to its sender when the sender is
// authenticated, and for an approver's answer the gateway took, one to
// the requester of the released request too. Unauthenticated input gets
// none: nobody it could name is known to have sent it. A sender whose
// message said Agentgw-Notify: none gets none either (wantsNotice).
func (g *Gateway) stageNotices(it *item, now time.Time) error {
	if !g.cfg.NotifySenders || !it.authed || it.env == nil || it.cred == nil {
		return nil
	}
	hi := it.heldItem
	if wantsNotice(it) {
		n := noticeOf(it)
		if hi != nil && hi.route != "" {
			n = noticeOf(hi)
			n.MessageID, n.Answers, n.Answer = it.env.MessageID, hi.env.MessageID, notice.AnswerGrant
			if it.answer.Decision == approval.Deny {
				n.Answer = notice.AnswerDeny
			}
		}
		if err := g.stageNotice(it, it, n, ".notice", now); err != nil {
			return err
		}
	}
	if hi != nil && hi.route != "" && hi.cred != nil && hi.env != nil && wantsNotice(hi) {
		return g.stageNotice(it, hi, noticeOf(hi), ".notice.held", now)
	}
	return nil
}

// wantsNotice reports whether the sender of it asked for its decision
// notices: unless its ingress message said Agentgw-Notify: none, read
// exactly as every header is. A held request keeps the header in its
// hold record, so the notice of its release follows what it asked. The
// header is not signed: whoever publishes a copy of an envelope decides
// whether that copy's sender is told of it, as whoever publishes a copy
// already makes the sender be told (a replay_detected notice).
func wantsNotice(it *item) bool { return it.hdr.Get(header.Notify) != notice.NotifyNone }

// noticeOf is what the sender of it may learn of its decision: the
// route, the target it was delivered to, the approval id and deadline,
// or the reason code. Never policy ids or the operator's detail.
func noticeOf(it *item) notice.Notice {
	n := notice.Notice{MessageID: it.env.MessageID, Route: string(it.route)}
	switch it.route {
	case store.RouteAllow:
		n.Target = targetName(it)
	case store.RouteApproval:
		d := it.deadline.UTC()
		n.ApprovalID, n.Deadline = it.env.MessageID, &d
	default:
		n.Route = notice.RouteDeny
		if it.denial != nil {
			n.Reason = string(it.denial.Code)
		}
	}
	return n
}

// stageNotice prepares one notice, output of carrier, to the sender of
// about, with a decision token addressed to that sender and bound to the
// notice's bytes and to the envelope it reports on. The message's data
// is the notice until signTokens wraps it, with its token, in the
// notice document.
func (g *Gateway) stageNotice(carrier, about *item, n notice.Notice, suffix string, now time.Time) error {
	subj, err := subjects.Reply(about.env.Tenant, about.cred.Subject)
	if err != nil {
		return nil // not a routable sender: nobody to tell
	}
	body, err := n.Marshal()
	if err != nil {
		return fmt.Errorf("gateway: decision notice: %w", err)
	}
	h := newHeaders(4)
	h.set(header.MsgID, outputMsgID(carrier, suffix))
	h.set(notice.Header, notice.Kind)
	h.set(header.IngressSeq, strconv.FormatUint(carrier.seq, 10))
	h.set(header.MessageID, n.MessageID)
	m := &nats.Msg{Subject: subj, Data: body, Header: h.h}
	p, err := decision.Prepare(g.signer, decision.Claims{
		Subject: about.cred.Subject, Audience: about.cred.Subject, IssuedAt: now, Expires: now.Add(g.cfg.Limits.DecisionTTL),
		Tenant: about.env.Tenant, Scope: notice.Scope, TraceID: about.env.TraceID, MessageID: about.env.MessageID,
		BodyDigest: bodyDigest(about, about.body), PayloadDigest: decision.Digest(body), Route: decision.RouteNotice,
	})
	if err != nil {
		return fmt.Errorf("gateway: notice token: %w", err)
	}
	carrier.notices = append(carrier.notices, unsignedToken{m: m, p: p})
	return nil
}
