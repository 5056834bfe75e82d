// Package protocol is the wire format of agentgw's token exchange (RFC 8693
// semantics over a NATS request): the request body an agent signs, the
// exact bytes its signature covers, the response and the error body.
//
// It is shared by the service (package exchange) and the SDK (package
// client) so the two cannot drift. It knows nothing of NATS connections,
// OIDC or the mapping rules.
package protocol

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/subjects"
)

// Version is the request's "v". Version 1 had no xkey_proof and is
// refused.
const Version = 2

// DefaultSubject is the NATS subject the exchange service listens on.
const DefaultSubject = "agentgw.exchange"

// SignatureHeader carries the proof of possession: base64url (no padding)
// Ed25519 signature by the agent's user nkey over SigningInput(body).
const SignatureHeader = "Agentgw-Signature"

// RFC 8693 identifiers.
const (
	GrantType        = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeJWT     = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeAccess  = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeID      = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeAgentgw = "urn:agentgw:params:oauth:token-type:credential"
	// TokenTypeNA is the RFC 8693 token_type of a token that is not an
	// OAuth access token.
	TokenTypeNA = "N_A"
)

// Bounds.
const (
	MaxBodyBytes    = 32 << 10
	MaxSubjectToken = 16 << 10
	maxScopeText    = 4096
)

// signingPrefix domain-separates exchange proofs from envelope signatures
// ("agentgw-envelope-v1\n") and from anything else an agent key signs.
const signingPrefix = "agentgw-exchange-v1\n"

// xkeyProofPrefix domain-separates the xkey proof's plaintext. It is
// not JSON, so no payload the gateway seals (it seals strict JSON, and
// credentials to itself under "agentgw-credential-v1\n") can
// serve as a proof: the box key is the same for both directions.
const xkeyProofPrefix = "agentgw-exchange-xkey-v1\n"

// xkeyProofOverhead is what sealing adds to a plaintext: "xkv1", the
// 24-byte nonce and the 16-byte tag.
const xkeyProofOverhead = len(nkeys.XKeyVersionV1) + 24 + 16

// maxXKeyProofText bounds xkey_proof's text: the sealed proof of the
// longest request id, in base64url.
var maxXKeyProofText = base64.RawURLEncoding.EncodedLen(len(xkeyProofPrefix) + 56 + 1 + 128 + xkeyProofOverhead)

// SigningInput returns the exact bytes the proof signature covers: the
// domain prefix followed by the body bytes as sent.
func SigningInput(body []byte) []byte {
	out := make([]byte, 0, len(signingPrefix)+len(body))
	return append(append(out, signingPrefix...), body...)
}

// Request is the body of an exchange request. SubjectToken is a secret:
// Request's printed forms redact it.
type Request struct {
	V                  int    `json:"v"`
	GrantType          string `json:"grant_type"`
	SubjectToken       string `json:"subject_token"`
	SubjectTokenType   string `json:"subject_token_type"`
	RequestedTokenType string `json:"requested_token_type,omitempty"`
	// Audience is the gateway audience the credential is for.
	Audience string `json:"audience"`
	// Tenant is optional: empty lets the IdP's tenant rule decide; set,
	// it must equal what the rule decides.
	Tenant string `json:"tenant,omitempty"`
	// Scope is optional: space-separated scopes (RFC 6749 §3.3). Empty
	// asks for everything the mapping grants; otherwise every scope must
	// be covered by the mapping or the request is refused.
	Scope string `json:"scope,omitempty"`
	// Agent is the public user ('U') key the credential is for and whose
	// seed signed the request.
	Agent string `json:"agent"`
	// XKey is the agent's public curve ('X') key.
	XKey string `json:"xkey"`
	// XKeyProof proves possession of XKey's secret: base64url (no
	// padding) of XKeyProofInput(Agent, RequestID) sealed from XKey to
	// the gateway's curve key (SealXKeyProof). Not a secret: it opens
	// only with the gateway's key and says nothing beyond the request.
	XKeyProof string `json:"xkey_proof"`
	// RequestID is 16–128 characters of [A-Za-z0-9._:-], fresh per request.
	RequestID string `json:"request_id"`
	// IssuedAt is RFC 3339 UTC, second precision.
	IssuedAt string `json:"issued_at"`
}

// String prints the request without its subject token.
func (r Request) String() string {
	return fmt.Sprintf("protocol.Request{agent=%s tenant=%s audience=%s scope=%q request_id=%s subject_token=[redacted]}",
		r.Agent, r.Tenant, r.Audience, r.Scope, r.RequestID)
}

