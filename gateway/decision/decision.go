package decision

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects/reason"
	"github.com/go-json-experiment/json"
	"github.com/nats-io/nkeys"
)

// Header is the NATS header that carries the decision token of a reply
// and of an approval request (deliveries and notices carry theirs in
// their body).
const Header = "Agentgw-Decision"

// Type is the claim type (nats.type) of a decision token.
const Type = "agentgw-decision"

// Routes.
const (
	RouteAllow = "allow" // forwarded to a capability subject
	RouteReply = "reply" // a response forwarded to the requesting agent
	// RouteNotice binds a decision notice (package notice) on the
	// sender's reply subject: it authorizes nothing.
	RouteNotice = "notice"
	// RouteApproval binds an approval request on the approval queue to
	// the held envelope: it shows approvers what the gateway held and
	// authorizes nothing.
	RouteApproval = "approval"
)

// version is nats.version: jwt/v2's claim layout version.
const version = 2

// Actor says who asked through whom.
type Actor struct {
	Subject  string `json:"sub"`                // the agent's public 'U' key
	Via      string `json:"via"`                // the gateway's public 'N' key
	Approver string `json:"approver,omitempty"` // the approver's 'U' key, for a released approval
}

// Claims are a decision token's claims. Times are UTC at second precision.
type Claims struct {
	ID            string    // jti; Sign draws 128 random bits when empty
	Issuer        string    // iss: the gateway's public 'N' key; Sign sets it
	Subject       string    // sub: the agent's public 'U' key
	Audience      string    // aud: the target (or, for a reply, the agent)
	IssuedAt      time.Time // iat
	Expires       time.Time // exp: keep it short
	Tenant        string
	Scope         string   // the one scope the message used
	Act           Actor    // Sign fills Subject and Via when empty
	TraceID       string   // 32 lowercase hex, not all zero
	MessageID     string   // 16–128 of [A-Za-z0-9._:-]
	BodyDigest    string   // Digest of the original envelope body
	PayloadDigest string   // Digest of the payload bytes the consumer receives
	PolicyIDs     []string // may be empty
	PolicyVersion string   // may be empty
	Route         string   // RouteAllow, RouteReply, RouteNotice or RouteApproval
}

// Digest returns the lowercase hex SHA-256 of b: the form of BodyDigest
// and PayloadDigest.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ErrInvalidClaims is returned (wrapped with every problem) by Sign.
var ErrInvalidClaims = errors.New("decision: invalid claims")

type wire struct {
	Audience string   `json:"aud"`
	Expires  int64    `json:"exp"`
	ID       string   `json:"jti"`
	IssuedAt int64    `json:"iat"`
	Issuer   string   `json:"iss"`
	Subject  string   `json:"sub"`
	Nats     wireNats `json:"nats"`
}

type wireNats struct {
	Act           Actor    `json:"act"`
	BodyDigest    string   `json:"body_digest"`
	MessageID     string   `json:"message_id"`
	PayloadDigest string   `json:"payload_digest"`
	PolicyIDs     []string `json:"policy_ids"`
	PolicyVersion string   `json:"policy_version"`
	Route         string   `json:"route"`
	Scope         string   `json:"scope"`
	Tenant        string   `json:"tenant"`
	TraceID       string   `json:"trace_id"`
	Type          string   `json:"type"`
	Version       int      `json:"version"`
}

var jtiEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// Sign returns the decision token for c signed by s, which must hold the
// gateway's server ('N') key: a batch of one (see Prepare and SignBatch
// for many). It sets Issuer to the signer's key, fills an empty ID with
// 128 random bits and an empty Act.Subject / Act.Via with Subject /
// Issuer, then checks every claim rule (see Verify). Errors wrap
// ErrInvalidClaims or identity.ErrKey.
func Sign(s *identity.Signer, c Claims) (identity.Token, error) {
	p, err := Prepare(s, c)
	if err != nil {
		return "", err
	}
	toks, err := SignBatch(s, []*Pending{p})
	if err != nil {
		return "", err
	}
	return toks[0], nil
}

