package envelope

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"errors"
	"hash"
	"sync"

	"filippo.io/edwards25519"

	"github.com/agentgw/agentgw/subjects/reason"
)

// PublicKey is an agent's Ed25519 key decoded once, for verifying many
// envelopes. crypto/ed25519 decompresses the key's curve point on every
// Verify (about a tenth of a verification) and needs the signed bytes
// contiguous, which for an envelope means copying the body behind the
// signing context. PublicKey keeps the decoded point and hashes context
// and body in place.
//
// The verification is crypto/ed25519's, step for step (RFC 8032 §5.1.7,
// cofactorless; S must be canonical; R is compared as bytes), on the
// same curve library Go's is vendored from: TestPublicKeyMatchesStdlib
// and FuzzPublicKeyMatchesStdlib compare the two on the Wycheproof
// vectors and on random and mutated signatures.
type PublicKey struct {
	raw  [ed25519.PublicKeySize]byte
	negA edwards25519.Point // -A, as the verification equation uses it
}

// NewPublicKey decodes raw (32 bytes) into a PublicKey. It fails for a
// wrong length or an encoding that is not a point on the curve, as
// crypto/ed25519.Verify would for every signature under that key.
func NewPublicKey(raw []byte) (*PublicKey, error) {
	if len(raw) != ed25519.PublicKeySize {
		return nil, errors.New("envelope: ed25519 public key is not 32 bytes")
	}
	var a edwards25519.Point
	if _, err := a.SetBytes(raw); err != nil {
		return nil, errors.New("envelope: ed25519 public key is not a curve point")
	}
	k := &PublicKey{}
	copy(k.raw[:], raw)
	k.negA.Negate(&a)
	return k, nil
}

var sha512Pool = sync.Pool{New: func() any { return sha512.New() }}

// verify reports whether sig is k's signature of prefix ‖ msg.
func (k *PublicKey) verify(prefix string, msg []byte, sig *[ed25519.SignatureSize]byte) bool {
	if sig[63]&224 != 0 {
		return false
	}
	h := sha512Pool.Get().(hash.Hash)
	h.Reset()
	h.Write(sig[:32])
	h.Write(k.raw[:])
	h.Write([]byte(prefix))
	h.Write(msg)
	var digest [sha512.Size]byte
	h.Sum(digest[:0])
	sha512Pool.Put(h)
	var kk, s edwards25519.Scalar
	if _, err := kk.SetUniformBytes(digest[:]); err != nil {
		return false // cannot happen: 64 bytes
	}
	if _, err := s.SetCanonicalBytes(sig[32:]); err != nil {
		return false
	}
	// [S]B = R + [k]A  <=>  [k](-A) + [S]B = R
	var r edwards25519.Point
	r.VarTimeDoubleScalarBaseMult(&kk, &k.negA, &s)
	return bytes.Equal(sig[:32], r.Bytes())
}

// Verify is the package-level Verify with k: sigB64 must be k's
// signature over SigningInput(body). Every failure is a *reason.Denial
// with code BadSignature.
func (k *PublicKey) Verify(body []byte, sigB64 string) error {
	var sig [ed25519.SignatureSize]byte
	if err := decodeSig(&sig, sigB64); err != nil {
		return err
	}
	if !k.verify(SigningContext, body, &sig) {
		return reason.Deny(reason.BadSignature, "signature does not verify")
	}
	return nil
}
