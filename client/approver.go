package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// ErrSelfApproval: the approver is the agent that made the request. The
// gateway would deny the answer (self_approval); the SDK refuses to send it.
// The gateway also denies self_approval an answer from another key whose
// credential names the requester's principal (the IdP identity both were
// exchanged for); a request does not show its principal, so that answer
// is sent and denied there.
var ErrSelfApproval = errors.New("client: approver is the requesting agent")

// ApproverConfig is an approver's identity (an agent whose credential
// holds approve:<target> scopes) and how it reads the approval queue.
type ApproverConfig struct {
	AgentConfig

	// Durable names a durable consumer, so requests seen by one Watch are
	// not shown again after a restart. Empty: an ephemeral consumer that
	// starts at the oldest request still in the stream.
	Durable string
	// Bind uses the existing durable named Durable instead of creating it
	// (see ConsumerConfig.Bind).
	Bind bool
	// Stream is the approval stream. Empty: StreamApproval.
	Stream string
	// AckWait is how long a request handed to Watch's function may stay
	// unanswered before it is shown again. Zero: JetStream's default
	// (30 s); negative is invalid.
	AckWait time.Duration
	// TrustedGateways are the public server ('N') keys of the gateways
	// whose approval requests are shown: a request is shown only with a
	// decision token (route approval) that one of them signed over its
	// exact bytes (VerifyRequest). Required.
	TrustedGateways []string
	// Skew is the clock skew tolerated on that token's iat and exp.
	// Zero: DefaultSkew; negative is invalid.
	Skew time.Duration
	// OnReject, if set, is called with the subject and the error of every
	// message Watch terminates without showing it: one that is not a
	// request of this tenant, or whose token does not verify (a
	// *reason.Denial, or an error wrapping one: errors.As). It is also called for a request that Watch hands
	// back on a Durable because its token is not yet valid by this
	// approver's clock, or for want of a key (HandBackUnknownKeys; see
	// Watch). It runs on the watching goroutine: keep it short.
	OnReject func(subject string, err error)
	// HandBackUnknownKeys hands back on a Durable (after two seconds),
	// rather than terminates, a request whose token names a gateway key
	// not among TrustedGateways (ErrUnknownKey), so that the approvers
	// that trust it still see it: for an approver whose keys are not yet
	// updated for a rotation. Off by default: anyone able to publish on
	// the approval queue could then keep forgeries naming a gateway key
	// nobody trusts pending on the shared durable, taking its
	// MaxAckPending slots from the real requests.
	HandBackUnknownKeys bool
}

// Validate reports every problem in c at once.
func (c ApproverConfig) Validate() error {
	err := c.AgentConfig.Validate()
	if c.AckWait < 0 {
		err = errors.Join(err, fmt.Errorf("%w: ack wait %v is negative", ErrConfig, c.AckWait))
	}
	if len(c.TrustedGateways) == 0 {
		err = errors.Join(err, fmt.Errorf("%w: no trusted gateway keys for approval requests", ErrConfig))
	}
	for _, k := range c.TrustedGateways {
		if !subjects.ValidKey(k, 'N') {
			err = errors.Join(err, fmt.Errorf("%w: trusted gateway %.64q is not a server ('N') public key", ErrConfig, identity.SafeText(k)))
		}
	}
	if c.Skew < 0 {
		err = errors.Join(err, fmt.Errorf("%w: skew %v is negative", ErrConfig, c.Skew))
	}
	return err
}

// Approver lists held requests of its tenant and answers them. It is safe
// for concurrent use.
type Approver struct {
	agent *Agent
	js    jetstream.JetStream
	cfg   ApproverConfig
	now   func() time.Time
}

