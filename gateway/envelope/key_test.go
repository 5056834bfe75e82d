package envelope

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/agentgw/agentgw/subjects/reason"
)

// TestPublicKeyMatchesStdlib runs every Wycheproof Ed25519 vector through
// PublicKey and crypto/ed25519: both must agree with the vector.
func TestPublicKeyMatchesStdlib(t *testing.T) {
	file := loadWycheproof(t)
	n := 0
	for _, g := range file.TestGroups {
		pk := mustHex(t, g.PublicKey.PK)
		k, kerr := NewPublicKey(pk)
		for _, tc := range g.Tests {
			n++
			msg, sig := mustHex(t, tc.Msg), mustHex(t, tc.Sig)
			want := tc.Result == "valid"
			got := false
			if kerr == nil && len(sig) == ed25519.SignatureSize {
				got = verifyBoth(t, k, msg, (*[ed25519.SignatureSize]byte)(sig))
			}
			if got != want || VerifyBytes(pk, msg, sig) != want {
				t.Errorf("tc %d: PublicKey = %v, crypto/ed25519 = %v; want %v", tc.TCID, got, VerifyBytes(pk, msg, sig), want)
			}
		}
	}
	if n != 151 {
		t.Errorf("ran %d vectors; want 151", n)
	}
}

// precomputed holds the tests' keys with their tables, by encoding.
var precomputed sync.Map

// verifyBoth verifies sig (no signing context) with k and with a key
// decoded from the same bytes and precomputed; the two must agree.
func verifyBoth(t testing.TB, k *PublicKey, msg []byte, sig *[ed25519.SignatureSize]byte) bool {
	t.Helper()
	v, ok := precomputed.Load(k.raw)
	if !ok {
		p, err := NewPublicKey(k.raw[:])
		if err != nil {
			t.Fatal(err)
		}
		p.Precompute()
		if !p.Precomputed() || k.Precomputed() {
			t.Fatal("Precompute did not build the table, or built another key's")
		}
		v, _ = precomputed.LoadOrStore(k.raw, p)
	}
	got := k.verify(nil, msg, sig)
	if pre := v.(*PublicKey).verify(nil, msg, sig); pre != got {
		t.Fatalf("key %x sig %x: %v as decoded, %v precomputed", k.raw, sig[:], got, pre)
	}
	return got
}

