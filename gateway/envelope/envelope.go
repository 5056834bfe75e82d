package envelope

import (
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/agentgw/agentgw/subjects/reason"
)

// Version is the wire format version this package reads and writes.
const Version = 1

// SigningContext is prepended to the body bytes before signing, so an
// envelope signature can never be replayed as a signature over some other
// agentgw or NATS structure.
const SigningContext = "agentgw-envelope-v1\n"

// Defaults for freshness (docs/wire.md) and for Builder.
const (
	DefaultMaxTTL = 5 * time.Minute
	DefaultSkew   = 30 * time.Second
	DefaultTTL    = 60 * time.Second
)

// Capability is what an envelope asks the gateway to do with its target.
type Capability string

// The six capabilities of wire format v1.
const (
	Read            Capability = "read"
	Delegate        Capability = "delegate"
	ToolCall        Capability = "tool_call"
	WorkflowCommand Capability = "workflow_command"
	Approve         Capability = "approve"
	Respond         Capability = "respond"
)

// Capabilities lists every valid Capability.
var Capabilities = []Capability{Read, Delegate, ToolCall, WorkflowCommand, Approve, Respond}

// Valid reports whether c is one of the six capabilities.
func (c Capability) Valid() bool {
	switch c {
	case Read, Delegate, ToolCall, WorkflowCommand, Approve, Respond:
		return true
	}
	return false
}

// AnswersMessage reports whether c's target names a message rather than
// a dotted catalog name: a held message id for approve, a request
// reference (RequestRef) for respond.
func (c Capability) AnswersMessage() bool { return c == Approve || c == Respond }

// RequestRef is the target of a respond envelope: the request it
// answers, "<requesting agent's U key>/<request message_id>". A message
// id is unique per agent only (the ledger keys replay by tenant, agent
// and message id), so an id alone could name another agent's request
// sent under the same id.
func RequestRef(agent, messageID string) string { return agent + "/" + messageID }

// ParseRequestRef splits a request reference into the agent key and the
// message id; ok is false unless ref is a user public key (checksum
// included), '/', and a message id.
func ParseRequestRef(ref string) (agent, messageID string, ok bool) {
	if !validRequestRef([]byte(ref)) {
		return "", "", false
	}
	return ref[:userKeyLen], ref[userKeyLen+1:], true
}

// Body is a parsed envelope body. Fields are in wire order (wire-v1.json).
//
// A Body returned by Parse satisfies every field rule of docs/wire.md and
// keeps sub-slices of the bytes it was parsed from (Payload.Plain and the
// payload member used by PayloadDigest): the caller must not modify those
// bytes while the Body is in use. A Body is safe for concurrent reads.
type Body struct {
	V              int        `json:"v"`
	MessageID      string     `json:"message_id"`
	IdempotencyKey string     `json:"idempotency_key"`
	TraceID        string     `json:"trace_id"`
	IssuedAt       time.Time  `json:"issued_at"`
	ExpiresAt      time.Time  `json:"expires_at"`
	Tenant         string     `json:"tenant"`
	Audience       string     `json:"audience"`
	Capability     Capability `json:"capability"`
	Target         string     `json:"target"`
	Payload        Payload    `json:"payload"`

	payloadRaw []byte // exact received bytes of the "payload" member value
}

// Payload is either sealed (Sealed, From and To set) or plain (Plain set),
// never both.
type Payload struct {
	Sealed string          `json:"sealed,omitempty"` // base64url (no padding) nkeys-xkey ciphertext
	From   string          `json:"from,omitempty"`   // sender curve key X...
	To     string          `json:"to,omitempty"`     // recipient curve key X...
	Plain  json.RawMessage `json:"plain,omitempty"`  // exact bytes of a JSON object
}

// IsSealed reports whether the payload carries ciphertext.
func (p Payload) IsSealed() bool { return p.Sealed != "" }

// sealedEncoding rejects padding and non-zero trailing bits, so one
// ciphertext has exactly one encoding.
var sealedEncoding = base64.RawURLEncoding.Strict()

// SealedBytes returns the decoded ciphertext. It returns a *reason.Denial
// with code MalformedEnvelope if Sealed is empty or not canonical
// base64url without padding. For a Body from Parse it cannot fail.
func (p Payload) SealedBytes() ([]byte, error) {
	if p.Sealed == "" {
		return nil, reason.Deny(reason.MalformedEnvelope, "payload is not sealed")
	}
	// The decoder alone would skip CR and LF; the alphabet check does not.
	if !validSealed([]byte(p.Sealed)) {
		return nil, reason.Deny(reason.MalformedEnvelope, "payload.sealed is not canonical base64url without padding")
	}
	b, err := sealedEncoding.DecodeString(p.Sealed)
	if err != nil {
		return nil, reason.Deny(reason.MalformedEnvelope, "payload.sealed is not base64url: %v", err)
	}
	return b, nil
}

// Limits bound what Parse reads, in document units: bytes of the body,
// levels of JSON nesting (the body object is level 1, payload 2, the plain
// object 3), and decoded bytes of any one JSON string. A field that is zero
// or negative takes its default (DefaultLimits). MaxDepth is clamped to
// 1024 so that no configuration makes the scanner's recursion unbounded.
//
// MaxString applies to every member name and string value except
// payload.sealed, which is bounded only by MaxBytes: it is the carrier of
// the payload, and capping it below the body size would make sealed
// payloads smaller than plain ones.
type Limits struct {
	MaxBytes  int
	MaxDepth  int
	MaxString int
}

const maxDepthCap = 1024

// DefaultLimits returns the defaults: 64 KiB body, depth 32, 16 KiB
// strings.
func DefaultLimits() Limits {
	return Limits{MaxBytes: 64 << 10, MaxDepth: 32, MaxString: 16 << 10}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxDepth > maxDepthCap {
		l.MaxDepth = maxDepthCap
	}
	if l.MaxString <= 0 {
		l.MaxString = d.MaxString
	}
	return l
}
