package identity

import (
	"bytes"
	"testing"
)

func benchVerify(b *testing.B, cacheSize int) {
	w := newWorld(b)
	cfg := w.cfg
	cfg.CacheSize = cacheSize
	ver, err := NewVerifier(cfg, NewRevocations())
	if err != nil {
		b.Fatal(err)
	}
	tok := w.v.Credential.JWT
	if _, err := ver.Verify(tok, w.now); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ver.Verify(tok, w.now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCredentialMiss: parse, claim checks and Ed25519 verify
// on every call (cache disabled).
func BenchmarkVerifyCredentialMiss(b *testing.B) { benchVerify(b, -1) }

// BenchmarkVerifyCredentialHit: SHA-256 of the token, cache lookup, and
// the trust, revocation, audience and time checks.
func BenchmarkVerifyCredentialHit(b *testing.B) { benchVerify(b, DefaultCacheSize) }

func benchBoxes(b *testing.B) (*Box, *Box, []byte) {
	b.Helper()
	agent, err := NewBox(mustKey(b, NewCurve))
	if err != nil {
		b.Fatal(err)
	}
	gw, err := NewBox(mustKey(b, NewCurve))
	if err != nil {
		b.Fatal(err)
	}
	return agent, gw, bytes.Repeat([]byte("x"), 1024)
}

func BenchmarkSeal1KiB(b *testing.B) {
	agent, gw, msg := benchBoxes(b)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := agent.Seal(msg, gw.PublicKey()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen1KiB opens with the shared key already precomputed.
func BenchmarkOpen1KiB(b *testing.B) {
	agent, gw, msg := benchBoxes(b)
	sealed, err := agent.Seal(msg, gw.PublicKey())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := gw.Open(sealed, agent.PublicKey()); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := gw.Open(sealed, agent.PublicKey()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNkeysOpen1KiB is the baseline: nkeys recomputes the shared key.
func BenchmarkNkeysOpen1KiB(b *testing.B) {
	akp, gkp := mustKey(b, NewCurve), mustKey(b, NewCurve)
	msg := bytes.Repeat([]byte("x"), 1024)
	sealed, err := akp.Seal(msg, mustPub(b, gkp))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := gkp.Open(sealed, mustPub(b, akp)); err != nil {
			b.Fatal(err)
		}
	}
}