// Format prints String for every verb, so %+v cannot reach the token.
func (r Request) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(r.String())) }

// ErrMalformed is returned (wrapped with the first problem) by Parse. The
// message never quotes the subject token.
var ErrMalformed = errors.New("protocol: malformed exchange request")

// Parse decodes body strictly (no unknown or duplicate members, valid
// UTF-8, at most MaxBodyBytes) and checks every field's form.
func Parse(body []byte) (*Request, error) {
	if len(body) > MaxBodyBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformed, len(body), MaxBodyBytes)
	}
	var r Request
	if err := json.Unmarshal(body, &r, json.RejectUnknownMembers(true)); err != nil {
		return nil, fmt.Errorf("%w: not strict JSON of the request shape", ErrMalformed)
	}
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return &r, nil
}

func (r *Request) check() error {
	switch {
	case r.V != Version:
		return fmt.Errorf("v %d is not %d: a v%d request with xkey_proof is required", r.V, Version, Version)
	case r.GrantType != GrantType:
		return errors.New("grant_type is not token-exchange")
	case r.SubjectToken == "" || len(r.SubjectToken) > MaxSubjectToken:
		return errors.New("subject_token missing or too long")
	case r.SubjectTokenType != TokenTypeJWT && r.SubjectTokenType != TokenTypeAccess && r.SubjectTokenType != TokenTypeID:
		return errors.New("subject_token_type is not a JWT, access_token or id_token type")
	case r.RequestedTokenType != "" && r.RequestedTokenType != TokenTypeAgentgw:
		return errors.New("requested_token_type is not the agentgw credential type")
	case r.Audience == "" || len(r.Audience) > 256:
		return errors.New("audience missing or too long")
	case len(r.Scope) > maxScopeText:
		return errors.New("scope too long")
	case !subjects.ValidKey(r.Agent, 'U'):
		return errors.New("agent is not a public user ('U') nkey")
	case !subjects.ValidKey(r.XKey, 'X'):
		return errors.New("xkey is not a public curve ('X') nkey")
	case !validRequestID(r.RequestID):
		return errors.New("request_id is not [A-Za-z0-9._:-]{16,128}")
	case r.XKeyProof == "" || len(r.XKeyProof) > maxXKeyProofText:
		return fmt.Errorf("xkey_proof missing or longer than %d characters", maxXKeyProofText)
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(r.XKeyProof); err != nil {
		return errors.New("xkey_proof is not base64url")
	}
	if _, err := r.Time(); err != nil {
		return err
	}
	return nil
}

// issuedAtLayout is issued_at's one form: RFC 3339 UTC to the second.
const issuedAtLayout = "2006-01-02T15:04:05Z"

// Time returns IssuedAt parsed: RFC 3339 UTC to the second, in exactly
// the form the clients write (no fraction, no offset), so that a
// refusal that quotes it quotes 20 characters.
func (r *Request) Time() (time.Time, error) {
	t, err := time.Parse(issuedAtLayout, r.IssuedAt)
	if err != nil || len(r.IssuedAt) != len(issuedAtLayout) || t.Format(issuedAtLayout) != r.IssuedAt {
		return time.Time{}, errors.New("issued_at is not RFC 3339 UTC to the second (2006-01-02T15:04:05Z)")
	}
	return t, nil
}

// Scopes splits Scope on spaces; nil when empty.
func (r *Request) Scopes() []string { return strings.Fields(r.Scope) }

func validRequestID(s string) bool {
	if len(s) < 16 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// NewRequestID returns 32 hex characters (128 random bits).
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Marshal encodes r as the exact body to sign and send.
func Marshal(r *Request) ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("protocol: marshal: %w", err)
	}
	return b, nil
}