// appendClaims completes and checks c and appends its JSON to b.
func appendClaims(b []byte, s *identity.Signer, c Claims) ([]byte, error) {
	if s == nil || s.Prefix() != nkeys.PrefixByteServer {
		return nil, fmt.Errorf("%w: decision tokens are signed by a gateway ('N') key", identity.ErrKey)
	}
	c.Issuer = s.PublicKey()
	if c.ID == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("decision: jti: %w", err)
		}
		c.ID = jtiEncoding.EncodeToString(b[:])
	}
	if c.Act.Subject == "" {
		c.Act.Subject = c.Subject
	}
	if c.Act.Via == "" {
		c.Act.Via = c.Issuer
	}
	w := wire{
		Audience: c.Audience,
		Expires:  c.Expires.Unix(),
		ID:       c.ID,
		IssuedAt: c.IssuedAt.Unix(),
		Issuer:   c.Issuer,
		Subject:  c.Subject,
		Nats: wireNats{
			Act:           c.Act,
			BodyDigest:    c.BodyDigest,
			MessageID:     c.MessageID,
			PayloadDigest: c.PayloadDigest,
			PolicyIDs:     c.PolicyIDs,
			PolicyVersion: c.PolicyVersion,
			Route:         c.Route,
			Scope:         c.Scope,
			Tenant:        c.Tenant,
			TraceID:       c.TraceID,
			Type:          Type,
			Version:       version,
		},
	}
	if c.IssuedAt.IsZero() || c.Expires.IsZero() {
		return nil, fmt.Errorf("%w: iat and exp are required", ErrInvalidClaims)
	}
	if p := check(&w); len(p) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidClaims, errors.Join(p...))
	}
	if !w.plain() {
		payload, err := json.Marshal(&w) // escaping needed: rare
		if err != nil {
			return nil, fmt.Errorf("decision: sign: %w", err)
		}
		return append(b, payload...), nil
	}
	return w.appendJSON(b), nil
}

// plain reports whether every string of w is printable ASCII without a
// quote or backslash: what appendJSON can write without escaping.
func (w *wire) plain() bool {
	n := &w.Nats
	for _, s := range [...]string{w.Audience, w.ID, w.Issuer, w.Subject, n.Act.Subject, n.Act.Via, n.Act.Approver,
		n.BodyDigest, n.MessageID, n.PayloadDigest, n.PolicyVersion, n.Route, n.Scope, n.Tenant, n.TraceID, n.Type} {
		if !plainString(s) {
			return false
		}
	}
	for _, s := range n.PolicyIDs {
		if !plainString(s) {
			return false
		}
	}
	return true
}

func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			return false
		}
	}
	return true
}

// appendJSON appends w, which must be plain, as json.Marshal(&w) would
// write it (the same
// members in the same order, TestAppendJSONMatchesMarshal), without
// reflection: encoding the claims was a tenth of the gateway's decide.
func (w *wire) appendJSON(b []byte) []byte {
	b = append(b, `{"aud":`...)
	b = appendJSONString(b, w.Audience)
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, w.Expires, 10)
	b = append(b, `,"jti":`...)
	b = appendJSONString(b, w.ID)
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, w.IssuedAt, 10)
	b = append(b, `,"iss":`...)
	b = appendJSONString(b, w.Issuer)
	b = append(b, `,"sub":`...)
	b = appendJSONString(b, w.Subject)
	n := &w.Nats
	b = append(b, `,"nats":{"act":{"sub":`...)
	b = appendJSONString(b, n.Act.Subject)
	b = append(b, `,"via":`...)
	b = appendJSONString(b, n.Act.Via)
	if n.Act.Approver != "" {
		b = append(b, `,"approver":`...)
		b = appendJSONString(b, n.Act.Approver)
	}
	b = append(b, `},"body_digest":`...)
	b = appendJSONString(b, n.BodyDigest)
	b = append(b, `,"message_id":`...)
	b = appendJSONString(b, n.MessageID)
	b = append(b, `,"payload_digest":`...)
	b = appendJSONString(b, n.PayloadDigest)
	b = append(b, `,"policy_ids":[`...)
	for i, id := range n.PolicyIDs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, id)
	}
	b = append(b, `],"policy_version":`...)
	b = appendJSONString(b, n.PolicyVersion)
	b = append(b, `,"route":`...)
	b = appendJSONString(b, n.Route)
	b = append(b, `,"scope":`...)
	b = appendJSONString(b, n.Scope)
	b = append(b, `,"tenant":`...)
	b = appendJSONString(b, n.Tenant)
	b = append(b, `,"trace_id":`...)
	b = appendJSONString(b, n.TraceID)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, n.Type)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(n.Version), 10)
	return append(b, "}}"...)
}

