package gateway

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/delivery"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// Outputs refused as too large. The server refuses a message over its
// max_payload (nats.ErrMaxPayload, before it is sent) and a stream one
// over its max_msg_size or with a header block over 64 KiB (a PubAck
// error). No retry stores such an output, yet it is recorded in its
// message's outcome, which every redelivery re-emits: left so, the
// message would be redelivered for ever, never end, and hold its
// consumer's ack floor. checkOutputRoom keeps the gateway's own outputs
// under max_payload; these come from elsewhere: an outcome recorded by
// an earlier gateway or under a larger max_payload, a server whose
// max_payload shrank since the start, an operator's max_msg_size.
//
// The acker narrows such a message's outcome (forgetStored) to what is
// left to store, with each refused output replaced (replaceRefused):
//
//   - a denied record by the same record without its body
//     (withoutBody): same subject, reason and Nats-Msg-Id; its audit
//     event already says what it says;
//   - a delivery, an approval request or a reply by a denial,
//     internal_error (refusedDenial), and an audit event of that denial;
//     an approval request's hold is removed with it, so that neither an
//     answer nor its expiry ends the message a second time. A hold that
//     an answer took or that expired meanwhile already ended the message:
//     the approval request is dropped, nothing replaces it.
//
// A decision notice refused so is dropped (it ends nothing). An audit
// message holding several events (the events of a batch's messages of
// one tenant, carried by the last of them: recordOutcomes) is replaced
// by one message per event (splitAudit), whose ids derive from its own;
// one holding a single event is kept, unstored: no decision goes without
// its event, so its message stays unacknowledged (fail closed). The
// redelivery re-emits what is left and the message is acknowledged. A
// decision notice the sender may already have is not taken back.

// errTooLarge: a stream refused an output for its size.
var errTooLarge = errors.New("gateway: output too large for the stream")

// refusedAsTooLarge reports whether err, a publish's or a PubAck's,
// refuses the output for its size: no retry would store it.
func refusedAsTooLarge(err error) bool {
	return errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, errTooLarge)
}

// tooLarge reports whether err, a JetStream publish's, refuses the
// message for its size: the client's max_payload check, or the stream's
// max_msg_size or header limit in the PubAck.
func tooLarge(err error) bool {
	if err == nil {
		return false
	}
	if refusedAsTooLarge(err) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jsMessageExceedsMaximum || api.ErrorCode == jsHeaderExceedsMaximum)
}

// JetStream's error codes for a message over the stream's max_msg_size
// and for a header block over 64 KiB.
const (
	jsMessageExceedsMaximum = 10054
	jsHeaderExceedsMaximum  = 10097
)

// replaceRefused returns it.unstored with each output of it.refused
// replaced as the comment above says. b is the batch the narrowed outcome
// is committed in; an approval request's hold is removed in it (or,
// scaled out, in the holds bucket, before it).
func (g *Gateway) replaceRefused(b *ledgerBatch, it *item, now time.Time) ([]*nats.Msg, error) {
	left := make([]*nats.Msg, 0, len(it.unstored)+1)
	for _, m := range it.unstored {
		if !slices.Contains(it.refused, m) {
			left = append(left, m)
			continue
		}
		size := wireSize(m.Header, m.Data)
		switch {
		case isDenied(m.Subject):
			left = append(left, withoutBodyCopy(m))
			g.log.Warn().Uint64("ingress_seq", it.seq).Str("subject", m.Subject).Int("bytes", size).
				Msg("a denied record was refused as too large; it is recorded without its body")
			continue
		case m.Header.Get(notice.Header) != "":
			// A decision notice ends nothing and is sent at most once:
			// the sender learns nothing rather than its message never
			// ending.
			g.log.Warn().Uint64("ingress_seq", it.seq).Str("subject", m.Subject).Int("bytes", size).
				Msg("a decision notice was refused as too large; dropped")
			continue
		case !terminal(m):
			// An audit message. One holding the events of several
			// messages (recordOutcomes) goes out again as one message
			// per event; a single event refused so stays unstored:
			// nothing can stand for it, and no message is acknowledged
			// without its event (fail closed).
			if parts := splitAudit(m); len(parts) > 1 {
				left = append(left, parts...)
				g.log.Warn().Uint64("ingress_seq", it.seq).Str("subject", m.Subject).Int("bytes", size).Int("events", len(parts)).
					Msg("an audit message was refused as too large; its events go out one per message")
				continue
			}
			left = append(left, m)
			g.log.Error().Uint64("ingress_seq", it.seq).Str("subject", m.Subject).Int("bytes", size).
				Msg("an audit event was refused as too large; it stays unstored and its message unacknowledged")
			continue
		case isApproval(m.Subject):
			ended, err := g.retireUnsentHold(b, m)
			if err != nil {
				return nil, err
			}
			if ended {
				// The hold may be gone because this message's own earlier
				// narrowing removed it, committed with the replacement: a
				// redelivery decided before that commit re-emitted the
				// request. Then that replacement is the message's end.
				own, err := g.recordedReplacement(b, it, m)
				if err != nil {
					return nil, err
				}
				if len(own) > 0 {
					left = append(left, own...)
					continue
				}
				g.log.Warn().Uint64("ingress_seq", it.seq).Str("subject", m.Subject).Int("bytes", size).
					Msg("an approval request was refused as too large after its hold ended; dropped")
				continue
			}
		}
		d, a := g.refusedDenial(it, m, size, now)
		if _, _, err := subjects.ParseCapability(m.Subject); err == nil {
			if err := g.withdrawResponse(b, it, d); err != nil {
				return nil, err
			}
		}
		left = append(left, d, a)
		g.log.Error().Uint64("ingress_seq", it.seq).Str("subject", m.Subject).Int("bytes", size).Int64("max_payload", g.nc.MaxPayload()).
			Str("denied", d.Subject).Msg("an output was refused as too large; its message is denied internal_error instead")
	}
	return left, nil
}

