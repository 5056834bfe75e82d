package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// Reply headers set by the gateway (docs/design.md §7).
const (
	headerRequestID = "Agentgw-Request-Id"
	headerResponder = "Agentgw-Responder"
)

// ErrNoReply: no verified reply arrived in time. The request may be held
// for approval, not answered, or denied by a gateway that sends no
// decision notices (notify_senders off; see the denied stream). A denial
// told by a verified notice is a *DeniedError instead.
var ErrNoReply = errors.New("client: no reply")

// Reply is a verified, opened response to one of this agent's requests.
// Payload is the response with the fields the catalog marks sensitive
// already removed by the gateway. RequestID is the id of the request
// SendAndWait sent; MessageID and Claims come from the reply's decision
// token. Responder is the Agentgw-Responder header, which the token does
// not sign: the gateway sets it to the responding consumer's key, but
// anyone who can publish on the agent's reply subject can copy a signed
// reply with another Responder. It names, it does not prove; it is empty
// when the header is not a user key.
type Reply struct {
	RequestID string
	Responder string
	MessageID string // the response envelope's id
	Payload   []byte
	Claims    *decision.Claims
}

// String names the reply and its payload's length, never the payload
// nor its digest: a reply was sealed to the agent, and a logged one, or
// its digest, would let a log's reader read or confirm it.
func (r Reply) String() string {
	return fmt.Sprintf("client.Reply{request_id=%s responder=%s message_id=%s payload=%d bytes}",
		r.RequestID, r.Responder, r.MessageID, len(r.Payload))
}

// Format prints String for every verb.
func (r Reply) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(r.String())) }

// GoString returns the same as String.
func (r Reply) GoString() string { return r.String() }

// MarshalJSON writes what String shows (request_id, responder,
// message_id, payload_bytes), as the TypeScript SDK's Reply.toJSON does:
// a Reply handed to a JSON logger or encoder shows no payload.
func (r Reply) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		RequestID    string `json:"request_id"`
		Responder    string `json:"responder"`
		MessageID    string `json:"message_id"`
		PayloadBytes int    `json:"payload_bytes"`
	}{r.RequestID, r.Responder, r.MessageID, len(r.Payload)})
}

// LogValue is what log/slog records of a Reply: what MarshalJSON writes.
func (r Reply) LogValue() slog.Value {
	return slog.GroupValue(slog.String("request_id", r.RequestID), slog.String("responder", r.Responder),
		slog.String("message_id", r.MessageID), slog.Int("payload_bytes", len(r.Payload)))
}

// WaitOptions say whom to trust for replies and decision notices.
type WaitOptions struct {
	// TrustedGateways are the gateway signing keys (N...) whose reply
	// and notice tokens are accepted. Required.
	TrustedGateways []string
	// Skew is the clock skew tolerated on the iat and exp of reply and
	// notice tokens. Zero means DefaultSkew (30 s), as an absent or 0
	// skewMs does in the TypeScript SDK: it cannot mean "none" here, where
	// zero is also the unset value. Negative is invalid (ErrConfig).
	Skew time.Duration
	// OnDecision, when set, is called by SendAndWait with each verified
	// decision notice of the request (delivered, held for approval or
	// denied) before SendAndWait acts on it: for example to learn that
	// the request is held for approval. It is called on the waiting
	// goroutine and must not block long. WatchDecisions, Await and
	// SendAndDecide do not call it.
	OnDecision func(*Decision)
	// OnReject, when set, is called with the error of each message on
	// the reply subject that names the request awaited (a decision
	// notice of it, or a reply to it) but does not verify, before it is
	// ignored. Its token signed by a gateway key not among
	// TrustedGateways is marked ErrUnknownKey: an agent left out of a
	// rotation of the gateway's key learns so here, where its wait would
	// otherwise only time out. The error is a *reason.Denial, or wraps
	// one (errors.As). It is not authenticated: whoever can publish on
	// the reply subject can make one, naming any key, so never trust a
	// key on its word. Called by SendAndWait, SendAndDecide and Await on
	// the waiting goroutine; it must not block long.
	OnReject func(error)
}

