package identity

import (
	"bytes"
	"encoding/base32"
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
	// recomputed): nkeys masks them and reads the same key, the wire (and
	// the TypeScript SDK) says it is not one.
	curve, err := NewCurve()
	if err != nil {
		t.Fatal(err)
	}
	x, _ := curve.PublicKey()
	raw, err := b32.DecodeString(x)
	if err != nil {
		t.Fatal(err)
	}
	raw[0] |= 0x07
	body := raw[:len(raw)-2]
	crc := crc16x(body)
	alt := b32.EncodeToString(append(body, byte(crc), byte(crc>>8)))
	if !nkeys.IsValidPublicCurveKey(alt) {
		t.Fatalf("test key %s is not what nkeys accepts", alt)
	}
	if isPublic(alt, nkeys.PrefixByteCurve) {
		t.Errorf("curve key %s with prefix bits set decoded", alt)
	}
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// crc16x is nkeys' checksum (CRC-16/XMODEM).
func crc16x(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