// NewApprover returns an Approver that sends answers through nc and reads
// the approval queue through js. Errors wrap ErrConfig.
func NewApprover(nc *nats.Conn, js jetstream.JetStream, cfg ApproverConfig, opts ...Option) (*Approver, error) {
	if js == nil {
		return nil, fmt.Errorf("%w: nil JetStream", ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a, err := NewAgent(nc, cfg.AgentConfig, opts...)
	if err != nil {
		return nil, err
	}
	if cfg.Stream == "" {
		cfg.Stream = StreamApproval
	}
	return &Approver{agent: a, js: js, cfg: cfg, now: applyOptions(opts).now}, nil
}

// Agent returns the identity the approver answers with.
func (ap *Approver) Agent() *Agent { return ap.agent }

// String returns "client.Approver{<tenant> <public key>}": never the
// credential of its config, which fmt would print from the unexported
// field otherwise.
func (ap Approver) String() string {
	if ap.agent == nil {
		return "client.Approver{}"
	}
	return "client.Approver{" + ap.agent.tenant + " " + ap.agent.pub + "}"
}

// Format prints String for every verb, %#v included.
func (ap Approver) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(ap.String())) }

// GoString returns String.
func (ap Approver) GoString() string { return ap.String() }

// Watch calls fn for each held request of the approver's tenant
// (agentgw.approval.<tenant>.>) until ctx is done, one at a time, oldest
// first. A request is acknowledged when fn returns nil and shown
// again about 2 s later when fn returns an error.
//
// Every message's decision token is checked first (VerifyRequest): at
// this approver's clock, or as of its deadline for a request past it
// (its token expired with it). A message that is not a request of this
// tenant, or whose token does not verify, is terminated and reported to
// OnReject: fn never sees it, and it holds no slot of the consumer's
// MaxAckPending. On a Durable, a request whose token would verify by a
// clock up to 5 minutes ahead of this approver's (issued "in the
// future": this clock runs behind the gateway's by more than Skew) is
// handed back instead, and reported, so that a lagging clock does not
// hide a live request from the others; with HandBackUnknownKeys, so is
// one whose token names a gateway key this approver does not trust.
//
// Requests that verify but that this approver cannot answer are not
// shown: those past their deadline and those made by the approver
// itself. With an ephemeral consumer they are acknowledged. On a
// Durable, which other approvers may bind too, the approver's own
// requests are handed back (shown again to any approver about 2 s
// later), and expired ones are acknowledged only once past their
// deadline by more than 5 minutes, the largest clock skew the gateway
// allows, and handed back until then, so that neither a requester that
// also approves nor a clock running ahead hides a request from the
// others.
//
// Watch returns nil when ctx is done, or an error wrapping ErrStream when
// the consumer cannot be created, disappears, or its connection closes
// for good.
func (ap *Approver) Watch(ctx context.Context, fn func(context.Context, approval.Request) error) error {
	tenant := ap.agent.Tenant()
	cc := jetstream.ConsumerConfig{
		Durable:       ap.cfg.Durable,
		Description:   "agentgw approver " + ap.agent.PublicKey(),
		FilterSubject: subjects.Root + ".approval." + tenant + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ap.cfg.AckWait,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	return consume(ctx, ap.js, ap.cfg.Stream, cc, ap.cfg.Bind, 0, func(ctx context.Context, m jetstream.Msg, _ <-chan struct{}) {
		if ctx.Err() != nil {
			return // left unacknowledged: not shown to an fn whose context is done
		}
		req, err := DecodeRequest(m.Subject(), m.Data(), tenant)
		if err != nil {
			ap.reject(m, err, err.Error())
			return
		}
		// An ephemeral consumer is this approver's alone: what it will
		// not show, no one else will read from it either.
		private := ap.cfg.Durable == ""
		now := ap.now()
		expired := requestExpired(req, now)
		// Every request's token is checked before anything else is
		// decided about it: what is handed back takes a MaxAckPending
		// slot of a shared durable again and again, so a request no
		// trusted gateway signed is terminated, whatever it claims to
		// be. A request past its deadline is checked as of when the
		// gateway decided it (Agentgw-Decided-At, as the CLI reads it;
		// its deadline without one): its token expired with it, and one
		// rebuilt after its hold ended was issued after the deadline.
		// The header only picks the instant: the token must verify then.
		at := now
		if expired {
			at = req.Deadline
			if d, err := time.Parse(time.RFC3339Nano, m.Headers().Get(header.DecidedAt)); err == nil {
				at = d
			}
		}
		tok := m.Headers().Get(decision.Header)
		if err := ap.verifyRequest(tok, m.Data(), req, at, 0); err != nil {
			unknownKey := ap.cfg.HandBackUnknownKeys && errors.Is(err, ErrUnknownKey)
			if !private && (unknownKey || ap.verifyRequest(tok, m.Data(), req, at, expiredAckMargin) == nil) {
				// Issued later than this clock says it is now, by up to
				// expiredAckMargin (any clock up to that far ahead): the
				// clock runs behind the gateway's, and to an approver
				// whose clock is right the request is live. Handed back,
				// as an expired one is, not terminated for everyone. So
				// is one signed by a gateway key this approver was not
				// given, when asked to.
				_ = m.NakWithDelay(redeliverDelay)
				if ap.cfg.OnReject != nil {
					ap.cfg.OnReject(m.Subject(), err)
				}
				return
			}
			ap.reject(m, err, string(reason.Of(err)))
			return
		}
		switch {
		case req.Agent == ap.agent.PublicKey():
			// The shared durable hands it to the other approvers too:
			// consuming it here would hide it from all of them.
			if private {
				_ = m.Ack()
			} else {
				_ = m.NakWithDelay(redeliverDelay)
			}
			return
		case expired:
			// Past the deadline by this clock, which may run ahead of
			// the gateway's and the other approvers': consumed only once
			// past it by more than any skew the gateway allows (it
			// expires the hold itself).
			if past := now.Sub(req.Deadline); private || past > expiredAckMargin {
				_ = m.Ack()
			} else {
				// Handed back for any approver, not held for the whole
				// margin: to one whose clock is right it is still live.
				_ = m.NakWithDelay(redeliverDelay)
			}
			return
		}
		if err := fn(ctx, req); err != nil {
			_ = m.NakWithDelay(redeliverDelay)
			return
		}
		_ = m.Ack()
	})
}

// reject terminates m, never to be shown, and reports it to OnReject.
func (ap *Approver) reject(m jetstream.Msg, err error, why string) {
	_ = m.TermWithReason(why)
	if ap.cfg.OnReject != nil {
		ap.cfg.OnReject(m.Subject(), err)
	}
}

// VerifyRequest checks that a request read from the approval queue (by
// its own reader, or by Watch) is what a trusted gateway published:
// token, the Agentgw-Decision header of the message, and data, its body
// exactly as received. See VerifyRequest (the function) for the checks.
func (ap *Approver) VerifyRequest(token string, data []byte, req approval.Request) error {
	return ap.verifyRequest(token, data, req, ap.now(), 0)
}

// verifyRequest is VerifyRequest at now with the configured skew widened
// by wider.
func (ap *Approver) verifyRequest(token string, data []byte, req approval.Request, now time.Time, wider time.Duration) error {
	skew := ap.cfg.Skew
	if skew == 0 {
		skew = DefaultSkew
	}
	return VerifyRequest(token, data, req, decision.VerifyOptions{TrustedGateways: ap.cfg.TrustedGateways, Now: now, Skew: skew + wider})
}

// VerifyRequest checks the decision token of an approval request: token
// (the message's Agentgw-Decision header) must verify under
// opt.TrustedGateways at opt.Now within opt.Skew, with route approval and
// audience req.Target, and bind data (the request's body exactly as
// received) and the held envelope the request names: its tenant, message
// id, agent, body digest and trace id. opt.Audience is ignored. It
// returns a *reason.Denial (ErrUnknownKey's refusal wraps one: match
// with errors.As or errors.Is): DecisionMissing, DecisionInvalid (route
// included), DecisionExpired, DecisionAudience or DecisionBinding; a
// token from a gateway key not among opt.TrustedGateways is also marked
// ErrUnknownKey.
//
// What it proves: the gateway held that envelope and published exactly
// these fields for it. Someone who can publish on the approval queue but
// does not hold the gateway's key cannot show an approver other fields
// beside a real request's id and digests.
func VerifyRequest(token string, data []byte, req approval.Request, opt decision.VerifyOptions) error {
	opt.Audience = req.Target
	claims, err := verifyDecision(token, opt)
	if err != nil {
		return err
	}
	if claims.Route != decision.RouteApproval {
		return reason.Deny(reason.DecisionInvalid, "jti %s: route %s is not an approval request's", claims.ID, claims.Route)
	}
	if claims.PayloadDigest != decision.Digest(data) {
		return reason.Deny(reason.DecisionBinding, "jti %s does not bind this approval request's bytes", claims.ID)
	}
	if claims.Tenant != req.Tenant || claims.MessageID != req.HeldMessageID || claims.Subject != req.Agent ||
		"sha256:"+claims.BodyDigest != req.BodyDigest || claims.TraceID != req.TraceID {
		return reason.Deny(reason.DecisionBinding, "jti %s names another held envelope than the request", claims.ID)
	}
	return nil
}

const (
	// redeliverDelay is how long a request Watch hands back waits before
	// it is delivered again, so that handing back is not a hot loop.
	redeliverDelay = 2 * time.Second
	// expiredAckMargin is how far past its deadline, by the approver's
	// clock, a request on a shared durable must be before Watch consumes
	// it: the largest clock skew the gateway may be configured with.
	expiredAckMargin = 5 * time.Minute
)

// requestExpired reports whether req is past its deadline at now, as the
// gateway decides it (docs/wire.md, "Approvals"): now is later than the
// deadline to the nanosecond, so an answer at the deadline itself still
// counts; a request without a deadline (the zero time) never expires.
// The TypeScript SDK's requestExpired decides alike.
func requestExpired(req approval.Request, now time.Time) bool {
	return !req.Deadline.IsZero() && now.After(req.Deadline)
}

// DecodeRequest reads an approval request from subject and data, as
// Watch and the TypeScript SDK's decodeRequest read it (docs/wire.md,
// "Approvals"), and checks that it belongs to tenant and names the
// subject's target. Errors name no payload bytes. It does not check the
// request's token: a reader of the queue shows a request only once
// VerifyRequest has passed too.
func DecodeRequest(subject string, data []byte, tenant string) (approval.Request, error) {
	var req approval.Request
	subjTenant, target, err := subjects.ParseApproval(subject)
	if err != nil {
		return req, fmt.Errorf("approval subject: %w", err)
	}
	// Names exactly as written (encoding/json would take a case variant,
	// and the last of two), no duplicates, valid UTF-8 without lone
	// surrogate escapes, members of their types, RFC 3339 times (read to
	// the nanosecond, digits after the ninth dropped), and
	// numbers in fields that a float64 holds (1e400 is refused, not
	// Inf): as the TypeScript approver reads it (docs/wire.md,
	// "Approvals"). Unknown members are ignored. The nesting and number
	// bounds come first: the token is not checked yet, and a decode
	// would build every level of what they refuse.
	if checkRequestJSON(data) != nil {
		return req, errors.New("approval request is not JSON of the request shape")
	}
	if err := jsonv2.Unmarshal(data, &req); err != nil {
		return req, errors.New("approval request is not JSON of the request shape")
	}
	if subjTenant != tenant || req.Tenant != tenant || req.Target != target {
		return req, errors.New("approval request does not match its subject")
	}
	return req, nil
}

// maxRequestDepth bounds the nesting of an approval request, the request
// object being level 1. Its fields come from a payload of at most 32
// levels.
const maxRequestDepth = 64

// checkRequestJSON checks what jsonv2 leaves unbounded in a request, as
// the strict JSON rules bound it: nesting at most maxRequestDepth levels,
// number tokens at most 64 bytes with an exponent of at most 1000.
func checkRequestJSON(data []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.ReadToken()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if dec.StackDepth() > maxRequestDepth {
			return errors.New("approval request nested too deep")
		}
		if tok.Kind() == '0' && !boundedNumber(tok.String()) {
			return errors.New("approval request number out of bounds")
		}
	}
}

