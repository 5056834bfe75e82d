package envelope

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"

	"github.com/agentgw/agentgw/subjects/reason"
)

// SigningInput returns SigningContext followed by body: the exact bytes
// that are signed. It allocates a new slice.
func SigningInput(body []byte) []byte {
	in := make([]byte, 0, len(SigningContext)+len(body))
	in = append(in, SigningContext...)
	return append(in, body...)
}

// Sign signs SigningInput(body) with priv and returns the signature as
// base64url without padding (86 characters). Like ed25519.Sign, it panics
// if priv is not ed25519.PrivateKeySize bytes: a wrong-size private key is
// a programming error, not input.
func Sign(priv ed25519.PrivateKey, body []byte) string {
	return base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, SigningInput(body)))
}

var sigEncoding = base64.RawURLEncoding.Strict()

// sigB64Len is the length of a 64-byte signature in unpadded base64url.
var sigB64Len = base64.RawURLEncoding.EncodedLen(ed25519.SignatureSize)

// Verify checks sigB64 (base64url, no padding) as pub's signature over
// SigningInput(body). It never panics. Every failure, including an empty,
// padded, non-canonical or wrong-length signature and a wrong-size key, is
// a *reason.Denial with code BadSignature.
func Verify(pub ed25519.PublicKey, body []byte, sigB64 string) error {
	var sig [ed25519.SignatureSize]byte
	if err := decodeSig(&sig, sigB64); err != nil {
		return err
	}
	if len(pub) != ed25519.PublicKeySize {
		return reason.Deny(reason.BadSignature, "public key is %d bytes; want %d", len(pub), ed25519.PublicKeySize)
	}
	if !VerifyBytes(pub, SigningInput(body), sig[:]) {
		return reason.Deny(reason.BadSignature, "signature does not verify")
	}
	return nil
}

// DecodeSignature decodes a signature the way Verify reads one: exactly
// 86 characters of canonical base64url without padding, so that a
// signature has one text form. Other signed documents (operator
// requests) read their signatures with it. A failure is a *reason.Denial
// with code BadSignature.
func DecodeSignature(sigB64 string) ([ed25519.SignatureSize]byte, error) {
	var sig [ed25519.SignatureSize]byte
	err := decodeSig(&sig, sigB64)
	return sig, err
}

// decodeSig decodes a base64url (no padding, canonical) signature.
func decodeSig(sig *[ed25519.SignatureSize]byte, sigB64 string) error {
	if len(sigB64) != sigB64Len {
		return reason.Deny(reason.BadSignature, "signature is %d characters; want %d", len(sigB64), sigB64Len)
	}
	n, err := sigEncoding.Decode(sig[:], []byte(sigB64))
	if err != nil || n != len(sig) {
		return reason.Deny(reason.BadSignature, "signature is not canonical base64url")
	}
	return nil
}

// VerifyBytes reports whether sig is pub's Ed25519 signature of msg (no
// signing context added). It checks the key and signature lengths first
// and never panics. It applies crypto/ed25519's rules: canonical S
// required, so signatures are not malleable.
func VerifyBytes(pub, msg, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(ed25519.PublicKey(pub), msg, sig)
}

// Digest returns the SHA-256 of the exact body bytes.
func Digest(body []byte) [32]byte { return sha256.Sum256(body) }

// PayloadDigest returns the SHA-256 of the exact received bytes of the
// "payload" member value (from its '{' to its '}'). It is the digest the
// idempotency ledger and approvals bind to. For a Body not made by Parse it
// is the digest of no bytes.
func (b *Body) PayloadDigest() [32]byte { return Digest(b.payloadRaw) }
