package envelope

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/subjects/reason"
)

func TestVerify(t *testing.T) {
	w := loadWire(t)
	body := []byte(w.Envelope.Body)
	sig := w.Envelope.SignatureB64URL
	pub, _ := agentKeys(t, w)
	otherPub, otherPriv, _ := ed25519.GenerateKey(nil)
	otherBody := withMember("tenant", `"tenant_b"`)

	reordered := func() []byte {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(m) // keys sorted: same members, other bytes
		return b
	}()
	var indented bytes.Buffer
	if err := json.Indent(&indented, body, "", "  "); err != nil {
		t.Fatal(err)
	}
	rawSig, _ := base64.RawURLEncoding.DecodeString(sig)
	// The last base64url character of a 64-byte signature carries 4 unused
	// bits; flipping one keeps the decoded bytes but changes the string.
	malleable := sig[:len(sig)-1] + string(sig[len(sig)-1]+1)
	if lax, err := base64.RawURLEncoding.DecodeString(malleable); err != nil || !bytes.Equal(lax, rawSig) {
		t.Fatalf("test setup: %q does not decode (laxly) to the signature", malleable)
	}

	tests := []struct {
		name string
		pub  ed25519.PublicKey
		body []byte
		sig  string
		want reason.Code
	}{
		{"ok/wire-v1", pub, body, sig, ""},
		{"sig/empty", pub, body, "", reason.BadSignature},
		{"sig/truncated", pub, body, sig[:len(sig)-2], reason.BadSignature},
		{"sig/truncated-to-valid-base64", pub, body, base64.RawURLEncoding.EncodeToString(rawSig[:63]), reason.BadSignature},
		{"sig/extended", pub, body, sig + "AA", reason.BadSignature},
		{"sig/padded", pub, body, base64.URLEncoding.EncodeToString(rawSig), reason.BadSignature},
		{"sig/std-alphabet", pub, body, base64.RawStdEncoding.EncodeToString(rawSig), reason.BadSignature},
		{"sig/noncanonical-trailing-bits", pub, body, malleable, reason.BadSignature},
		{"sig/hex", pub, body, w.Envelope.SignatureHex, reason.BadSignature},
		{"sig/garbage", pub, body, strings.Repeat("!", 86), reason.BadSignature},
		{"sig/of-another-body", pub, body, Sign(otherPriv, otherBody), reason.BadSignature},
		{"sig/by-another-key", otherPub, body, sig, reason.BadSignature},
		{"sig/another-key-signed-this-body", pub, body, Sign(otherPriv, body), reason.BadSignature},
		{"sig/without-context", pub, body, base64.RawURLEncoding.EncodeToString(ed25519.Sign(otherPriv, body)), reason.BadSignature},
		{"body/other", pub, otherBody, sig, reason.BadSignature},
		{"body/reordered-keys", pub, reordered, sig, reason.BadSignature},
		{"body/whitespace-added", pub, indented.Bytes(), sig, reason.BadSignature},
		{"body/trailing-newline", pub, append(bytes.Clone(body), '\n'), sig, reason.BadSignature},
		{"body/empty", pub, nil, sig, reason.BadSignature},
		{"key/nil", nil, body, sig, reason.BadSignature},
		{"key/short", pub[:31], body, sig, reason.BadSignature},
		{"key/long", append(bytes.Clone(pub), 0), body, sig, reason.BadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.pub, tt.body, tt.sig)
			if tt.want == "" && err != nil || tt.want != "" && !errors.Is(err, tt.want) {
				t.Fatalf("Verify(%.40q) = %v; want %q", tt.sig, err, tt.want)
			}
		})
	}
	// The re-serialised bodies are the same envelope: they parse, so only
	// the signature over exact bytes catches the change.
	for _, b := range [][]byte{reordered, indented.Bytes()} {
		if _, err := Parse(b, Limits{}); err != nil {
			t.Errorf("Parse(re-serialised) = %v; want nil", err)
		}
	}
}

func TestVerifyBytesNeverPanics(t *testing.T) {
	for _, n := range []int{0, 1, 31, 32, 33, 63, 64, 65} {
		b := make([]byte, n)
		if VerifyBytes(b, nil, b) {
			t.Errorf("VerifyBytes(%d zero bytes) = true", n)
		}
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	body := render(baseMembers())
	s := Sign(priv, body)
	if len(s) != 86 || strings.ContainsAny(s, "+/=") {
		t.Errorf("Sign = %q; want 86 base64url characters", s)
	}
	if err := Verify(pub, body, s); err != nil {
		t.Errorf("Verify(Sign) = %v", err)
	}
	if got := string(SigningInput([]byte("{}"))); got != "agentgw-envelope-v1\n{}" {
		t.Errorf("SigningInput = %q", got)
	}
}