// appendJSONString appends s, which must be plain (plainString), as a
// JSON string.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// VerifyOptions say what a consumer trusts and expects.
type VerifyOptions struct {
	// TrustedGateways are the public 'N' keys of the gateways whose tokens
	// are accepted. Empty trusts none.
	TrustedGateways []string
	// Audience is this consumer's target; the token's aud must equal it.
	Audience string
	// Now is the verification instant; the zero Time is refused.
	Now time.Time
	// Skew is the clock skew tolerated on exp and iat; zero means none.
	// Negative is refused (Internal), as the TypeScript SDK refuses it.
	Skew time.Duration
}

// Verify checks a decision token and returns its claims, or a
// *reason.Denial:
//
//   - DecisionMissing: the token is empty.
//   - DecisionInvalid: not a four-part decision token with the exact
//     header (see batch.go), canonical base64url and a well-formed Merkle
//     proof; claims that are not strict JSON of the decision shape (no
//     unknown or duplicate members); type not agentgw-decision or version
//     not 2; any claim rule broken (see Sign); iss not one of
//     TrustedGateways; a batch signature that does not verify over the
//     root the proof leads to; or iat later than Now + Skew. The
//     refusal for iss is also marked ErrUntrustedGateway.
//   - DecisionExpired: Now > exp + Skew.
//   - DecisionAudience: aud is not Audience (or Audience is empty).
//   - Internal: Now is the zero Time (no clock: fail closed), or Skew
//     is negative.
//
// Binding to the message bytes is a separate step: Claims.CheckBinding.
func Verify(token string, opt VerifyOptions) (*Claims, error) {
	if token == "" {
		return nil, reason.Deny(reason.DecisionMissing, "no decision token")
	}
	if opt.Now.IsZero() {
		return nil, reason.Deny(reason.Internal, "decision: verify without a clock")
	}
	if opt.Skew < 0 {
		return nil, reason.Deny(reason.Internal, "decision: negative skew %v", opt.Skew)
	}
	w, err := signed(token, opt.TrustedGateways)
	if err != nil {
		return nil, err
	}
	iat, exp := time.Unix(w.IssuedAt, 0).UTC(), time.Unix(w.Expires, 0).UTC()
	if opt.Now.Add(opt.Skew).Before(iat) {
		return nil, reason.Deny(reason.DecisionInvalid, "jti %s issued in the future (%s)", w.ID, iat.Format(time.RFC3339))
	}
	if opt.Now.After(exp.Add(opt.Skew)) {
		return nil, reason.Deny(reason.DecisionExpired, "jti %s expired at %s", w.ID, exp.Format(time.RFC3339))
	}
	if opt.Audience == "" || w.Audience != opt.Audience {
		return nil, reason.Deny(reason.DecisionAudience, "jti %s is for %s, not this consumer", w.ID, w.Audience)
	}
	return w.claims(), nil
}

