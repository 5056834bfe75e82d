package client

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/delivery"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// DefaultSkew is the clock skew DefaultConsumerConfig tolerates on a
// decision token's iat and exp.
const DefaultSkew = 30 * time.Second

// VerifyOptions say what a capability consumer trusts and serves.
type VerifyOptions struct {
	// Tenant is the tenant whose capability subjects are read. Required.
	Tenant string
	// Targets are the targets this consumer serves. A message must arrive
	// on agentgw.cap.<Tenant>.<target> for one of them, and its token's
	// audience must be that target. Required.
	Targets []string
	// TrustedGateways are the public server ('N') keys of the gateways
	// whose decision tokens are accepted. Required.
	TrustedGateways []string
	// Curve is the consumer's curve key that re-sealed payloads are
	// sealed to. Nil: only plain deliveries verify.
	Curve *identity.Box
	// GatewayXKeys, when set, are the only sealed_from keys
	// accepted. Empty: any sender; the box authenticates its sender and
	// the token binds the sealed bytes, so only the gateway's re-seal
	// verifies anyway.
	GatewayXKeys []string
	// VerifyAgentSignature also checks the agent's own signature
	// (the delivery's signature) over the body with the token's subject key, for
	// a consumer that wants end-to-end proof of the agent's words.
	VerifyAgentSignature bool
	// Now is the verification instant. The zero Time means time.Now().
	Now time.Time
	// Skew is the clock skew tolerated on the token's iat and exp. Zero
	// means none (DefaultConsumerConfig sets DefaultSkew), as an absent or
	// 0 skewMs does in the TypeScript SDK's VerifyOptions; negative fails
	// every message (internal_error).
	Skew time.Duration
	// Limits bound the envelope body. Zero fields take envelope's
	// defaults; set them to the gateway's limits if it allows more.
	Limits envelope.Limits
}

// Delivery is a message that passed VerifyDelivery. Its printed forms
// show ids and a payload digest only, never the payload.
type Delivery struct {
	// Envelope is the parsed original body: ids, capability, target. Its
	// Payload is the agent's payload to the gateway (sealed to the
	// gateway, or plain); use Delivery.Payload instead.
	Envelope *envelope.Body
	// Body is the exact original envelope bytes, signed by the agent.
	Body []byte
	// Payload is what the consumer acts on: the re-sealed payload opened
	// with the consumer's curve key, or the envelope's plain object.
	Payload []byte
	// Sealed reports whether Payload arrived re-sealed to the consumer.
	Sealed bool
	// Claims are the verified decision token's claims.
	Claims *decision.Claims
	// Agent is the requesting agent's public key (the token's subject).
	Agent string
	// Subject is the capability subject the message arrived on.
	Subject string
	// Target is the target of that subject and the token's audience.
	Target string
}

// String returns ids and the payload's length, never its bytes nor
// their digest: a sealed payload's plaintext digest would let a log's
// reader confirm a guess at it (an amount, a yes or no).
func (d Delivery) String() string {
	return fmt.Sprintf("client.Delivery{subject=%s message_id=%s agent=%s payload=%d bytes}",
		d.Subject, d.messageID(), d.Agent, len(d.Payload))
}

func (d Delivery) messageID() string {
	if d.Envelope == nil {
		return ""
	}
	return d.Envelope.MessageID
}

// Format prints String for every verb, of a Delivery as of a pointer to
// one.
func (d Delivery) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(d.String())) }

// GoString returns the same as String.
func (d Delivery) GoString() string { return d.String() }

// MarshalJSON writes what String shows (subject, message_id, agent,
// payload_bytes), as the TypeScript SDK's Delivery.toJSON does: a
// Delivery handed to a JSON logger or encoder shows no payload.
func (d Delivery) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Subject      string `json:"subject"`
		MessageID    string `json:"message_id"`
		Agent        string `json:"agent"`
		PayloadBytes int    `json:"payload_bytes"`
	}{d.Subject, d.messageID(), d.Agent, len(d.Payload)})
}

// LogValue is what log/slog records of a Delivery: what MarshalJSON
// writes.
func (d Delivery) LogValue() slog.Value {
	return slog.GroupValue(slog.String("subject", d.Subject), slog.String("message_id", d.messageID()),
		slog.String("agent", d.Agent), slog.Int("payload_bytes", len(d.Payload)))
}