// splitAudit returns audit message m as one message per event, in its
// order, each with m's subject and headers and the Nats-Msg-Id m's
// followed by "." and the event's index: the same ids whenever the same
// message is split, so a re-emission is de-duplicated. nil when m holds
// fewer than two events (or is not an audit message).
func splitAudit(m *nats.Msg) []*nats.Msg {
	if _, err := subjects.ParseAudit(m.Subject); err != nil {
		return nil
	}
	lines := audit.Lines(m.Data)
	if len(lines) < 2 {
		return nil
	}
	id := m.Header.Get(header.MsgID)
	parts := make([]*nats.Msg, len(lines))
	for i, l := range lines {
		p := &nats.Msg{Subject: m.Subject, Header: make(nats.Header, len(m.Header)), Data: l}
		for k, vs := range m.Header {
			p.Header[k] = slices.Clone(vs)
		}
		p.Header.Set(header.MsgID, id+"."+strconv.Itoa(i))
		parts[i] = p
	}
	return parts
}

// withdrawResponse ends the response record of a request whose delivery
// was refused and replaced by its denial d: the request was never
// delivered, so no answer to it may reach its requester, who was told
// it was denied. The record is named by d's tenant, agent and message
// id (responseID); a request whose target takes no responses has none.
func (g *Gateway) withdrawResponse(b *ledgerBatch, it *item, d *nats.Msg) error {
	id := responseID(d.Header.Get(header.Tenant), d.Header.Get(header.Agent), d.Header.Get(header.MessageID))
	fh, ok, err := g.holds.hold(b, id, it.seq)
	if err != nil || !ok || fh.takenBySeq {
		return err
	}
	_, err = g.holds.takeHold(b, id, it.seq)
	return err
}

// recordedReplacement returns the denial, and its audit message, that an
// earlier narrowing of it recorded in place of its refused output m (ids
// m's plus ".refused" and ".refused.audit"), or nothing.
func (g *Gateway) recordedReplacement(b *ledgerBatch, it *item, m *nats.Msg) ([]*nats.Msg, error) {
	rec, found, err := b.Outcome(it.seq)
	if err != nil || !found {
		return nil, err
	}
	outs, err := decodeOutputs(rec, it.body)
	if err != nil {
		return nil, err
	}
	id := m.Header.Get(header.MsgID)
	var own []*nats.Msg
	for _, o := range outs {
		if oid := o.Header.Get(header.MsgID); oid == id+".refused" || oid == id+".refused.audit" {
			own = append(own, o)
		}
	}
	return own, nil
}

func isDenied(subj string) bool {
	_, _, err := subjects.ParseDenied(subj)
	return err == nil
}

func isApproval(subj string) bool {
	_, _, err := subjects.ParseApproval(subj)
	return err == nil
}

