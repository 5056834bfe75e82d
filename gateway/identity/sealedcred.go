package identity

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"strings"

	"github.com/agentgw/agentgw/subjects/reason"
)

// credentialDomain opens the plaintext of a sealed credential, so that no
// other box of the same key can be taken for one.
const credentialDomain = "agentgw-credential-v1\n"

// SealCredential seals a credential header value, as received (it need
// not be a valid JWT: whatever an agent put there may be a secret), to
// the box's own curve key, bound to body, the message it came with. The
// result is base64url: a header value. Only a holder of this curve key
// opens it (OpenCredential), and only together with the same body. The
// cost is linear in len(token) and len(body). It fails only when the
// random source does.
func (b *Box) SealCredential(token string, body []byte) (string, error) {
	sum := sha256.Sum256(body)
	plain := make([]byte, 0, len(credentialDomain)+len(sum)+len(token))
	plain = append(append(append(plain, credentialDomain...), sum[:]...), token...)
	sealed, err := b.Seal(plain, b.pub)
	clear(plain)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// OpenCredential returns the credential SealCredential sealed to
// sealedTo for body. It returns a *reason.Denial: SealMismatch when
// sealedTo is not this box's key (a record sealed before the curve key
// changed cannot be opened by the new one), SealBroken when sealed is
// not a sealed credential of this key or was sealed for another body.
// Its detail names keys, never the credential.
func (b *Box) OpenCredential(sealed, sealedTo string, body []byte) (Token, error) {
	if sealedTo != b.pub {
		return "", reason.Deny(reason.SealMismatch, "credential sealed to curve key %s, not to this gateway's %s", safeText(sealedTo), b.pub)
	}
	// Canonical base64url only: Go's decoder alone skips CR and LF and
	// takes stray bits in the last character.
	raw, err := b64.DecodeString(sealed)
	if err != nil || strings.ContainsAny(sealed, "\r\n") {
		return "", reason.Deny(reason.SealBroken, "sealed credential is not canonical base64url")
	}
	plain, err := b.Open(raw, b.pub)
	if err != nil {
		return "", reason.Deny(reason.SealBroken, "sealed credential does not open with curve key %s", b.pub)
	}
	sum := sha256.Sum256(body)
	rest, ok := bytes.CutPrefix(plain, []byte(credentialDomain))
	if !ok || len(rest) < len(sum) || !bytes.Equal(rest[:len(sum)], sum[:]) {
		clear(plain)
		return "", reason.Deny(reason.SealBroken, "sealed credential is bound to another message body")
	}
	tok := Token(rest[len(sum):])
	clear(plain)
	return tok, nil
}
