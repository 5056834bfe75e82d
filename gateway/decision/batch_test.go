package decision

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/subjects/reason"
)

// prepare prepares n tokens of the fixture's claims, with distinct
// message ids msg-<i>.
func (fx *fixture) prepare(t *testing.T, n int) []*Pending {
	t.Helper()
	ps := make([]*Pending, n)
	for i := range ps {
		c := fx.claims
		c.MessageID = fmt.Sprintf("msg-%016d", i)
		p, err := Prepare(fx.gw, c)
		if err != nil {
			t.Fatalf("Prepare = %v", err)
		}
		ps[i] = p
	}
	return ps
}

// signBatch signs n tokens of the fixture's claims, with distinct message
// ids, in one batch.
func (fx *fixture) signBatch(t *testing.T, n int) []string {
	t.Helper()
	toks, err := SignBatch(fx.gw, fx.prepare(t, n))
	if err != nil {
		t.Fatalf("SignBatch = %v", err)
	}
	out := make([]string, n)
	for i, tok := range toks {
		out[i] = tok.Reveal()
	}
	return out
}

// TestBatchEveryTokenVerifies: every tree size up to 33 (powers of two
// and the uneven shapes between), every leaf verifies on its own, with
// its own claims, and the batch shares one signature.
func TestBatchEveryTokenVerifies(t *testing.T) {
	fx := newFixture(t)
	for n := 1; n <= 33; n++ {
		toks := fx.signBatch(t, n)
		sig := strings.Split(toks[0], ".")[3]
		for i, tok := range toks {
			clearVerifiedRoots()
			c, err := Verify(tok, fx.opt)
			if err != nil {
				t.Fatalf("size %d leaf %d: Verify = %v", n, i, err)
			}
			if want := fmt.Sprintf("msg-%016d", i); c.MessageID != want {
				t.Fatalf("size %d leaf %d: message id %s; want %s", n, i, c.MessageID, want)
			}
			if s := strings.Split(tok, ".")[3]; s != sig {
				t.Fatalf("size %d leaf %d has its own signature; want one per batch", n, i)
			}
		}
	}
}

// TestBatchForgeries: nothing of one token can be combined with another
// token's parts, and a proof cannot be bent to another position or tree.
func TestBatchForgeries(t *testing.T) {
	fx := newFixture(t)
	toks := fx.signBatch(t, 7)
	part := func(tok string, i int) string { return strings.Split(tok, ".")[i] }
	join := func(p ...string) string { return strings.Join(p, ".") }
	proof := func(index, size byte, path string) string {
		raw, _ := b64.DecodeString(path)
		return b64.EncodeToString(append([]byte{index, size}, raw[2:]...))
	}
	other := fx.sign(t, fx.other, nil) // another gateway's batch of one
	tests := []struct{ name, token string }{
		{"claims-of-leaf-1-with-proof-of-leaf-2", join(part(toks[1], 0), part(toks[1], 1), part(toks[2], 2), part(toks[2], 3))},
		{"proof-index-moved", join(part(toks[3], 0), part(toks[3], 1), proof(4, 7, part(toks[3], 2)), part(toks[3], 3))},
		{"proof-size-changed", join(part(toks[3], 0), part(toks[3], 1), proof(3, 8, part(toks[3], 2)), part(toks[3], 3))},
		{"proof-path-truncated", join(part(toks[3], 0), part(toks[3], 1), b64.EncodeToString(mustDecode(t, part(toks[3], 2))[:2+32]), part(toks[3], 3))},
		{"proof-path-extended", join(part(toks[3], 0), part(toks[3], 1), b64.EncodeToString(append(mustDecode(t, part(toks[3], 2)), make([]byte, 32)...)), part(toks[3], 3))},
		{"leaf-as-its-own-root", join(part(toks[3], 0), part(toks[3], 1), b64.EncodeToString([]byte{0, 1}), part(toks[3], 3))},
		{"signature-of-another-gateway", join(part(toks[0], 0), part(toks[0], 1), part(toks[0], 2), part(other, 3))},
		{"five-parts", toks[0] + "." + part(toks[0], 3)},
		// The same index and size written in more bytes than needed: the
		// root and signature still match, but a token has one encoding.
		{"proof-index-not-minimal", join(part(toks[3], 0), part(toks[3], 1), padded(t, part(toks[3], 2), 0), part(toks[3], 3))},
		{"proof-size-not-minimal", join(part(toks[3], 0), part(toks[3], 1), padded(t, part(toks[3], 2), 1), part(toks[3], 3))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A verified root must not make a forgery pass either.
			if _, err := Verify(toks[0], fx.opt); err != nil {
				t.Fatalf("genuine token: %v", err)
			}
			c, err := Verify(tt.token, fx.opt)
			if !errors.Is(err, reason.DecisionInvalid) || c != nil {
				t.Fatalf("Verify = %v; want %s", err, reason.DecisionInvalid)
			}
		})
	}
}

// padded rewrites a proof (index and size are single-byte uvarints
// here) with its which-th uvarint (0: index, 1: size) in two bytes.
func padded(t *testing.T, proof string, which int) string {
	t.Helper()
	raw := mustDecode(t, proof)
	if raw[0] >= 0x80 || raw[1] >= 0x80 {
		t.Fatal("padded wants single-byte index and size")
	}
	out := append([]byte(nil), raw[:which]...)
	out = append(out, raw[which]|0x80, 0x00)
	out = append(out, raw[which+1:]...)
	return b64.EncodeToString(out)
}

func TestSignBatchRejects(t *testing.T) {
	fx := newFixture(t)
	if _, err := SignBatch(fx.gw, nil); err == nil {
		t.Error("SignBatch(empty) succeeded")
	}
	p, err := Prepare(fx.gw, fx.claims)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SignBatch(nil, []*Pending{p}); err == nil {
		t.Error("SignBatch without a signer succeeded")
	}
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := b64.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func clearVerifiedRoots() {
	verifiedRoots.Lock()
	clear(verifiedRoots.m)
	verifiedRoots.Unlock()
}

// TestSignedWritesTheTokens: a signed batch writes each token where it
// is asked (AppendToken) exactly as Token and SignBatch return it, with
// TokenLen its length, for tree sizes from one to a full gateway batch.
func TestSignedWritesTheTokens(t *testing.T) {
	fx := newFixture(t)
	for _, n := range []int{1, 2, 3, 5, 8, 33, 256, 512} {
		ps := fx.prepare(t, n)
		signed, err := SignPending(fx.gw, ps)
		if err != nil {
			t.Fatal(err)
		}
		toks, err := SignBatch(fx.gw, ps)
		if err != nil {
			t.Fatal(err)
		}
		if signed.Len() != n {
			t.Fatalf("size %d: Len = %d", n, signed.Len())
		}
		for i := range n {
			tok := signed.Token(i).Reveal()
			b := signed.AppendToken([]byte("prefix"), i)
			if string(b) != "prefix"+tok || tok != toks[i].Reveal() || signed.TokenLen(i) != len(tok) {
				t.Fatalf("size %d leaf %d: AppendToken, Token, SignBatch and TokenLen disagree", n, i)
			}
			clearVerifiedRoots()
			if _, err := Verify(tok, fx.opt); err != nil {
				t.Fatalf("size %d leaf %d: Verify = %v", n, i, err)
			}
		}
	}
}