// SendAndWait sends req and waits, until ctx is done, for the reply to
// it on agentgw.reply.<tenant>.<agent>, correlated by message id. The
// agent's waits in flight, SendAndDecide's too, share one subscription
// to that subject, which hands each reply and notice only to the wait of
// the envelope it names. The
// reply's decision token must be signed by a trusted gateway, addressed
// to this agent (sub and aud its key, tenant its tenant), of a response
// to req.Target (scope respond:<target>) and bound to the sealed bytes,
// which must open with the agent's curve key from the gateway's curve
// key. The request id is an unsigned header: a genuine reply to another
// request of this agent to the same target, still fresh, can be taken
// for this one's by whoever can publish on the reply subject; one to
// another target cannot. A plain request waits
// the same way: the agent needs Curve and GatewayXKey to open its reply.
//
// The gateway's decision notices of the request come on the same
// subject; each is verified as Await verifies it (a trusted gateway's
// token, route notice, addressed to this agent, bound to the notice's
// bytes, naming this request) and passed to opt.OnDecision. A verified
// denial of the request ends the wait: SendAndWait returns the receipt
// and a *DeniedError with the reason code. A denial replay_detected or
// replay_refused is the gateway's answer to a copy of the request (its
// bytes re-published, or an operator replay), which carries the
// request's message id: it is skipped, neither handed to OnDecision nor
// ending the wait; so is, once the request was delivered or held, a
// denial message_expired, credential_expired or ledger_incomplete (a
// copy sent late, or after a scaled-out journal was lost). A
// notice that the request was delivered or held for approval does not
// end it: the reply does.
// A notice or reply of the request that does not verify is ignored,
// after opt.OnReject is handed its error; anything else on the subject is
// ignored. Without a reply or a denial in time it returns the receipt
// and ErrNoReply, as it does whenever the gateway sends no notices
// (notify_senders off).
func (a *Agent) SendAndWait(ctx context.Context, req Request, opt WaitOptions) (*Receipt, *Reply, error) {
	if a.box == nil {
		return nil, nil, fmt.Errorf("%w: replies are sealed to the agent, for plain requests as for sealed ones: configure Curve and GatewayXKey", ErrConfig)
	}
	if err := opt.check("replies"); err != nil {
		return nil, nil, err
	}
	if req.NoNotice {
		return nil, nil, fmt.Errorf("%w: NoNotice: SendAndWait learns a denial from its notice", ErrRequest)
	}
	// Wait before sending: the reply cannot arrive unseen.
	w, err := a.wait()
	if err != nil {
		return nil, nil, err
	}
	defer w.close()
	rcpt, err := a.send(ctx, req, w.expect)
	if err != nil {
		return nil, nil, err
	}
	decided := false // the request was delivered or held
	for {
		m, err := w.next(ctx)
		if err != nil {
			return rcpt, nil, fmt.Errorf("%w to %s: %w", ErrNoReply, rcpt.MessageID, err)
		}
		if d := a.noticeOf(m, rcpt.MessageID, opt); d != nil {
			if d.Route == notice.RouteDeny && (copyDenied(d.Reason) || decided && lateCopyDenied(d.Reason)) {
				// The gateway's answer to a copy of the request (one
				// re-published by whoever holds its bytes, or an operator
				// replay of it), which carries its message id: not the
				// request's own outcome.
				continue
			}
			if d.Route == notice.RouteAllow || d.Route == notice.RouteApproval {
				decided = true
			}
			if opt.OnDecision != nil {
				opt.OnDecision(d)
			}
			if d.Route == notice.RouteDeny && d.Answers == "" {
				return rcpt, nil, &DeniedError{MessageID: rcpt.MessageID, Reason: d.Reason}
			}
			continue
		}
		if m.Header.Get(headerRequestID) != rcpt.MessageID {
			continue
		}
		r, err := a.verifyReply(m, req.Target, opt)
		if err != nil {
			if opt.OnReject != nil {
				opt.OnReject(err)
			}
			continue // not from a trusted gateway: not our reply
		}
		r.RequestID = rcpt.MessageID
		return rcpt, r, nil
	}
}

// verifyReply checks a reply's token and binding and opens it: a reply
// of the gateway to this agent (sub and aud its key, its tenant) from a
// responder to target (scope respond:<target>). The Agentgw-Request-Id
// header that picked the request is not signed: the scope keeps a reply
// to another of the agent's requests, of another target, from being
// taken for this one's.
func (a *Agent) verifyReply(m *nats.Msg, target string, opt WaitOptions) (*Reply, error) {
	claims, err := a.verifyToken(m.Header.Get(header.Decision), opt)
	if err != nil {
		return nil, err
	}
	if claims.Route != decision.RouteReply || claims.PayloadDigest != decision.Digest(m.Data) {
		return nil, reason.Deny(reason.DecisionBinding, "reply token does not bind these bytes")
	}
	if claims.Scope != "respond:"+target || claims.Tenant != a.tenant || claims.Subject != a.pub {
		return nil, reason.Deny(reason.DecisionBinding, "jti %s: reply token is not of a response to %s by this agent's tenant and key", claims.ID, target)
	}
	// The gateway seals replies from its curve key (or, mid-rotation,
	// one of ReplyXKeys); TrustedGateways are signing keys and say
	// nothing about who may seal.
	from := m.Header.Get(header.SealedFrom)
	if from == "" || (from != a.cfg.GatewayXKey && !slices.Contains(a.cfg.ReplyXKeys, from)) {
		return nil, reason.Deny(reason.SealMismatch, "reply not sealed by the gateway's curve key")
	}
	plain, err := a.box.Open(m.Data, from)
	if err != nil {
		return nil, err
	}
	// The header is unsigned: kept only when it is what the gateway
	// writes, a user key, so no other text reaches what prints it.
	responder := m.Header.Get(headerResponder)
	if !subjects.ValidKey(responder, 'U') {
		responder = ""
	}
	return &Reply{Responder: responder, MessageID: claims.MessageID, Payload: plain, Claims: claims}, nil
}