// boundedNumber reports whether a valid JSON number token is at most 64
// bytes long with an exponent of at most 1000 in magnitude.
func boundedNumber(n string) bool {
	if len(n) > 64 {
		return false
	}
	i := strings.IndexAny(n, "eE")
	if i < 0 {
		return true
	}
	exp := 0
	for _, c := range strings.TrimLeft(n[i+1:], "+-") {
		if exp = exp*10 + int(c-'0'); exp > 1000 {
			return false
		}
	}
	return true
}

// Grant answers req with a grant. See Answer.
func (ap *Approver) Grant(ctx context.Context, req approval.Request, why string) (*Receipt, error) {
	return ap.Answer(ctx, req, approval.Grant, why)
}

// Deny answers req with a denial. See Answer.
func (ap *Approver) Deny(ctx context.Context, req approval.Request, why string) (*Receipt, error) {
	return ap.Answer(ctx, req, approval.Deny, why)
}

// Answer sends an `approve` envelope whose target is req.HeldMessageID and
// whose plain payload is an approval.Answer carrying decision, why, and
// req's BodyDigest and PolicyVersion unchanged, so the answer binds to
// exactly the bytes and the policy the approver was shown. The envelope
// carries req's trace id (one trace from request to decision) and the
// idempotency key "approve-<held id>", so a repeated answer is reported by
// the gateway as a duplicate and a contradicting one as a conflict.
//
// Errors wrap ErrRequest (req is not of this tenant, lacks its id, digest
// or policy version, or decision is neither grant nor deny),
// ErrSelfApproval, or Send's errors.
func (ap *Approver) Answer(ctx context.Context, req approval.Request, decision, why string) (*Receipt, error) {
	var errs []error
	if decision != approval.Grant && decision != approval.Deny {
		errs = append(errs, fmt.Errorf("decision %.16q is neither grant nor deny", decision))
	}
	if req.Tenant != ap.agent.Tenant() {
		errs = append(errs, fmt.Errorf("request of tenant %.72q, approver of %s", req.Tenant, ap.agent.Tenant()))
	}
	if req.HeldMessageID == "" || req.BodyDigest == "" || req.PolicyVersion == "" {
		errs = append(errs, errors.New("request lacks its held message id, body digest or policy version"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrRequest, errors.Join(errs...))
	}
	if req.Agent == ap.agent.PublicKey() {
		return nil, ErrSelfApproval
	}
	plain, err := json.Marshal(approval.Answer{
		Decision:      decision,
		Reason:        why,
		BodyDigest:    req.BodyDigest,
		PolicyVersion: req.PolicyVersion,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: answer does not encode", ErrRequest)
	}
	traceID := req.TraceID
	if !validTraceID(traceID) {
		traceID = "" // a fresh one rather than an envelope that cannot build
	}
	return ap.agent.Send(ctx, Request{
		Capability:     envelope.Approve,
		Target:         req.HeldMessageID,
		Plain:          json.RawMessage(plain),
		IdempotencyKey: answerKey(req.HeldMessageID),
		TraceID:        traceID,
	})
}

// answerKey is the idempotency key of an answer to held: "approve-<held>",
// or "approve-<sha256 of held>" when that would exceed the 128 characters
// an idempotency key may have.
func answerKey(held string) string {
	if k := "approve-" + held; len(k) <= 128 {
		return k
	}
	sum := sha256.Sum256([]byte(held))
	return "approve-" + hex.EncodeToString(sum[:])
}

// validTraceID reports whether s is a W3C trace-id: 32 lowercase hex, not
// all zero.
func validTraceID(s string) bool {
	if len(s) != 32 || strings.Trim(s, "0") == "" {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}
