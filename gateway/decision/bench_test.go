package decision

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/nats-io/nkeys"
)

func BenchmarkDecisionSign(b *testing.B) {
	fx := newFixture(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign(fx.gw, fx.claims); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecisionVerify: parse, claim rules, Ed25519 verify and
// CheckBinding of a 64-byte body and a small payload.
func BenchmarkDecisionVerify(b *testing.B) {
	fx := newFixture(b)
	tok := fx.sign(b, fx.gw, nil)
	b.ReportAllocs()
	for b.Loop() {
		c, err := Verify(tok, fx.opt)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.CheckBinding(body, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEd25519Baseline signs and verifies a token-sized message with
// crypto/ed25519 alone: the floor under Sign and Verify on this machine.
func BenchmarkEd25519Baseline(b *testing.B) {
	fx := newFixture(b)
	tok := fx.sign(b, fx.gw, nil)
	msg := []byte(tok[:len(tok)-87])
	b.Run("sign", func(b *testing.B) {
		for b.Loop() {
			_ = fx.gw.Sign(msg)
		}
	})
	sig := fx.gw.Sign(msg)
	pub := ed25519PublicKey(b, fx.gw.PublicKey())
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("bad signature")
			}
		}
	})
}

func ed25519PublicKey(b *testing.B, pub string) ed25519.PublicKey {
	raw, err := nkeys.Decode(nkeys.PrefixByteServer, []byte(pub))
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkPrepare: one token's claims checked, encoded and hashed into
// its Merkle leaf (the gateway's per-token cost; the signature is per
// batch). Each token has its own digests, trace and message id, as each
// message's has: the same ones every time would let the branch predictor
// learn their characters.
func BenchmarkPrepare(b *testing.B) {
	fx := newFixture(b)
	claims := make([]Claims, 1024)
	for i := range claims {
		c := fx.claims
		var r [16]byte
		rand.Read(r[:])
		c.TraceID, c.MessageID = hex.EncodeToString(r[:]), hex.EncodeToString(r[8:])+hex.EncodeToString(r[:4])
		c.BodyDigest, c.PayloadDigest = Digest(r[:4]), Digest(r[4:])
		claims[i] = c
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := Prepare(fx.gw, claims[i%len(claims)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkSignPending256: a gateway batch's tokens (256, prepared
// beforehand) signed together and each written out; per op.
func BenchmarkSignPending256(b *testing.B) {
	fx := newFixture(b)
	ps := make([]*Pending, 256)
	for i := range ps {
		p, err := Prepare(fx.gw, fx.claims)
		if err != nil {
			b.Fatal(err)
		}
		ps[i] = p
	}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		signed, err := SignPending(fx.gw, ps)
		if err != nil {
			b.Fatal(err)
		}
		for i := range ps {
			buf = signed.AppendToken(buf[:0], i)
		}
	}
}
