package identity

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/go-json-experiment/json"
	"github.com/nats-io/nkeys"
)

// MaxTokenSize bounds a compact JWT accepted by ParseJWT and Verify, in
// bytes. Credentials and decision tokens are well under 2 KiB.
const MaxTokenSize = 16 << 10

// The only header agentgw writes and accepts: jwt/v2's own.
const (
	jwtType      = "JWT"
	jwtAlgorithm = "ed25519-nkey"
	jwtHeader    = `{"typ":"JWT","alg":"ed25519-nkey"}`
)

var (
	b64          = base64.RawURLEncoding.Strict()
	jwtHeaderB64 = b64.EncodeToString([]byte(jwtHeader))
)

// ErrMalformedJWT is returned (wrapped, with a cause that never quotes the
// token) by ParseJWT.
var ErrMalformedJWT = errors.New("identity: malformed jwt")

// JWT is a compact nkey JWT split into its parts. Its signature has not
// been checked: call VerifySignature before trusting Payload.
type JWT struct {
	// Payload is the decoded claims JSON.
	Payload []byte

	signingInput string // header "." payload, exactly as received
	sig          []byte
}

// ParseJWT splits a compact JWT and checks its form: at most MaxTokenSize
// bytes, three canonical unpadded base64url segments (no line breaks, no
// padding, no stray bits), a header that is exactly {typ JWT, alg
// ed25519-nkey} (strict JSON: no other or duplicate members; jwt/v2's
// legacy "ed25519" v1 algorithm is refused), and a 64-byte signature.
func ParseJWT(token string) (*JWT, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: empty", ErrMalformedJWT)
	}
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformedJWT, len(token), MaxTokenSize)
	}
	dot1, dot2 := -1, -1
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.' && dot1 < 0:
			dot1 = i
		case c == '.' && dot2 < 0:
			dot2 = i
		default:
			return nil, fmt.Errorf("%w: not three base64url segments", ErrMalformedJWT)
		}
	}
	if dot1 <= 0 || dot2 <= dot1+1 || dot2 == len(token)-1 {
		return nil, fmt.Errorf("%w: not three base64url segments", ErrMalformedJWT)
	}
	if err := checkHeader(token[:dot1]); err != nil {
		return nil, err
	}
	payload, err := b64.DecodeString(token[dot1+1 : dot2])
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not canonical base64url", ErrMalformedJWT)
	}
	sig, err := b64.DecodeString(token[dot2+1:])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: signature is not 64 canonical base64url bytes", ErrMalformedJWT)
	}
	return &JWT{Payload: payload, signingInput: token[:dot2], sig: sig}, nil
}

func checkHeader(seg string) error {
	if seg == jwtHeaderB64 {
		return nil
	}
	if len(seg) > 256 {
		return fmt.Errorf("%w: header too long", ErrMalformedJWT)
	}
	raw, err := b64.DecodeString(seg)
	if err != nil {
		return fmt.Errorf("%w: header is not canonical base64url", ErrMalformedJWT)
	}
	var h struct {
		Type      string `json:"typ"`
		Algorithm string `json:"alg"`
	}
	if err := unmarshalStrict(raw, &h); err != nil {
		return fmt.Errorf("%w: header is not strict JSON {typ, alg}", ErrMalformedJWT)
	}
	if h.Type != jwtType {
		return fmt.Errorf("%w: header typ is not JWT", ErrMalformedJWT)
	}
	if h.Algorithm != jwtAlgorithm {
		return fmt.Errorf("%w: header alg is not ed25519-nkey", ErrMalformedJWT)
	}
	return nil
}

// VerifySignature reports whether the JWT is signed by issuer, an encoded
// public nkey that must have the given role prefix.
func (j *JWT) VerifySignature(issuer string, role nkeys.PrefixByte) bool {
	raw, err := decodePublic(issuer, role)
	if err != nil {
		return false
	}
	return ed25519.Verify(ed25519.PublicKey(raw), []byte(j.signingInput), j.sig)
}

// SignJWT returns the compact JWT with header {typ JWT, alg ed25519-nkey}
// over payload (claims JSON) signed by s: the form jwt/v2 writes and
// DecodeGeneric verifies.
func SignJWT(s *Signer, payload []byte) Token {
	n := len(jwtHeaderB64) + 1 + b64.EncodedLen(len(payload))
	buf := make([]byte, n, n+1+b64.EncodedLen(ed25519.SignatureSize))
	copy(buf, jwtHeaderB64)
	buf[len(jwtHeaderB64)] = '.'
	b64.Encode(buf[len(jwtHeaderB64)+1:], payload)
	sig := s.Sign(buf)
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	return Token(buf)
}

// unmarshalStrict decodes JSON rejecting unknown and duplicate members
// and invalid UTF-8; member names match case-sensitively.
func unmarshalStrict(data []byte, v any) error {
	return json.Unmarshal(data, v, json.RejectUnknownMembers(true))
}

// safeText returns s if it is safe to quote in an error detail, else a
// placeholder: details must not echo attacker-chosen bytes at length.
func safeText(s string) string {
	if s == "" {
		return "(none)"
	}
	if isSafeID(s) {
		return s
	}
	return "(invalid)"
}

// unmarshalLenient decodes JSON ignoring unknown members (duplicate names
// and invalid UTF-8 are still rejected): for reading a field or two of
// claims that are verified elsewhere.
func unmarshalLenient(data []byte, v any) error {
	return json.Unmarshal(data, v)
}