// terminal reports whether m is where a message ends: a delivery, an
// approval request, a denied record or a reply (not a notice, nor an
// audit message).
func terminal(m *nats.Msg) bool {
	if _, _, err := subjects.ParseCapability(m.Subject); err == nil {
		return true
	}
	if _, _, err := subjects.ParseReply(m.Subject); err == nil {
		return m.Header.Get(notice.Header) == ""
	}
	return isApproval(m.Subject) || isDenied(m.Subject)
}

// withoutBodyCopy is denied record m without its body (withoutBody), m
// left as it is: it may be shared with the recorded outcome.
func withoutBodyCopy(m *nats.Msg) *nats.Msg {
	c := &nats.Msg{Subject: m.Subject, Header: make(nats.Header, len(m.Header)+2)}
	for k, vs := range m.Header {
		c.Header[k] = slices.Clone(vs)
	}
	if len(m.Data) > 0 || c.Header.Get(header.BodyDigest) == "" {
		withoutBody(c, hexDigest(sha256.Sum256(m.Data)), len(m.Data))
	} else {
		withoutBody(c, c.Header.Get(header.BodyDigest), 0)
		c.Header.Set(header.BodyBytes, m.Header.Get(header.BodyBytes))
	}
	return c
}

// refusedDenial is the denial, internal_error, that stands for m, a
// delivery, approval request or reply of size bytes refused as too large,
// and its audit event's message. Their Nats-Msg-Ids are m's with
// ".refused" and ".refused.audit". The record says whose message it is
// from m's decision headers, and, for an output of it itself, from it;
// for the delivery of a held request an answer released (an output of
// the answer's sequence), from the held request (releasedBy), never
// from the answer.
func (g *Gateway) refusedDenial(it *item, m *nats.Msg, size int, now time.Time) (*nats.Msg, *nats.Msg) {
	h := m.Header
	tenant := h.Get(header.Tenant)
	kind := "reply"
	if t, _, err := subjects.ParseCapability(m.Subject); err == nil {
		tenant, kind = t, "delivery"
	} else if t, _, err := subjects.ParseApproval(m.Subject); err == nil {
		tenant, kind = t, "approval request"
	} else if t, _, err := subjects.ParseReply(m.Subject); err == nil && tenant == "" {
		tenant = t
	}
	if !subjects.ValidToken(tenant) {
		tenant = UnroutableTenant
	}
	subj, _ := subjects.Denied(tenant, reason.Internal) // a valid tenant and a table code
	d := nats.NewMsg(subj)
	for _, k := range []string{header.IngressSeq, header.IngressSubject, header.MessageID, header.TraceID, header.Target,
		header.Tenant, header.Agent, header.Policy, header.PolicyVersion, header.Traceparent} {
		if v := h.Get(k); v != "" {
			d.Header.Set(k, v)
		}
	}
	approver := ""
	if h.Get(header.IngressSeq) == strconv.FormatUint(it.seq, 10) {
		// Its own output: a delivery's headers are few, the item knows
		// the rest.
		set := func(k, v string) {
			if d.Header.Get(k) == "" && v != "" {
				d.Header.Set(k, v)
			}
		}
		src := it
		if it.env != nil && it.env.Capability == envelope.Approve {
			// An answer's own outputs are denied records, not replaced
			// so: this is the delivery of the held request it released,
			// whose capability subject names its tenant and target.
			if tn, tg, err := subjects.ParseCapability(m.Subject); err == nil {
				set(header.Tenant, tn)
				set(header.Target, tg)
			}
			var c *decision.Claims
			src, c = g.releasedBy(it, m)
			if c != nil {
				set(header.Agent, c.Subject)
				set(header.TraceID, c.TraceID)
				approver = c.Act.Approver
			}
			if approver == "" && it.cred != nil {
				approver = it.cred.Subject
			}
		}
		if src != nil {
			set(header.IngressSubject, src.subject)
			if src.refOK {
				set(header.Tenant, src.ref.Tenant)
				set(header.Agent, src.ref.Agent)
			}
			if src.env != nil {
				set(header.MessageID, src.env.MessageID)
				set(header.TraceID, src.env.TraceID)
				set(header.Target, src.env.Target)
			}
		}
	}
	detail := fmt.Sprintf("its %s (%d bytes) was refused as too large by the server or its stream; denied instead", kind, size)
	if approver != "" {
		detail = fmt.Sprintf("its %s (%d bytes), released by approver %s, was refused as too large by the server or its stream; denied instead", kind, size, approver)
	}
	d.Header.Set(header.MsgID, h.Get(header.MsgID)+".refused")
	d.Header.Set(header.Route, string(store.RouteDeny))
	d.Header.Set(header.DecidedAt, now.UTC().Format(time.RFC3339Nano))
	d.Header.Set(header.Reason, string(reason.Internal))
	if info, ok := reason.Lookup(reason.Internal); ok {
		d.Header.Set(header.Stage, string(info.Stage))
	}
	d.Header.Set(header.Detail, headerSafe(detail))
	ev := audit.Event{
		Time: now.UTC(), Kind: audit.KindDecision, Gateway: g.PublicKey(),
		Route: string(store.RouteDeny), Reason: string(reason.Internal), Stage: d.Header.Get(header.Stage), Detail: audit.ClipDetail(detail),
		TraceID: d.Header.Get(header.TraceID), MessageID: d.Header.Get(header.MessageID), Target: d.Header.Get(header.Target),
		Tenant: d.Header.Get(header.Tenant), Agent: d.Header.Get(header.Agent), Output: subj,
	}
	if approver != "" {
		ev.Approver, ev.HeldMessageID = approver, ev.MessageID
	}
	ev.IngressSeq, _ = strconv.ParseUint(d.Header.Get(header.IngressSeq), 10, 64)
	a := nats.NewMsg(auditSubject(tenant))
	a.Data = ev.AppendJSON(make([]byte, 0, 1024))
	a.Header.Set(header.MsgID, h.Get(header.MsgID)+".refused.audit")
	return d, a
}

