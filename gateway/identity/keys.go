package identity

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/nats-io/nkeys"
)

// ErrKey is returned (wrapped) when a key pair or public key is unusable
// for the role asked of it. Its message never contains key material.
var ErrKey = errors.New("identity: unusable key")

// NewIssuer returns a fresh account ('A') key: a tenant issuer that signs
// credentials.
func NewIssuer() (nkeys.KeyPair, error) { return nkeys.CreateAccount() }

// NewAgent returns a fresh user ('U') key: the subject key of agents,
// approvers, capability consumers and operators.
func NewAgent() (nkeys.KeyPair, error) { return nkeys.CreateUser() }

// NewGatewayKey returns a fresh server ('N') key for the gateway to sign
// decision tokens with.
//
// It is an 'N' key, not an 'A' key, so that the gateway's role cannot be
// confused with a tenant issuer's: credentials must be signed by 'A' keys
// and decision tokens by 'N' keys, so an issuer key listed by mistake as a
// trusted gateway (or a gateway key listed as a tenant issuer) verifies
// nothing. 'N' is also NATS's role for a server process identity.
func NewGatewayKey() (nkeys.KeyPair, error) { return nkeys.CreateServer() }

// NewCurve returns a fresh curve ('X') key for sealing payloads.
func NewCurve() (nkeys.KeyPair, error) { return nkeys.CreateCurveKeys() }

// Signer signs messages with an Ed25519 nkey. It keeps the expanded
// ed25519.PrivateKey so that each Sign is one ed25519.Sign, unlike
// nkeys.KeyPair.Sign which rebuilds the key from the seed on every call.
// A Signer is safe for concurrent use; its printed forms show only the
// public key.
type Signer struct {
	pub    string
	prefix nkeys.PrefixByte
	priv   ed25519.PrivateKey
}

// NewSigner returns a Signer for kp, which must hold the seed of an
// Ed25519 nkey (user, account, server, operator or cluster; not a curve
// key). It returns an error wrapping ErrKey otherwise.
func NewSigner(kp nkeys.KeyPair) (*Signer, error) {
	if kp == nil {
		return nil, fmt.Errorf("%w: nil key pair", ErrKey)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("%w: no seed", ErrKey)
	}
	prefix, raw, err := nkeys.DecodeSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("%w: undecodable seed", ErrKey)
	}
	defer clear(raw)
	if prefix == nkeys.PrefixByteCurve || len(raw) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: not an ed25519 seed (%s)", ErrKey, prefix)
	}
	priv := ed25519.NewKeyFromSeed(raw)
	pub, err := nkeys.Encode(prefix, priv.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	if kpPub, err := kp.PublicKey(); err != nil || kpPub != string(pub) {
		return nil, fmt.Errorf("%w: seed and public key disagree", ErrKey)
	}
	return &Signer{pub: string(pub), prefix: prefix, priv: priv}, nil
}

// PublicKey returns the encoded public nkey.
func (s *Signer) PublicKey() string { return s.pub }

// Prefix returns the key's role prefix (nkeys.PrefixByteServer for a
// gateway key).
func (s *Signer) Prefix() nkeys.PrefixByte { return s.prefix }

// Sign returns the 64-byte Ed25519 signature of msg.
func (s *Signer) Sign(msg []byte) []byte { return ed25519.Sign(s.priv, msg) }

// String returns "identity.Signer{<public key>}".
func (s Signer) String() string { return "identity.Signer{" + s.pub + "}" }

// GoString returns the same as String.
func (s Signer) GoString() string { return s.String() }

// Format prints String for every verb, so the private key never reaches
// a log through fmt's reflection. The value receivers cover a copied
// Signer value as well as a *Signer.
func (s Signer) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// decodePublic decodes an encoded public nkey of role want into its raw
// 32 bytes. It rejects wrong roles, a prefix byte other than exactly the
// role's (its low three bits ride in the second character, which must
// be A–D; nkeys masks them off a curve key), bad checksums and, for
// Ed25519 keys, small-order points.
func decodePublic(pub string, want nkeys.PrefixByte) ([]byte, error) {
	if len(pub) != 56 || !prefixLetterMatches(pub[0], want) || pub[1] < 'A' || pub[1] > 'D' {
		return nil, ErrKey
	}
	raw, err := nkeys.Decode(want, []byte(pub))
	if err != nil || len(raw) != 32 {
		return nil, ErrKey
	}
	if want != nkeys.PrefixByteCurve && !nkeys.IsValidPublicKey(pub) {
		return nil, ErrKey
	}
	return raw, nil
}

// prefixLetterMatches reports whether c is the first letter of an encoded
// public key of role p.
func prefixLetterMatches(c byte, p nkeys.PrefixByte) bool {
	switch p {
	case nkeys.PrefixByteAccount:
		return c == 'A'
	case nkeys.PrefixByteUser:
		return c == 'U'
	case nkeys.PrefixByteServer:
		return c == 'N'
	case nkeys.PrefixByteCurve:
		return c == 'X'
	case nkeys.PrefixByteOperator:
		return c == 'O'
	case nkeys.PrefixByteCluster:
		return c == 'C'
	}
	return false
}

// isPublic reports whether pub is a valid encoded public key of role want.
func isPublic(pub string, want nkeys.PrefixByte) bool {
	_, err := decodePublic(pub, want)
	return err == nil
}