// ErrUnknownKey marks (errors.Is) a VerifyDelivery or VerifyRequest
// refusal, or one an agent's wait passes to WaitOptions.OnReject, that a
// reader with other keys may lift: the token names a
// gateway not among TrustedGateways (DecisionInvalid), or (deliveries)
// the re-sealed payload is from a
// curve key not among GatewayXKeys, is sealed and there is no Curve, or
// does not open with Curve (SealBroken: its bytes are bound by the
// verified token, the sender key named beside them, sealed_from, is
// not). It proves nothing either way: the message may as well be a
// forgery (another token's issuer, a genuine delivery re-published with
// sealed_from changed), and is refused.
var ErrUnknownKey = errors.New("client: a key this verifier is not configured with")

// verifyDecision is decision.Verify with its refusal of a gateway key
// not among opt.TrustedGateways marked ErrUnknownKey: every token the
// SDK checks (deliveries, approval requests, replies, notices) goes
// through it.
func verifyDecision(token string, opt decision.VerifyOptions) (*decision.Claims, error) {
	claims, err := decision.Verify(token, opt)
	if errors.Is(err, decision.ErrUntrustedGateway) {
		return nil, reason.Mark(err, ErrUnknownKey)
	}
	return claims, err
}

// VerifyDelivery checks one message from a capability subject, given its
// subject, headers and data exactly as received, and returns what a
// handler may act on. Nothing in the message is trusted before the token
// verifies. It returns a *reason.Denial, or, for the refusals marked
// ErrUnknownKey below, an error wrapping one (errors.As finds it):
//
//   - InvalidSubject: subject is not agentgw.cap.<Tenant>.<target> for
//     one of Targets.
//   - DecisionMissing: data is not a delivery (package delivery) with a
//     decision token.
//   - DecisionInvalid: the token is malformed, not signed by one of
//     TrustedGateways, not an allow decision, or issued in the future.
//   - DecisionExpired: the token is expired (beyond Skew).
//   - DecisionAudience: the token is for another target or tenant.
//   - DecisionBinding: the body or the payload are not the bytes the
//     token binds, or the token and the body (or Agentgw-Agent) disagree
//     on message id, trace id, tenant, target or agent.
//   - MalformedEnvelope (or Oversized, UnsupportedVersion): the bound
//     body does not parse, which only a broken gateway can cause.
//   - SealBroken: the re-sealed payload is not canonical base64url (CR
//     and LF included), is not from an
//     accepted gateway key, does not open with Curve, or is missing for
//     an envelope whose own payload is sealed.
//   - BadSignature: with VerifyAgentSignature, the agent's signature
//     does not verify.
//
// The checks run in that order, so a message with several faults is
// reported by the first. Denial details never contain payload bytes.
// Refusals for a key this side lacks are also marked ErrUnknownKey.
func VerifyDelivery(subject string, hdr nats.Header, data []byte, opt VerifyOptions) (*Delivery, error) {
	tenant, target, err := subjects.ParseCapability(subject)
	if err != nil {
		return nil, err
	}
	if tenant != opt.Tenant || !slices.Contains(opt.Targets, target) {
		return nil, reason.Deny(reason.InvalidSubject, "subject %.128s is not one this consumer serves", subject)
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	maxBody := opt.Limits.MaxBytes
	if maxBody <= 0 {
		maxBody = envelope.DefaultLimits().MaxBytes
	}
	// The envelope, a re-sealed copy of its payload (base64) and a token.
	doc, err := delivery.Parse(data, 3*maxBody+64<<10)
	if err != nil {
		return nil, reason.Deny(reason.DecisionMissing, "no decision token: %v", err)
	}
	claims, err := verifyDecision(doc.Decision, decision.VerifyOptions{
		TrustedGateways: opt.TrustedGateways, Audience: target, Now: now, Skew: opt.Skew,
	})
	if err != nil {
		return nil, err
	}
	if claims.Route != decision.RouteAllow {
		return nil, reason.Deny(reason.DecisionInvalid, "jti %s: route %s on a capability subject", claims.ID, claims.Route)
	}
	if claims.Tenant != tenant {
		return nil, reason.Deny(reason.DecisionAudience, "jti %s is for tenant %s, not %s", claims.ID, claims.Tenant, tenant)
	}
	// The body digest first, so an altered body is reported as such and
	// not as whatever parse error the alteration causes.
	data = doc.Envelope
	if decision.Digest(data) != claims.BodyDigest {
		return nil, reason.Deny(reason.DecisionBinding, "jti %s: envelope body digest %s does not match", claims.ID, decision.Digest(data))
	}
	env, err := envelope.Parse(data, opt.Limits)
	if err != nil {
		return nil, err
	}
	d := &Delivery{Envelope: env, Body: data, Claims: claims, Agent: claims.Subject, Subject: subject, Target: target}

	var resealed []byte
	if s := doc.Sealed; s != "" {
		if resealed, err = decodeB64url(s); err != nil {
			return nil, reason.Deny(reason.SealBroken, "jti %s: the re-sealed payload is not base64url", claims.ID)
		}
		d.Sealed = true
	} else if env.Payload.IsSealed() {
		return nil, reason.Deny(reason.SealBroken, "jti %s: envelope payload is sealed to the gateway and no re-sealed payload came with it", claims.ID)
	}
	bound := resealed
	if !d.Sealed {
		bound = env.Payload.Plain
	}
	if err := claims.CheckBinding(data, bound); err != nil {
		return nil, err
	}
	if err := checkAgreement(claims, env, hdr); err != nil {
		return nil, err
	}

	if d.Sealed {
		if d.Payload, err = openResealed(claims, resealed, doc.SealedFrom, opt); err != nil {
			return nil, err
		}
	} else {
		d.Payload = env.Payload.Plain
	}
	if opt.VerifyAgentSignature {
		raw, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(claims.Subject))
		if err != nil {
			return nil, reason.Deny(reason.BadSignature, "jti %s: subject is not a user key", claims.ID)
		}
		if err := envelope.Verify(ed25519.PublicKey(raw), data, doc.Signature); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// checkAgreement checks that the token and the body it binds describe
// the same message. The body digest already ties them; a disagreement
// means a gateway signed inconsistent claims.
func checkAgreement(c *decision.Claims, env *envelope.Body, hdr nats.Header) error {
	switch {
	case c.MessageID != env.MessageID:
		return reason.Deny(reason.DecisionBinding, "jti %s: message id differs from the body's", c.ID)
	case c.TraceID != env.TraceID:
		return reason.Deny(reason.DecisionBinding, "jti %s: trace id differs from the body's", c.ID)
	case c.Tenant != env.Tenant:
		return reason.Deny(reason.DecisionBinding, "jti %s: tenant differs from the body's", c.ID)
	case c.Audience != env.Target:
		return reason.Deny(reason.DecisionBinding, "jti %s: audience differs from the body's target", c.ID)
	}
	if a := hdr.Get(header.Agent); a != "" && a != c.Subject {
		return reason.Deny(reason.DecisionBinding, "jti %s: %s differs from the token's subject", c.ID, header.Agent)
	}
	return nil
}

func openResealed(c *decision.Claims, resealed []byte, from string, opt VerifyOptions) ([]byte, error) {
	if len(opt.GatewayXKeys) > 0 && !slices.Contains(opt.GatewayXKeys, from) {
		return nil, reason.Mark(reason.Deny(reason.SealBroken, "jti %s: re-sealed payload is not from an accepted gateway curve key", c.ID), ErrUnknownKey)
	}
	if opt.Curve == nil {
		return nil, reason.Mark(reason.Deny(reason.SealBroken, "jti %s: re-sealed payload but this consumer has no curve key", c.ID), ErrUnknownKey)
	}
	p, err := opt.Curve.Open(resealed, from)
	if err != nil {
		// Open says SealMismatch for an unusable sender key: to the
		// consumer, either way the payload does not open. The token
		// binds these bytes but not sealed_from: a key differs, the
		// consumer's or the one named as sender.
		return nil, reason.Mark(reason.Deny(reason.SealBroken, "jti %s: re-sealed payload does not open (%s)", c.ID, reason.Of(err)), ErrUnknownKey)
	}
	return p, nil
}

// strictB64url reads canonical base64url without padding: no padding, no stray
// bits (Strict) and, checked first, nothing outside the alphabet, since
// the decoder alone skips CR and LF. One byte string has one encoding.
var strictB64url = base64.RawURLEncoding.Strict()

func decodeB64url(s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return nil, fmt.Errorf("client: byte %d is not in the base64url alphabet", i)
		}
	}
	return strictB64url.DecodeString(s)
}