// releasedBy is the held request whose delivery m, an output of answer
// it, is: decided now, the held item the answer released; re-emitted from
// its recorded outcome (it not decided again), nil, and the claims of m's
// decision token, which the gateway signed for the held request: its
// tenant, agent (sub), trace, target (aud) and approver. The token is
// read only to name whose message m was; it authorizes nothing, so its
// times do not matter. nil claims: m's token does not read, or was
// signed under another gateway key; the record then names what m's
// headers do.
func (g *Gateway) releasedBy(it *item, m *nats.Msg) (*item, *decision.Claims) {
	if it.heldItem != nil {
		return it.heldItem, nil
	}
	doc, err := delivery.Parse(m.Data, len(m.Data))
	if err != nil {
		return nil, nil
	}
	c, err := decision.Issued(doc.Decision, []string{g.PublicKey()})
	if err != nil {
		return nil, nil
	}
	return nil, c
}

// retireUnsentHold removes the hold of approval request m, refused as
// too large, if it is still the pending hold of m's message; ended
// reports that the hold ended otherwise (an answer took it, or it
// expired), which was the message's end.
//
// In a ledger a removal commits with the narrowed outcome, so a hold
// that is gone, or is another message's under the same id, ended
// otherwise. Scaled out the removal comes first, and a hold gone from
// the bucket may be one an earlier attempt removed before its outcome was
// recorded: the message is denied then (fail closed), even though a hold
// that ended long ago and was cleaned up looks the same.
func (g *Gateway) retireUnsentHold(b *ledgerBatch, m *nats.Msg) (ended bool, err error) {
	id := holdID(m.Header.Get(header.Tenant), m.Header.Get(header.MessageID))
	seq, _ := strconv.ParseUint(m.Header.Get(header.IngressSeq), 10, 64)
	if g.kvh != nil {
		h, rev, err := g.kvh.get(holdKey(id))
		switch {
		case errors.Is(err, errBadValue):
			return false, nil
		case err != nil:
			return false, err
		case h == nil || h.Creator != seq:
			return false, nil
		case h.State != kvHeld:
			return true, nil
		}
		ctx, cancel, err := b.kvContext()
		if err != nil {
			return false, err
		}
		defer cancel()
		if err := g.kvh.kv.Delete(ctx, holdKey(id), jetstream.LastRevision(rev)); err != nil {
			return false, fmt.Errorf("gateway: holds: remove %s: %w", id, err)
		}
		return false, nil
	}
	_, v, ok, err := b.Hold(id)
	if err != nil {
		return false, err
	}
	if !ok {
		return true, nil
	}
	var hd held
	if json.Unmarshal(v, &hd) == nil && hd.IngressSeq != seq {
		return true, nil
	}
	// Its own, or one under its id that no longer reads (which nothing
	// else could end).
	return false, b.DeleteHold(id)
}