// ErrUntrustedGateway marks (errors.Is) a Verify or Issued refusal of a
// token whose issuer is not one of the trusted keys. Its code stays
// DecisionInvalid. The check runs before the signature's, so the
// token may be a forgery as well as one from a gateway key the caller
// was not given: either way it proves nothing, but only the caller's
// keys, not the token, may be at fault.
var ErrUntrustedGateway = errors.New("decision token from a gateway key not trusted here")

// Issued returns the claims of token if it is of the decision form and
// one of issuers signed it, without judging its times or audience: for a
// gateway reading back a token it issued itself, to say whose message an
// output it recorded was. Never for deciding whether to act on a
// message: that is Verify. Its errors are Verify's DecisionMissing and
// DecisionInvalid.
func Issued(token string, issuers []string) (*Claims, error) {
	if token == "" {
		return nil, reason.Deny(reason.DecisionMissing, "no decision token")
	}
	w, err := signed(token, issuers)
	if err != nil {
		return nil, err
	}
	return w.claims(), nil
}

// signed checks token's form, its claims' rules and its signature by
// one of trusted, and returns its claims (a *reason.Denial
// DecisionInvalid otherwise).
func signed(token string, trusted []string) (*wire, error) {
	t, err := parseToken(token)
	if err != nil {
		return nil, reason.Deny(reason.DecisionInvalid, "%v", err)
	}
	var w wire
	if err := json.Unmarshal(t.payload, &w, json.RejectUnknownMembers(true)); err != nil {
		return nil, reason.Deny(reason.DecisionInvalid, "claims are not strict JSON of the decision shape")
	}
	if p := check(&w); len(p) > 0 {
		return nil, reason.Deny(reason.DecisionInvalid, "%v", p[0])
	}
	if !slices.Contains(trusted, w.Issuer) {
		return nil, reason.Mark(reason.Deny(reason.DecisionInvalid, "jti %s: gateway %s is not trusted", w.ID, w.Issuer), ErrUntrustedGateway)
	}
	if !verifyRoot(w.Issuer, t.size, t.root, t.sig) {
		return nil, reason.Deny(reason.DecisionInvalid, "jti %s: signature does not verify with gateway %s", w.ID, w.Issuer)
	}
	return &w, nil
}

func (w *wire) claims() *Claims {
	n := &w.Nats
	return &Claims{
		ID: w.ID, Issuer: w.Issuer, Subject: w.Subject, Audience: w.Audience,
		IssuedAt: time.Unix(w.IssuedAt, 0).UTC(), Expires: time.Unix(w.Expires, 0).UTC(),
		Tenant: n.Tenant, Scope: n.Scope, Act: n.Act, TraceID: n.TraceID, MessageID: n.MessageID,
		BodyDigest: n.BodyDigest, PayloadDigest: n.PayloadDigest,
		PolicyIDs: n.PolicyIDs, PolicyVersion: n.PolicyVersion, Route: n.Route,
	}
}

// CheckBinding returns a *reason.Denial DecisionBinding unless body
// hashes to BodyDigest and payload to PayloadDigest, exactly.
func (c *Claims) CheckBinding(body, payload []byte) error {
	if c == nil {
		return reason.Deny(reason.DecisionBinding, "no decision claims")
	}
	if !digestEqual(body, c.BodyDigest) {
		return reason.Deny(reason.DecisionBinding, "jti %s: envelope body digest %s does not match", c.ID, Digest(body))
	}
	if !digestEqual(payload, c.PayloadDigest) {
		return reason.Deny(reason.DecisionBinding, "jti %s: payload digest %s does not match", c.ID, Digest(payload))
	}
	return nil
}

func digestEqual(b []byte, want string) bool {
	sum := sha256.Sum256(b)
	var got [2 * sha256.Size]byte
	hex.Encode(got[:], sum[:])
	return subtle.ConstantTimeCompare(got[:], []byte(want)) == 1
}
