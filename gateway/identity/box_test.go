package identity

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/agentgw/agentgw/subjects/reason"
)

func TestBoxWireVector(t *testing.T) {
	v := loadVector(t)
	sp := v.SealedPayload
	if sp.To != v.Keys.GatewayXKeyPub || sp.From != v.Keys.AgentXKeyPublic {
		t.Fatalf("vector sealed_payload is not agent xkey -> gateway xkey")
	}
	sealed, err := base64.RawURLEncoding.DecodeString(sp.SealedB64)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := NewBox(mustSeed(t, v.Keys.GatewayXKeySeed))
	if err != nil {
		t.Fatal(err)
	}
	if gw.PublicKey() != sp.To {
		t.Fatalf("gateway box key = %s; want %s", gw.PublicKey(), sp.To)
	}
	got, err := gw.Open(sealed, sp.From)
	if err != nil {
		t.Fatalf("Open(vector) = %v", err)
	}
	if string(got) != sp.Plaintext {
		t.Errorf("Open(vector) = %q; want %q", got, sp.Plaintext)
	}
}

func TestBoxInteropWithNkeys(t *testing.T) {
	v := loadVector(t)
	agentKP := mustSeed(t, v.Keys.AgentXKeySeed)
	gwKP := mustSeed(t, v.Keys.GatewayXKeySeed)
	agent, _ := NewBox(agentKP)
	gw, _ := NewBox(gwKP)
	msg := bytes.Repeat([]byte("payload "), 128)

	// Box seals, nkeys opens.
	sealed, err := agent.Seal(msg, gw.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	got, err := gwKP.Open(sealed, agent.PublicKey())
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("nkeys Open(Box.Seal) = %v", err)
	}
	// nkeys seals, Box opens (twice: miss then cached shared key).
	sealed2, err := agentKP.Seal(msg, gw.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		got, err = gw.Open(sealed2, agent.PublicKey())
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("Box.Open(nkeys Seal) #%d = %v", i, err)
		}
	}
	// Empty plaintext.
	sealed3, _ := agent.Seal(nil, gw.PublicKey())
	if got, err := gwKP.Open(sealed3, agent.PublicKey()); err != nil || len(got) != 0 {
		t.Errorf("nkeys Open(Box.Seal(empty)) = %q, %v", got, err)
	}
	// Random nonces: sealing twice differs.
	a, _ := agent.Seal(msg, gw.PublicKey())
	b, _ := agent.Seal(msg, gw.PublicKey())
	if bytes.Equal(a, b) {
		t.Error("two seals of one message are identical")
	}
}

func TestBoxDenials(t *testing.T) {
	v := loadVector(t)
	agent, _ := NewBox(mustSeed(t, v.Keys.AgentXKeySeed))
	gw, _ := NewBox(mustSeed(t, v.Keys.GatewayXKeySeed))
	mallory, _ := NewBox(mustKey(t, NewCurve))
	msg := []byte(`{"order_id":"ord_123"}`)
	sealed, _ := agent.Seal(msg, gw.PublicKey())
	flip := func(i int) []byte {
		c := bytes.Clone(sealed)
		c[i] ^= 1
		return c
	}
	// A low-order Curve25519 point: the zero key, encoded as an X key.
	zeroX := encodeCurveForTest(t, make([]byte, 32))
	toMallory, _ := agent.Seal(msg, mallory.PublicKey())

	tests := []struct {
		name   string
		sealed []byte
		sender string
		want   reason.Code
	}{
		{"deny/wrong-sender", sealed, mallory.PublicKey(), reason.SealBroken},
		{"deny/to-another-key", toMallory, agent.PublicKey(), reason.SealBroken},
		{"deny/tampered-ciphertext", flip(len(sealed) - 1), agent.PublicKey(), reason.SealBroken},
		{"deny/tampered-nonce", flip(5), agent.PublicKey(), reason.SealBroken},
		{"deny/bad-version", flip(0), agent.PublicKey(), reason.SealBroken},
		{"deny/truncated", sealed[:40], agent.PublicKey(), reason.SealBroken},
		{"deny/empty", nil, agent.PublicKey(), reason.SealBroken},
		{"deny/sender-not-a-key", sealed, "XNOTAKEY", reason.SealMismatch},
		{"deny/sender-is-user-key", sealed, v.Keys.AgentPublic, reason.SealMismatch},
		{"deny/sender-low-order", sealed, zeroX, reason.SealMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := gw.Open(tt.sealed, tt.sender)
			if !errors.Is(err, tt.want) || got != nil {
				t.Fatalf("Open(%s) = %q, %v; want %v", tt.name, got, err, tt.want)
			}
			if bytes.Contains([]byte(err.Error()), msg) {
				t.Errorf("Open(%s) error contains the plaintext", tt.name)
			}
		})
	}
	if _, err := agent.Seal(msg, zeroX); !errors.Is(err, reason.SealMismatch) {
		t.Errorf("Seal(to low-order key) = %v; want SealMismatch", err)
	}
	if _, err := agent.Seal(msg, v.Keys.AgentPublic); !errors.Is(err, reason.SealMismatch) {
		t.Errorf("Seal(to user key) = %v; want SealMismatch", err)
	}
	if _, err := NewBox(mustSeed(t, v.Keys.AgentSeed)); !errors.Is(err, ErrKey) {
		t.Errorf("NewBox(user key) = %v; want ErrKey", err)
	}
}

func TestBoxCacheBounded(t *testing.T) {
	b, _ := NewBox(mustKey(t, NewCurve))
	for range boxCacheSize + 10 {
		peer, _ := NewBox(mustKey(t, NewCurve))
		if _, err := b.Seal([]byte("x"), peer.PublicKey()); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.shared.len(); n != boxCacheSize {
		t.Errorf("shared-key cache holds %d; want %d", n, boxCacheSize)
	}
}

// TestOtherSpelling: a curve key's other spelling is another string,
// flips back to the key, and seals and opens as the key does.
func TestOtherSpelling(t *testing.T) {
	a, err := NewCurve()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCurve()
	if err != nil {
		t.Fatal(err)
	}
	boxA, _ := NewBox(a)
	boxB, _ := NewBox(b)
	other, ok := OtherSpelling(boxA.PublicKey())
	if !ok || other == boxA.PublicKey() {
		t.Fatalf("OtherSpelling(%s) = %q, %v; want another key", boxA.PublicKey(), other, ok)
	}
	if back, ok := OtherSpelling(other); !ok || back != boxA.PublicKey() {
		t.Errorf("OtherSpelling twice = %q, %v; want the key back", back, ok)
	}
	sealed, err := boxB.Seal([]byte("x"), other)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := boxA.Open(sealed, boxB.PublicKey()); err != nil || string(got) != "x" {
		t.Errorf("a box sealed to the other spelling: %q, %v; want it opened by the key", got, err)
	}
	if _, ok := OtherSpelling("not a key"); ok {
		t.Error("OtherSpelling of a non-key succeeded")
	}
}