// verifyToken checks the decision token of a message on this agent's
// reply subject (a reply's header, a notice document's member): a
// trusted gateway's, addressed to this agent, fresh. What the token must
// bind is the caller's check.
func (a *Agent) verifyToken(token string, opt WaitOptions) (*decision.Claims, error) {
	return verifyDecision(token, decision.VerifyOptions{
		TrustedGateways: opt.TrustedGateways, Audience: a.pub, Now: a.now(), Skew: opt.skew(),
	})
}

// skew is the skew the tokens are verified with: Skew, or DefaultSkew
// for zero. A negative Skew is passed on, and decision.Verify refuses it
// (internal_error): check reports it before anything is sent.
func (o WaitOptions) skew() time.Duration {
	if o.Skew == 0 {
		return DefaultSkew
	}
	return o.Skew
}

// check refuses options that trust no gateway for what (replies,
// decision notices), or a negative Skew.
func (o WaitOptions) check(what string) error {
	if len(o.TrustedGateways) == 0 {
		return fmt.Errorf("%w: no trusted gateway keys for %s", ErrConfig, what)
	}
	if o.Skew < 0 {
		return fmt.Errorf("%w: skew %v is negative", ErrConfig, o.Skew)
	}
	return nil
}

// Respond answers a delivered request as this agent (a capability
// consumer whose credential holds respond:<target>): a respond envelope
// whose target names the request by its agent and message id
// (envelope.RequestRef), in the request's trace, the answer sealed to
// the gateway from this agent's curve key. The gateway takes the answer
// only from the consumer the request was delivered to: this agent's
// curve key must be the target's consumer_xkey (the consumer's Curve),
// or it is denied wrong_responder. answer is a json.RawMessage, []byte
// of JSON, or a value encoding/json encodes as an object.
func (a *Agent) Respond(ctx context.Context, d *Delivery, answer any) (*Receipt, error) {
	var data []byte
	switch v := answer.(type) {
	case json.RawMessage:
		data = v
	case []byte:
		data = v
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%w: answer does not encode", ErrRequest)
		}
		data = b
	}
	if d == nil || d.Envelope == nil {
		return nil, fmt.Errorf("%w: no delivery to answer", ErrRequest)
	}
	return a.Send(ctx, Request{
		Capability: envelope.Respond,
		Target:     envelope.RequestRef(d.Agent, d.Envelope.MessageID),
		Sealed:     data,
		TraceID:    d.Envelope.TraceID,
		// The default idempotency key (the message id): a corrected
		// answer after an invalid one is a new request, not a conflict.
	})
}

// Respond answers a delivery through the consumer's Responder (see
// ConsumerConfig.Responder): one call from a Consume handler.
func (c *Consumer) Respond(ctx context.Context, d *Delivery, answer any) (*Receipt, error) {
	if c.cfg.Responder == nil {
		return nil, fmt.Errorf("%w: ConsumerConfig.Responder is not set", ErrConfig)
	}
	return c.cfg.Responder.Respond(ctx, d, answer)
}

// copyDenied reports whether a denial with code is the gateway's answer
// to a copy of a request rather than to the request: replay_detected and
// replay_refused.
func copyDenied(code reason.Code) bool {
	return code == reason.ReplayDetected || code == reason.ReplayRefused
}

// lateCopyDenied reports whether a denial with code, once the request
// was delivered or held, can only be a copy's: message_expired,
// credential_expired or ledger_incomplete. A copy sent after the request
// went stale, or after its credential expired, is refused so before its
// replay is looked up, and one sent after its partition's journal was
// lost is refused ledger_incomplete in place of replay_detected; a
// delivered request is not decided again, and a held one ends approved,
// denied, expired (approval_expired) or withdrawn, whatever its own
// times.
func lateCopyDenied(code reason.Code) bool {
	return code == reason.MessageExpired || code == reason.CredentialExpired || code == reason.LedgerIncomplete
}
