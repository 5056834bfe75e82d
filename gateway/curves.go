package gateway

import (
	"fmt"

	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects/reason"
)

// A curve-key rotation keeps the keys it replaced (keys.previous_curves)
// for opening only: whatever names one of them as the key it was sealed
// to (an agent's payload, a held request's or a denied record's
// credential, an exchange request's xkey proof) opens as it did before
// the rotation, and passes every gate it did. Everything the gateway
// seals from then on is sealed with the current key, except a reply,
// which comes from the key its request was sealed to (replyOutput).

// loadPreviousCurves reads keys.previous_curves: each a curve seed, none
// the current key, no two the same.
func (g *Gateway) loadPreviousCurves() error {
	seen := map[string]bool{g.box.PublicKey(): true}
	for i, path := range g.cfg.Keys.PreviousCurves {
		what := fmt.Sprintf("keys.previous_curves[%d]", i)
		g.warnLooseKey(what, path)
		kp, err := identity.ReadSeedFile(path)
		if err != nil {
			return fmt.Errorf("gateway: %s: %w", what, err)
		}
		b, err := identity.NewBox(kp)
		if err != nil {
			return fmt.Errorf("gateway: %s: %w", what, err)
		}
		if seen[b.PublicKey()] {
			return fmt.Errorf("gateway: %s: curve key %s is keys.curve or named twice", what, b.PublicKey())
		}
		seen[b.PublicKey()] = true
		g.prev = append(g.prev, b)
		if g.cfg.Exchange != nil {
			xb, err := identity.NewBox(kp)
			if err != nil {
				return fmt.Errorf("gateway: %s: %w", what, err)
			}
			g.xprev = append(g.xprev, xb)
		}
		g.metrics.PreviousCurveOpens.WithLabelValues(b.PublicKey())
	}
	return nil
}

// previousCurveKeys lists the public keys of keys.previous_curves.
func (g *Gateway) previousCurveKeys() []string {
	keys := make([]string, len(g.prev))
	for i, b := range g.prev {
		keys[i] = b.PublicKey()
	}
	return keys
}

// boxTo returns the box of pub when pub is the gateway's curve key or one
// of keys.previous_curves; nil otherwise.
func (g *Gateway) boxTo(pub string) *identity.Box {
	if pub == g.box.PublicKey() {
		return g.box
	}
	for _, b := range g.prev {
		if pub == b.PublicKey() {
			return b
		}
	}
	return nil
}

// opened counts an open with b when b is a previous key: the metric that
// says when a previous key is no longer needed.
func (g *Gateway) opened(b *identity.Box) {
	if b != g.box {
		g.metrics.PreviousCurveOpens.WithLabelValues(b.PublicKey()).Inc()
	}
}

// openSealed opens a sealed payload from sender that names to as the
// gateway key it was sealed to. A key that is not the gateway's, now or
// before the rotation, is a SealMismatch.
func (g *Gateway) openSealed(sealed []byte, sender, to string) ([]byte, error) {
	b := g.boxTo(to)
	if b == nil {
		return nil, reason.Deny(reason.SealMismatch, "sealed payload is sealed to %s, not to a curve key of this gateway", to)
	}
	plain, err := b.Open(sealed, sender)
	if err == nil {
		g.opened(b)
	}
	return plain, err
}

// openCredential opens a credential the gateway sealed to its curve key
// sealedTo for body (identity.Box.OpenCredential), with that key's box
// when it is the current or a previous one. Any other key is refused by
// the current box, whose denial names both.
func (g *Gateway) openCredential(sealed, sealedTo string, body []byte) (identity.Token, error) {
	b := g.boxTo(sealedTo)
	if b == nil {
		b = g.box
	}
	tok, err := b.OpenCredential(sealed, sealedTo, body)
	if err == nil {
		g.opened(b)
	}
	return tok, err
}

// openOwnCredential opens a credential the gateway sealed to one of its
// curve keys without naming which (an operator's replay authorization):
// the current key first, then each previous one. Each attempt is one
// authenticated open of the same bytes, and there are at most
// 1 + MaxPreviousCurves.
func (g *Gateway) openOwnCredential(sealed string, body []byte) (identity.Token, error) {
	tok, err := g.box.OpenCredential(sealed, g.box.PublicKey(), body)
	if err == nil {
		return tok, nil
	}
	for _, b := range g.prev {
		if t, perr := b.OpenCredential(sealed, b.PublicKey(), body); perr == nil {
			g.opened(b)
			return t, nil
		}
	}
	return "", err
}
