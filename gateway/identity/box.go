package identity

import (
	"bytes"
	"crypto/rand"
	"fmt"

	"github.com/agentgw/agentgw/subjects/reason"
	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/nacl/box"
)

// Sealed payload layout, identical to nkeys' xkey format:
// "xkv1" || 24-byte nonce || NaCl box (16-byte tag + ciphertext).
const (
	xkeyVersion  = nkeys.XKeyVersionV1
	nonceLen     = 24
	sealOverhead = len(xkeyVersion) + nonceLen + box.Overhead

	// boxCacheSize bounds the precomputed shared keys a Box keeps, in
	// peers; the oldest is evicted when full.
	boxCacheSize = 1024
)

// Box seals and opens payloads for one curve key in the nkeys xkey wire
// format (interoperable with nkeys KeyPair.Seal and Open), computing the
// Curve25519 shared key once per peer (box.Precompute) and keeping it in a
// bounded FIFO cache. A Box is safe for concurrent use; its printed forms
// show only the public key.
type Box struct {
	pub    string
	priv   [32]byte
	shared *fifoCache[string, *[32]byte]
}

// NewBox returns a Box for curve, which must hold a curve ('X') seed.
func NewBox(curve nkeys.KeyPair) (*Box, error) {
	if curve == nil {
		return nil, fmt.Errorf("%w: nil curve key pair", ErrKey)
	}
	seed, err := curve.Seed()
	if err != nil {
		return nil, fmt.Errorf("%w: no curve seed", ErrKey)
	}
	prefix, raw, err := nkeys.DecodeSeed(seed)
	if err != nil || prefix != nkeys.PrefixByteCurve || len(raw) != 32 {
		return nil, fmt.Errorf("%w: not a curve ('X') seed", ErrKey)
	}
	b := &Box{shared: newFIFOCache[string, *[32]byte](boxCacheSize)}
	copy(b.priv[:], raw)
	clear(raw)
	if b.pub, err = curve.PublicKey(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	return b, nil
}

// PublicKey returns the encoded public curve key ("X…").
func (b *Box) PublicKey() string { return b.pub }

// String returns "identity.Box{<public key>}".
func (b Box) String() string { return "identity.Box{" + b.pub + "}" }

// GoString returns the same as String.
func (b Box) GoString() string { return b.String() }

// Format prints String for every verb.
func (b Box) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(b.String())) }

// OtherSpelling returns the public curve key pub with its top bit
// flipped. X25519 ignores that bit, so it is another valid 'X' nkey that
// seals and opens as pub. ok is false when pub is not a curve key.
func OtherSpelling(pub string) (other string, ok bool) {
	raw, err := decodePublic(pub, nkeys.PrefixByteCurve)
	if err != nil {
		return "", false
	}
	raw[31] ^= 0x80
	enc, err := nkeys.Encode(nkeys.PrefixByteCurve, raw)
	if err != nil {
		return "", false
	}
	return string(enc), true
}

// sharedKey returns the precomputed key for peer, a public curve key. A
// malformed key, or one whose shared point is all-zero (a low-order
// point, which would make the box key public), is a SealMismatch.
func (b *Box) sharedKey(peer string) (*[32]byte, error) {
	if k, ok := b.shared.get(peer); ok {
		return k, nil
	}
	raw, err := decodePublic(peer, nkeys.PrefixByteCurve)
	if err != nil {
		return nil, reason.Deny(reason.SealMismatch, "peer is not a public curve ('X') nkey")
	}
	if _, err := curve25519.X25519(b.priv[:], raw); err != nil {
		return nil, reason.Deny(reason.SealMismatch, "peer curve key %s is a low-order point", peer)
	}
	var pub [32]byte
	copy(pub[:], raw)
	k := new([32]byte)
	box.Precompute(k, &pub, &b.priv)
	b.shared.put(peer, k)
	return k, nil
}

// Seal encrypts plaintext to recipient, a public curve key, with a random
// nonce. A malformed recipient is a *reason.Denial SealMismatch; a
// failing random source is returned as is.
func (b *Box) Seal(plaintext []byte, recipient string) ([]byte, error) {
	k, err := b.sharedKey(recipient)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(xkeyVersion)+nonceLen, len(plaintext)+sealOverhead)
	copy(out, xkeyVersion)
	var nonce [nonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("identity: seal: nonce: %w", err)
	}
	copy(out[len(xkeyVersion):], nonce[:])
	return box.SealAfterPrecomputation(out, plaintext, &nonce, k), nil
}

// Open decrypts sealed from sender, a public curve key. It returns a
// *reason.Denial: SealMismatch when sender is not a usable curve key,
// SealBroken when sealed is not an xkv1 box from sender to this key.
func (b *Box) Open(sealed []byte, sender string) ([]byte, error) {
	k, err := b.sharedKey(sender)
	if err != nil {
		return nil, err
	}
	if len(sealed) < sealOverhead || !bytes.HasPrefix(sealed, []byte(xkeyVersion)) {
		return nil, reason.Deny(reason.SealBroken, "sealed payload of %d bytes is not an %s box", len(sealed), xkeyVersion)
	}
	var nonce [nonceLen]byte
	copy(nonce[:], sealed[len(xkeyVersion):])
	out, ok := box.OpenAfterPrecomputation(nil, sealed[len(xkeyVersion)+nonceLen:], &nonce, k)
	if !ok {
		return nil, reason.Deny(reason.SealBroken, "sealed payload does not open from %s", sender)
	}
	return out, nil
}
