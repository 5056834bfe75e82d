package gateway

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects/reason"
)

// The gateway seals with one curve key (keys.curve) and opens with it and
// with the keys of keys.accepted_curves: the key it is rotating away from,
// or, on a scaled-out deployment, the one it is about to take. Whatever
// names an accepted key as the key it was sealed to (an agent's payload,
// a tool's response, a held request's or a denied record's credential,
// an exchange request's xkey proof) opens as with the current key and
// passes every gate it would. Nothing new is sealed with an accepted
// key, except the reply to a request sealed to it (replyOutput).

// The details of the seal_mismatch denials the stateless gates give: each
// says which end of the box is wrong (internal/eval reads them).
const (
	SealNotFromCredential = "sealed payload is not from the credential's xkey"
	SealFromGateway       = "sealed payload is from a curve key of this gateway, which is no agent's"
	SealNotToGateway      = "sealed payload is not sealed to a curve key of this gateway (keys.curve or keys.accepted_curves)"
)

// loadAcceptedCurves reads keys.accepted_curves: each a curve seed, none
// the current key, no two the same.
func (g *Gateway) loadAcceptedCurves() error {
	seen := map[string]bool{g.box.PublicKey(): true}
	for i, path := range g.cfg.Keys.AcceptedCurves {
		what := fmt.Sprintf("keys.accepted_curves[%d]", i)
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
		g.accepted = append(g.accepted, b)
		if g.cfg.Exchange != nil {
			xb, err := identity.NewBox(kp)
			if err != nil {
				return fmt.Errorf("gateway: %s: %w", what, err)
			}
			g.xaccepted = append(g.xaccepted, xb)
		}
		if g.acceptedOpens == nil {
			g.acceptedOpens = map[*identity.Box]prometheus.Counter{}
		}
		g.acceptedOpens[b] = g.metrics.AcceptedCurveOpens.WithLabelValues(b.PublicKey())
	}
	return nil
}

// acceptedCurveKeys lists the public keys of keys.accepted_curves.
func (g *Gateway) acceptedCurveKeys() []string {
	keys := make([]string, len(g.accepted))
	for i, b := range g.accepted {
		keys[i] = b.PublicKey()
	}
	return keys
}

// ownCurveKey reports whether pub is the gateway's curve key or one of
// keys.accepted_curves, in either spelling (identity.OtherSpelling).
func (g *Gateway) ownCurveKey(pub string) bool {
	if g.boxTo(pub) != nil {
		return true
	}
	other, ok := identity.OtherSpelling(pub)
	return ok && g.boxTo(other) != nil
}

// boxTo returns the box of pub when pub is the gateway's curve key or one
// of keys.accepted_curves; nil otherwise.
func (g *Gateway) boxTo(pub string) *identity.Box {
	if pub == g.box.PublicKey() {
		return g.box
	}
	for _, b := range g.accepted {
		if pub == b.PublicKey() {
			return b
		}
	}
	return nil
}

// boxOrCurrent is boxTo(pub), or the current key's box when pub is none
// of the gateway's keys.
func (g *Gateway) boxOrCurrent(pub string) *identity.Box {
	if b := g.boxTo(pub); b != nil {
		return b
	}
	return g.box
}

// countAcceptedOpen counts an open with b when b is an accepted key: the
// metric that says when a key rotated away from is no longer needed.
func (g *Gateway) countAcceptedOpen(b *identity.Box) {
	if c, ok := g.acceptedOpens[b]; ok {
		c.Inc()
	}
}

// openSealed opens a sealed payload from sender that names to as the
// gateway key it was sealed to. A key that is neither the current nor an
// accepted one is a SealMismatch.
func (g *Gateway) openSealed(sealed []byte, sender, to string) ([]byte, error) {
	b := g.boxTo(to)
	if b == nil { // verify refused such a key; fail closed all the same
		return nil, reason.Deny(reason.SealMismatch, "%s", SealNotToGateway)
	}
	plain, err := b.Open(sealed, sender)
	if err == nil {
		g.countAcceptedOpen(b)
	}
	return plain, err
}

// openCredential opens a credential the gateway sealed to its curve key
// sealedTo for body (identity.Box.OpenCredential), with that key's box
// when it is the current or an accepted one. Any other key is refused by
// the current box, whose denial names both.
func (g *Gateway) openCredential(sealed, sealedTo string, body []byte) (identity.Token, error) {
	b := g.boxOrCurrent(sealedTo)
	tok, err := b.OpenCredential(sealed, sealedTo, body)
	if err == nil {
		g.countAcceptedOpen(b)
	}
	return tok, err
}

// openOwnCredential opens a credential the gateway sealed to one of its
// curve keys without naming which (an operator's replay authorization):
// the current key first, then each accepted one. Each attempt is one
// authenticated open of the same bytes, and there are at most
// 1 + MaxAcceptedCurves.
func (g *Gateway) openOwnCredential(sealed string, body []byte) (identity.Token, error) {
	tok, err := g.box.OpenCredential(sealed, g.box.PublicKey(), body)
	if err == nil {
		return tok, nil
	}
	for _, b := range g.accepted {
		if t, perr := b.OpenCredential(sealed, b.PublicKey(), body); perr == nil {
			g.countAcceptedOpen(b)
			return t, nil
		}
	}
	return "", err
}
