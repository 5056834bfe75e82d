package envelope

import (
	"crypto/ed25519"
	"strings"
	"testing"
)

// body1KiB returns a valid body of exactly 1024 bytes with a plain payload.
func body1KiB(tb testing.TB) []byte {
	tb.Helper()
	base := plain(`{"order_id":"ord_123","amount_cents":2500,"note":""}`)
	pad := 1024 - len(base)
	raw := plain(`{"order_id":"ord_123","amount_cents":2500,"note":"` + strings.Repeat("x", pad) + `"}`)
	if len(raw) != 1024 {
		tb.Fatalf("body is %d bytes", len(raw))
	}
	if _, err := Parse(raw, Limits{}); err != nil {
		tb.Fatal(err)
	}
	return raw
}

func BenchmarkParse1KiB(b *testing.B) {
	raw := body1KiB(b)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(raw, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseVerify1KiB(b *testing.B) {
	raw := body1KiB(b)
	pub, priv, _ := ed25519.GenerateKey(nil)
	sig := Sign(priv, raw)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(raw, Limits{}); err != nil {
			b.Fatal(err)
		}
		if err := Verify(pub, raw, sig); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify1KiB(b *testing.B) {
	raw := body1KiB(b)
	pub, priv, _ := ed25519.GenerateKey(nil)
	sig := Sign(priv, raw)
	b.ReportAllocs()
	for b.Loop() {
		if err := Verify(pub, raw, sig); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseSealed(b *testing.B) {
	raw := sealed(strings.Repeat("eGt2", 200), testFrom, testTo)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(raw, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
