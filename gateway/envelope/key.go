package envelope

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"errors"
	"hash"
	"sync"
	"sync/atomic"

	"github.com/oasisprotocol/curve25519-voi/curve"
	"github.com/oasisprotocol/curve25519-voi/curve/scalar"

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
// cofactorless; S must be canonical; R is compared as bytes); only the
// curve arithmetic is another library's: curve25519-voi, whose
// double-scalar multiplication uses AVX2 where the CPU has it and takes
// about half the time of the curve code crypto/ed25519 runs.
// TestPublicKeyMatchesStdlib, TestEdgeSignaturesMatchStdlib,
// TestKeyDecodingMatchesStdlib and FuzzPublicKeyMatchesStdlib compare the
// two on the Wycheproof vectors, on keys and signatures built from
// small-order and non-canonical points, and on random and mutated
// signatures, with and without the key's precomputed table.
type PublicKey struct {
	raw  [ed25519.PublicKeySize]byte
	negA curve.EdwardsPoint // -A, as the verification equation uses it
	// table holds multiples of -A once Precompute has run: [k](-A) is
	// then table lookups and additions, as [S]B always is, instead of
	// 253 doublings shared by both.
	table atomic.Pointer[curve.EdwardsBasepointTable]
}

// TableBytes is about what Precompute adds to a key's memory.
const TableBytes = 40 << 10

// Precompute builds k's table of multiples (TableBytes, about two
// verifications of work), after which a verification takes about two
// thirds of the time. It is for keys that sign many messages; it changes
// no verdict. Safe to call concurrently and more than once.
func (k *PublicKey) Precompute() {
	if k.table.Load() != nil {
		return
	}
	k.table.CompareAndSwap(nil, curve.NewEdwardsBasepointTable(&k.negA))
}

// Precomputed reports whether Precompute has run.
func (k *PublicKey) Precomputed() bool { return k.table.Load() != nil }

// NewPublicKey decodes raw (32 bytes) into a PublicKey. It fails for a
// wrong length or an encoding that is not a point on the curve, as
// crypto/ed25519.Verify would for every signature under that key.
func NewPublicKey(raw []byte) (*PublicKey, error) {
	if len(raw) != ed25519.PublicKeySize {
		return nil, errors.New("envelope: ed25519 public key is not 32 bytes")
	}
	k := &PublicKey{}
	copy(k.raw[:], raw)
	// Like crypto/ed25519, this accepts every encoding of y below 2^255,
	// canonical or not, and either sign of x = 0.
	var a curve.EdwardsPoint
	if _, err := a.SetCompressedY((*curve.CompressedEdwardsY)(&k.raw)); err != nil {
		return nil, errors.New("envelope: ed25519 public key is not a curve point")
	}
	k.negA.Neg(&a)
	return k, nil
}

// scratch is what one verification writes: pooled, because the curve
// library's functions let their arguments escape to the heap.
type scratch struct {
	h      hash.Hash
	sig    [ed25519.SignatureSize]byte
	digest [sha512.Size]byte
	kk, ss scalar.Scalar
	r, ka  curve.EdwardsPoint
	enc    curve.CompressedEdwardsY
}

var scratchPool = sync.Pool{New: func() any { return &scratch{h: sha512.New()} }}

var signingContext = []byte(SigningContext)

// verify reports whether sig is k's signature of prefix ‖ msg.
func (k *PublicKey) verify(prefix, msg []byte, sig *[ed25519.SignatureSize]byte) bool {
	if sig[63]&224 != 0 {
		return false
	}
	w := scratchPool.Get().(*scratch)
	defer scratchPool.Put(w)
	w.sig = *sig
	w.h.Reset()
	w.h.Write(w.sig[:32])
	w.h.Write(k.raw[:])
	w.h.Write(prefix)
	w.h.Write(msg)
	w.h.Sum(w.digest[:0])
	if _, err := w.kk.SetBytesModOrderWide(w.digest[:]); err != nil {
		return false // cannot happen: 64 bytes
	}
	if _, err := w.ss.SetCanonicalBytes(w.sig[32:]); err != nil {
		return false
	}
	// [S]B = R + [k]A  <=>  [k](-A) + [S]B = R
	if t := k.table.Load(); t != nil {
		w.r.MulBasepoint(curve.ED25519_BASEPOINT_TABLE, &w.ss)
		w.ka.MulBasepoint(t, &w.kk)
		w.r.Add(&w.r, &w.ka)
	} else {
		w.r.DoubleScalarMulBasepointVartime(&w.kk, &k.negA, &w.ss)
	}
	w.enc.SetEdwardsPoint(&w.r)
	return bytes.Equal(w.sig[:32], w.enc[:])
}

// Verify is the package-level Verify with k: sigB64 must be k's
// signature over SigningInput(body). Every failure is a *reason.Denial
// with code BadSignature.
func (k *PublicKey) Verify(body []byte, sigB64 string) error {
	var sig [ed25519.SignatureSize]byte
	if err := decodeSig(&sig, sigB64); err != nil {
		return err
	}
	if !k.verify(signingContext, body, &sig) {
		return reason.Deny(reason.BadSignature, "signature does not verify")
	}
	return nil
}
