package envelope

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"testing"

	"filippo.io/edwards25519"
	"github.com/oasisprotocol/curve25519-voi/curve"
)

func encodePoint(dst *[32]byte, p *curve.EdwardsPoint) {
	var c curve.CompressedEdwardsY
	c.SetEdwardsPoint(p)
	*dst = c
}

// The checks below hold PublicKey to crypto/ed25519 where Ed25519
// implementations are known to differ: keys and signatures built from
// points of small order, mixed-order keys, and non-canonical encodings.
// crypto/ed25519 runs on filippo.io/edwards25519 (the package Go vendors),
// which the tests use as the reference for decoding and for building
// signatures.

// smallOrder returns the eight points of order dividing 8, from a point
// of order 8.
func smallOrder(t *testing.T) []*edwards25519.Point {
	t.Helper()
	raw, _ := hex.DecodeString("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
	g, err := new(edwards25519.Point).SetBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	pts := []*edwards25519.Point{edwards25519.NewIdentityPoint()}
	for i := 1; i < 8; i++ {
		pts = append(pts, new(edwards25519.Point).Add(pts[i-1], g))
	}
	if new(edwards25519.Point).Add(pts[7], g).Equal(edwards25519.NewIdentityPoint()) != 1 || pts[4].Equal(pts[0]) == 1 {
		t.Fatal("the generator is not of order 8")
	}
	return pts
}

// encodings returns every 32-byte string that decodes to a point whose
// y coordinate is below 2^255 - p + y: the canonical encoding, the
// non-canonical one (y + p) where it fits, and both with the sign bit
// flipped.
func encodings(p *edwards25519.Point) [][]byte {
	canon := p.Bytes()
	out := [][]byte{canon}
	flipped := append([]byte(nil), canon...)
	flipped[31] ^= 0x80
	out = append(out, flipped)
	// y + p for y < 19: add p = 2^255 - 19 as little-endian bytes.
	y := append([]byte(nil), canon...)
	y[31] &= 0x7f
	small := true
	for _, b := range y[1:] {
		small = small && b == 0
	}
	if small && y[0] < 19 {
		nc := make([]byte, 32)
		nc[0] = y[0] + 0xed
		for i := 1; i < 31; i++ {
			nc[i] = 0xff
		}
		nc[31] = 0x7f | canon[31]&0x80
		ncFlipped := append([]byte(nil), nc...)
		ncFlipped[31] ^= 0x80
		out = append(out, nc, ncFlipped)
	}
	return out
}

// TestKeyDecodingMatchesStdlib: NewPublicKey accepts exactly the 32-byte
// strings crypto/ed25519 decodes as a key, and decodes them to the same
// point: the small-order points in every encoding, every y from p to
// 2^255 - 1 with either sign, and random strings.
func TestKeyDecodingMatchesStdlib(t *testing.T) {
	var cases [][]byte
	for _, p := range smallOrder(t) {
		cases = append(cases, encodings(p)...)
	}
	for y := 0; y < 19; y++ {
		b := make([]byte, 32)
		b[0] = 0xed + byte(y)
		for i := 1; i < 31; i++ {
			b[i] = 0xff
		}
		b[31] = 0x7f
		cases = append(cases, b, append(append([]byte(nil), b[:31]...), 0xff))
	}
	for range 20000 {
		b := make([]byte, 32)
		rand.Read(b)
		cases = append(cases, b)
	}
	accepted := 0
	for _, raw := range cases {
		ref, refErr := new(edwards25519.Point).SetBytes(raw)
		k, err := NewPublicKey(raw)
		if (err == nil) != (refErr == nil) {
			t.Fatalf("key %x: NewPublicKey error %v, crypto/ed25519's decoding error %v", raw, err, refErr)
		}
		if err != nil {
			continue
		}
		accepted++
		var got [32]byte
		encodePoint(&got, &k.negA)
		if want := new(edwards25519.Point).Negate(ref).Bytes(); string(got[:]) != string(want) {
			t.Fatalf("key %x: decoded to -A = %x; crypto/ed25519's -A = %x", raw, got, want)
		}
	}
	// About half of all strings are points; every small-order encoding is.
	if accepted < 9000 || accepted > 11500 {
		t.Fatalf("accepted %d of %d keys; the cases are not what they claim", accepted, len(cases))
	}
}

// TestEdgeSignaturesMatchStdlib builds signatures whose verdict depends
// on the verification equation: keys with a small-order component
// (mixed order) or of small order, R with a small-order component, S
// equal to the correct value plus the group order, and R or A in
// non-canonical encodings. PublicKey (with and without its table) and
// crypto/ed25519 must agree on
// every one, and the cases must include signatures each accepts and
// rejects for each kind of key.
func TestEdgeSignaturesMatchStdlib(t *testing.T) {
	torsion := smallOrder(t)
	msg := []byte("edge")
	type tally struct{ ok, bad int }
	byKind := map[string]tally{}
	check := func(kind string, pub, sig []byte) {
		want := ed25519.Verify(pub, msg, sig)
		k, err := NewPublicKey(pub)
		got := err == nil && verifyBoth(t, k, msg, (*[ed25519.SignatureSize]byte)(sig))
		if got != want {
			t.Fatalf("%s: key %x sig %x: PublicKey %v, crypto/ed25519 %v", kind, pub, sig, got, want)
		}
		tl := byKind[kind]
		if got {
			tl.ok++
		} else {
			tl.bad++
		}
		byKind[kind] = tl
	}
	scalarOf := func(b []byte) *edwards25519.Scalar {
		s, err := new(edwards25519.Scalar).SetUniformBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for trial := range 24 {
		seed := make([]byte, 64)
		rand.Read(seed)
		a := scalarOf(seed)
		for ti, tA := range torsion {
			kind := "mixed-order key"
			if ti == 0 {
				kind = "key"
			}
			A := new(edwards25519.Point).Add(new(edwards25519.Point).ScalarBaseMult(a), tA)
			if trial%4 == 0 { // a key of small order: a = 0
				kind = "small-order key"
				A = tA
			}
			for _, pubEnc := range encodings(A) {
				rand.Read(seed)
				r := scalarOf(seed)
				if trial%3 == 1 { // R of small order, in every encoding
					r = edwards25519.NewScalar()
				}
				for _, tR := range torsion {
					R := new(edwards25519.Point).Add(new(edwards25519.Point).ScalarBaseMult(r), tR)
					for _, rEnc := range encodings(R) {
						h := sha512.Sum512(append(append(append([]byte(nil), rEnc...), pubEnc...), msg...))
						k := scalarOf(h[:])
						aa := a
						if kind == "small-order key" {
							aa = edwards25519.NewScalar()
						}
						S := new(edwards25519.Scalar).MultiplyAdd(k, aa, r)
						sig := append(append([]byte(nil), rEnc...), S.Bytes()...)
						check(kind, pubEnc, sig)
						check("S + L", pubEnc, addOrder(sig))
					}
				}
			}
		}
	}
	for _, kind := range []string{"key", "mixed-order key", "small-order key"} {
		if tl := byKind[kind]; tl.ok == 0 || tl.bad == 0 {
			t.Errorf("%s: %+v; want signatures both accepted and rejected", kind, tl)
		}
	}
	if tl := byKind["S + L"]; tl.bad == 0 || tl.ok != 0 {
		t.Errorf("S + L: %+v; want every one rejected", tl)
	}
	t.Logf("%+v", byKind)
}

// addOrder returns sig with L added to S (little-endian), the
// non-canonical S that malleability checks exist for.
func addOrder(sig []byte) []byte {
	L := []byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}
	out := append([]byte(nil), sig...)
	carry := 0
	for i := range 32 {
		v := int(out[32+i]) + int(L[i]) + carry
		out[32+i] = byte(v)
		carry = v >> 8
	}
	return out
}
