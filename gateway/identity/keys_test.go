package identity

import (
	"bytes"
	"errors"
	"testing"

	"github.com/nats-io/nkeys"
)

func TestKeyRoles(t *testing.T) {
	tests := []struct {
		name string
		new  func() (nkeys.KeyPair, error)
		want byte
	}{
		{"issuer", NewIssuer, 'A'},
		{"agent", NewAgent, 'U'},
		{"gateway", NewGatewayKey, 'N'},
		{"curve", NewCurve, 'X'},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if pub := mustPub(t, mustKey(t, tt.new)); pub[0] != tt.want {
				t.Errorf("%s key = %s; want prefix %c", tt.name, pub, tt.want)
			}
		})
	}
}

func TestSigner(t *testing.T) {
	for _, f := range []func() (nkeys.KeyPair, error){NewIssuer, NewAgent, NewGatewayKey} {
		kp := mustKey(t, f)
		s, err := NewSigner(kp)
		if err != nil {
			t.Fatalf("NewSigner = %v", err)
		}
		msg := []byte("agentgw-envelope-v1\n{}")
		sig := s.Sign(msg)
		if err := kp.Verify(msg, sig); err != nil {
			t.Errorf("nkeys Verify(Signer.Sign) = %v", err)
		}
		want, _ := kp.Sign(msg)
		if !bytes.Equal(sig, want) {
			t.Error("Signer.Sign differs from nkeys Sign (Ed25519 is deterministic)")
		}
		if s.PublicKey() != mustPub(t, kp) {
			t.Errorf("PublicKey = %s", s.PublicKey())
		}
	}
	pubOnly, _ := nkeys.FromPublicKey(mustPub(t, mustKey(t, NewAgent)))
	for name, kp := range map[string]nkeys.KeyPair{"curve": mustKey(t, NewCurve), "public only": pubOnly, "nil": nil} {
		if _, err := NewSigner(kp); !errors.Is(err, ErrKey) {
			t.Errorf("NewSigner(%s) = %v; want ErrKey", name, err)
		}
	}
}

func TestDecodePublic(t *testing.T) {
	v := loadVector(t)
	if !isPublic(v.Keys.AgentPublic, nkeys.PrefixByteUser) || isPublic(v.Keys.AgentPublic, nkeys.PrefixByteAccount) {
		t.Error("role check on a user key is wrong")
	}
	bad := []byte(v.Keys.AgentPublic)
	bad[10] ^= 1
	if isPublic(string(bad), nkeys.PrefixByteUser) {
		t.Error("a key with a bad checksum decoded")
	}
	small, _ := nkeys.Encode(nkeys.PrefixByteUser, make([]byte, 32))
	if isPublic(string(small), nkeys.PrefixByteUser) {
		t.Error("a small-order Ed25519 key decoded")
	}
	// A curve key whose prefix byte has its low three bits set (checksum
	// recomputed; subjects.TestValidKey and the TypeScript vectors test
	// use it too): nkeys masks them and reads a key, the wire (and the
	// TypeScript SDK) says it is not one.
	const alt = "X56NIPYYTW2XT2OOW6JV55IH4LD7UEOML226WLJU7X4AEDLQD32AX3ND"
	if !nkeys.IsValidPublicCurveKey(alt) {
		t.Fatalf("test key %s is not what nkeys accepts", alt)
	}
	if isPublic(alt, nkeys.PrefixByteCurve) {
		t.Errorf("curve key %s with prefix bits set decoded", alt)
	}
}