// Sign returns the SignatureHeader value for body, signed by the agent's
// user key pair.
func Sign(kp nkeys.KeyPair, body []byte) (string, error) {
	sig, err := kp.Sign(SigningInput(body))
	if err != nil {
		return "", fmt.Errorf("protocol: sign: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sig), nil
}

// ErrProof is returned by VerifyProof.
var ErrProof = errors.New("protocol: proof of possession does not verify")

// VerifyProof checks that sig (the SignatureHeader value) is agent's
// Ed25519 signature over SigningInput(body).
func VerifyProof(agent string, body []byte, sig string) error {
	if sig == "" {
		return fmt.Errorf("%w: no signature", ErrProof)
	}
	// 86 characters encode 64 bytes; anything else is refused before
	// decoding.
	if len(sig) != base64.RawURLEncoding.EncodedLen(ed25519.SignatureSize) {
		return fmt.Errorf("%w: signature is not %d bytes of base64url", ErrProof, ed25519.SignatureSize)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature is not %d bytes of base64url", ErrProof, ed25519.SignatureSize)
	}
	pub, err := nkeys.FromPublicKey(agent)
	if err != nil {
		return fmt.Errorf("%w: agent key", ErrProof)
	}
	if err := pub.Verify(SigningInput(body), raw); err != nil {
		return fmt.Errorf("%w: not signed by the agent key", ErrProof)
	}
	return nil
}

// XKeyProofInput returns the exact plaintext an xkey proof seals:
// "agentgw-exchange-xkey-v1\n" ‖ agent ‖ "\n" ‖ requestID. It binds the
// proof to the agent key the credential is for and to one request.
func XKeyProofInput(agent, requestID string) []byte {
	out := make([]byte, 0, len(xkeyProofPrefix)+len(agent)+1+len(requestID))
	out = append(append(out, xkeyProofPrefix...), agent...)
	return append(append(out, '\n'), requestID...)
}

// SealXKeyProof returns the xkey_proof value of a request by agent with
// requestID: XKeyProofInput sealed by curve (the agent's curve key pair,
// whose public key is the request's xkey) to gatewayXKey, the gateway's
// public curve key, with a random nonce.
func SealXKeyProof(curve nkeys.KeyPair, gatewayXKey, agent, requestID string) (string, error) {
	if curve == nil {
		return "", errors.New("protocol: xkey proof: no curve key pair")
	}
	sealed, err := curve.Seal(XKeyProofInput(agent, requestID), gatewayXKey)
	if err != nil {
		return "", fmt.Errorf("protocol: xkey proof: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Opener opens sealed bytes in the nkeys xkey format from sender's
// public curve key (identity.Box.Open).
type Opener interface {
	Open(sealed []byte, sender string) ([]byte, error)
}

// VerifyXKeyProof checks r's xkey_proof with the gateway's curve key
// (box): it must be exactly as long as the sealed XKeyProofInput of r's
// agent and request id (checked before anything is opened, so the work
// is bounded), open from r.XKey, and hold exactly that plaintext
// (compared in constant time). Errors wrap ErrProof.
func VerifyXKeyProof(box Opener, r *Request) error {
	want := XKeyProofInput(r.Agent, r.RequestID)
	sealed, err := base64.RawURLEncoding.Strict().DecodeString(r.XKeyProof)
	switch {
	case box == nil:
		return fmt.Errorf("%w: xkey proof: no gateway curve key", ErrProof)
	case err != nil || len(sealed) != len(want)+xkeyProofOverhead:
		return fmt.Errorf("%w: xkey proof is not %d bytes of base64url", ErrProof, len(want)+xkeyProofOverhead)
	}
	got, err := box.Open(sealed, r.XKey)
	if err != nil {
		return fmt.Errorf("%w: xkey proof does not open from the request's xkey to the gateway's curve key", ErrProof)
	}
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return fmt.Errorf("%w: xkey proof is not for this agent key and request id", ErrProof)
	}
	return nil
}

// Response is the success body. AccessToken is the credential JWT (a
// secret): Response's printed forms redact it.
type Response struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	// ExpiresIn is the credential's remaining lifetime in seconds.
	ExpiresIn int64 `json:"expires_in"`
	// Scope is the granted scopes, space separated.
	Scope  string `json:"scope"`
	Tenant string `json:"tenant"`
	// CredentialID is the credential's jti.
	CredentialID string `json:"jti"`
}

// String prints the response without its token.
func (r Response) String() string {
	return fmt.Sprintf("protocol.Response{jti=%s tenant=%s scope=%q expires_in=%d access_token=[redacted]}",
		r.CredentialID, r.Tenant, r.Scope, r.ExpiresIn)
}

// Format prints String for every verb.
func (r Response) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(r.String())) }

// ParseResponse decodes a success body strictly.
func ParseResponse(body []byte) (*Response, error) {
	var r Response
	if err := json.Unmarshal(body, &r, json.RejectUnknownMembers(true)); err != nil {
		return nil, errors.New("protocol: response is not strict JSON of the response shape")
	}
	if r.AccessToken == "" || r.IssuedTokenType != TokenTypeAgentgw {
		return nil, errors.New("protocol: response holds no agentgw credential")
	}
	return &r, nil
}

// ErrorBody is the data of an error reply (the micro service error
// headers carry the same reason as description). Error is the RFC 8693 /
// RFC 6749 error code, Reason the agentgw reason code.
type ErrorBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}
