package decision

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects/reason"
)

// fuzzGateway is a gateway signer from a fixed seed: Ed25519 signatures
// are deterministic, so with fixed claims (jti included) every fuzz
// worker signs the same seed tokens, and knows them.
func fuzzGateway(t testing.TB) *identity.Signer {
	return newSigner(t, func() (nkeys.KeyPair, error) {
		return nkeys.FromRawSeed(nkeys.PrefixByteServer, bytes.Repeat([]byte{7}, 32))
	})
}

// fuzzTokens are the tokens the fuzz target trusts: one alone and the
// leaves of batches of two and five, of the fixture's claims under the
// fixed gateway key.
func fuzzTokens(t testing.TB) (*fixture, []string) {
	t.Helper()
	fx := newFixture(t)
	fx.gw = fuzzGateway(t)
	agent, err := nkeys.FromRawSeed(nkeys.PrefixByteUser, bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	fx.claims.Subject, _ = agent.PublicKey()
	fx.claims.ID = "FUZZ0000000000000000000000" // Sign would draw one at random
	fx.opt.TrustedGateways = []string{fx.gw.PublicKey()}
	toks := []string{fx.sign(t, fx.gw, nil)}
	for _, n := range []int{2, 5} {
		ps := make([]*Pending, n)
		for i := range ps {
			c := fx.claims
			c.MessageID = strings.Repeat(string(rune('a'+i)), 32)
			c.ID = fmt.Sprintf("FUZZ%022d", n*10+i)
			p, err := Prepare(fx.gw, c)
			if err != nil {
				t.Fatal(err)
			}
			ps[i] = p
		}
		batch, err := SignBatch(fx.gw, ps)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range batch {
			toks = append(toks, tok.Reveal())
		}
	}
	return fx, toks
}

// FuzzVerify: Verify never panics on any string; a refusal is a Denial of
// one of its documented codes with no claims; and nothing verifies but
// the tokens the gateway signed, byte for byte: no re-encoding, padding,
// reordering of a proof or of claims yields another accepted string.
func FuzzVerify(f *testing.F) {
	fx, toks := fuzzTokens(f)
	for _, tok := range toks {
		if _, err := Verify(tok, fx.opt); err != nil {
			f.Fatalf("a seed token does not verify: %v", err)
		}
		f.Add(tok)
	}
	f.Add("")
	f.Add("....")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := Verify(tok, fx.opt)
		if err != nil {
			switch reason.Of(err) {
			case reason.DecisionMissing, reason.DecisionInvalid, reason.DecisionExpired, reason.DecisionAudience:
			default:
				t.Fatalf("Verify(%q) = %v: not one of its codes", tok, err)
			}
			if c != nil {
				t.Fatalf("Verify(%q) returned claims and %v", tok, err)
			}
			return
		}
		if !slices.Contains(toks, tok) {
			t.Fatalf("Verify accepted %q, which the gateway never signed", tok)
		}
	})
}