func TestPublicKeyVerify(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	k, err := NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"v":1}`)
	sig := Sign(priv, body)
	if err := k.Verify(body, sig); err != nil {
		t.Fatalf("Verify(own signature) = %v", err)
	}
	for name, tc := range map[string]struct {
		body []byte
		sig  string
	}{
		"other body":     {[]byte(`{"v":2}`), sig},
		"no context":     {body, base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, body))},
		"short":          {body, sig[:85]},
		"padded":         {body, sig + "="},
		"not base64":     {body, "!" + sig[1:]},
		"other key sig":  {body, Sign(ed25519.NewKeyFromSeed(make([]byte, 32)), body)},
		"high bits of S": {body, flipLast(sig)},
	} {
		if err := k.Verify(tc.body, tc.sig); !errors.Is(err, reason.BadSignature) {
			t.Errorf("%s: Verify = %v; want bad_signature", name, err)
		}
	}
	for _, bad := range [][]byte{nil, make([]byte, 31), mustHex(t, "0200000000000000000000000000000000000000000000000000000000000000")} {
		if _, err := NewPublicKey(bad); err == nil {
			t.Errorf("NewPublicKey(%x) accepted a non-key", bad)
		}
	}
}

func flipLast(sigB64 string) string {
	sig, _ := base64.RawURLEncoding.DecodeString(sigB64)
	sig[63] |= 0xe0
	return base64.RawURLEncoding.EncodeToString(sig)
}

// FuzzPublicKeyMatchesStdlib: on any key seed, message and signature
// mutation, PublicKey.Verify and the crypto/ed25519 path agree.
func FuzzPublicKeyMatchesStdlib(f *testing.F) {
	f.Add(make([]byte, 32), []byte(`{"v":1}`), uint8(0), uint8(0), false)
	f.Add([]byte("another seed of thirty-two bytes"), []byte("x"), uint8(63), uint8(0x80), true)
	f.Fuzz(func(t *testing.T, seed, body []byte, at, xor uint8, rawKey bool) {
		if len(seed) != ed25519.SeedSize {
			return
		}
		priv := ed25519.NewKeyFromSeed(seed)
		pub := priv.Public().(ed25519.PublicKey)
		if rawKey {
			pub = seed // an arbitrary 32-byte string as the key
		}
		sig, _ := base64.RawURLEncoding.DecodeString(Sign(priv, body))
		sig[int(at)%len(sig)] ^= xor
		sigB64 := base64.RawURLEncoding.EncodeToString(sig)
		want := Verify(pub, body, sigB64) == nil
		k, err := NewPublicKey(pub)
		got := err == nil && k.Verify(body, sigB64) == nil
		if err == nil {
			k.Precompute()
			if pre := k.Verify(body, sigB64) == nil; pre != got {
				t.Fatalf("PublicKey.Verify = %v as decoded, %v precomputed", got, pre)
			}
		}
		if got != want {
			t.Fatalf("PublicKey.Verify = %v, crypto/ed25519 = %v (key error %v)", got, want, err)
		}
	})
}

func BenchmarkVerifyPublicKey1KiB(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	body := make([]byte, 1024)
	for i := range body {
		body[i] = 'a'
	}
	sig := Sign(priv, body)
	k, _ := NewPublicKey(pub)
	b.Run("crypto/ed25519", func(b *testing.B) {
		for b.Loop() {
			if Verify(pub, body, sig) != nil {
				b.Fatal("no")
			}
		}
	})
	b.Run("PublicKey", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if k.Verify(body, sig) != nil {
				b.Fatal("no")
			}
		}
	})
	pre, _ := NewPublicKey(pub)
	pre.Precompute()
	b.Run("PublicKey/precomputed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if pre.Verify(body, sig) != nil {
				b.Fatal("no")
			}
		}
	})
	b.Run("Precompute", func(b *testing.B) {
		for b.Loop() {
			k, _ := NewPublicKey(pub)
			k.Precompute()
		}
	})
}

func TestCheckPayload(t *testing.T) {
	ok := []string{`{}`, `{"a":1,"b":{"c":[1,"x",null]}}`, " {\"a\":\"\\u00e9\"} \n"}
	for _, p := range ok {
		if err := CheckPayload([]byte(p), Limits{}); err != nil {
			t.Errorf("CheckPayload(%s) = %v", p, err)
		}
	}
	bad := map[string]string{
		"duplicate":           `{"amount_cents":999999,"amount_cents":5}`,
		"duplicate by case":   `{"amount_cents":5,"AMOUNT_CENTS":999999}`,
		"nested duplicate":    `{"a":{"x":1,"x":2}}`,
		"escaped duplicate":   `{"a":1,"\u0061":2}`,
		"not an object":       `[1]`,
		"trailing data":       `{"a":1}{"a":2}`,
		"invalid utf-8":       "{\"a\":\"\xff\"}",
		"huge exponent":       `{"a":1e999999}`,
		"truncated":           `{"a":`,
		"lone surrogate":      `{"a":"\ud800"}`,
		"control in a string": "{\"a\":\"\x01\"}",
	}
	for name, p := range bad {
		if err := CheckPayload([]byte(p), Limits{}); !errors.Is(err, reason.MalformedEnvelope) {
			t.Errorf("%s: CheckPayload = %v; want malformed_envelope", name, err)
		}
	}
	deep := strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)
	if err := CheckPayload([]byte(deep), Limits{}); err == nil {
		t.Error("CheckPayload accepted 40 levels of nesting")
	}
	if err := CheckPayload([]byte(`{"a":"`+strings.Repeat("x", 100)+`"}`), Limits{MaxBytes: 50}); !errors.Is(err, reason.Oversized) {
		t.Errorf("over MaxBytes: %v; want oversized", err)
	}
}

// FuzzDecodePayloadMatchesSchemaDecoder: on every input the strict check
// accepts, DecodePayload yields exactly what the schema validator's own
// decoder (encoding/json, UseNumber) yields; on every input it refuses,
// DecodePayload refuses too.
func FuzzDecodePayloadMatchesSchemaDecoder(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"b":[true,false,null,"x\u00e9\ud83d\ude00"],"c":{"d":-1.5e3}}`,
		`{"a":"\"\\\/\b\f\n\r\t"}`, `{"a":[],"b":{}}`, `{"a":1,"a":2}`, `[1]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodePayload(data, Limits{})
		if CheckPayload(data, Limits{}) != nil {
			if err == nil {
				t.Fatalf("DecodePayload accepted what CheckPayload refuses: %q", data)
			}
			return
		}
		if err != nil {
			t.Fatalf("DecodePayload(%q) = %v after CheckPayload accepted it", data, err)
		}
		want, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("strict check accepted %q, encoding/json refuses it: %v", data, err)
		}
		if !reflect.DeepEqual(any(got), want) {
			t.Fatalf("DecodePayload(%q) = %#v; encoding/json = %#v", data, got, want)
		}
	})
}
