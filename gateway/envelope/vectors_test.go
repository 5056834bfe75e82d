package envelope

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

// wireV1 is ../../testdata/wire-v1.json, the worked example of docs/wire.md.
type wireV1 struct {
	Envelope struct {
		Body            string `json:"body"`
		SignatureB64URL string `json:"signature_b64url"`
		SignatureHex    string `json:"signature_hex"`
		Subject         string `json:"subject"`
	} `json:"envelope"`
	Keys struct {
		AgentPublic       string `json:"agent_public"`
		AgentSeed         string `json:"agent_seed"`
		AgentXkeyPublic   string `json:"agent_xkey_public"`
		GatewayXkeyPublic string `json:"gateway_xkey_public"`
	} `json:"keys"`
	SealedPayload struct {
		From         string `json:"from"`
		To           string `json:"to"`
		SealedB64URL string `json:"sealed_b64url"`
	} `json:"sealed_payload"`
	VerifyAt time.Time `json:"verify_at"`
}

func loadWire(t testing.TB) wireV1 {
	t.Helper()
	raw, err := os.ReadFile("../../testdata/wire-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var w wireV1
	if err := json.Unmarshal(raw, &w); err != nil {
		t.Fatal(err)
	}
	return w
}

// agentKeys returns the wire vector's agent public and private keys.
func agentKeys(t testing.TB, w wireV1) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, err := nkeys.FromPublicKey(w.Keys.AgentPublic)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := pub.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromSeed([]byte(w.Keys.AgentSeed))
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	_, rawSeed, err := nkeys.DecodeSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	return ed25519.PublicKey(decoded), ed25519.NewKeyFromSeed(rawSeed)
}

func TestWireV1(t *testing.T) {
	w := loadWire(t)
	body := []byte(w.Envelope.Body)
	b, err := Parse(body, Limits{})
	if err != nil {
		t.Fatalf("Parse(wire-v1) = %v; want nil", err)
	}
	pub, priv := agentKeys(t, w)
	if err := Verify(pub, body, w.Envelope.SignatureB64URL); err != nil {
		t.Fatalf("Verify(wire-v1) = %v; want nil", err)
	}
	// Ed25519 is deterministic: our Sign must reproduce the vector.
	if got := Sign(priv, body); got != w.Envelope.SignatureB64URL {
		t.Errorf("Sign(wire-v1) = %s; want %s", got, w.Envelope.SignatureB64URL)
	}
	sig, _ := hex.DecodeString(w.Envelope.SignatureHex)
	if !VerifyBytes(pub, SigningInput(body), sig) {
		t.Error("VerifyBytes(signature_hex) = false")
	}
	if err := (Freshness{MaxTTL: 5 * time.Minute, Skew: 30 * time.Second}).Check(b, w.VerifyAt); err != nil {
		t.Errorf("Freshness.Check(verify_at) = %v; want nil", err)
	}
	want := Body{
		V: 1, MessageID: "9f1c2b7e4d8a4c3fb6e15a2d7c9e0f41", IdempotencyKey: "refund:ord_123:draft",
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Tenant: "tenant_a", Audience: "billing-gateway",
		Capability: ToolCall, Target: "refunds.draft_refund",
	}
	if b.V != want.V || b.MessageID != want.MessageID || b.IdempotencyKey != want.IdempotencyKey ||
		b.TraceID != want.TraceID || b.Tenant != want.Tenant || b.Audience != want.Audience ||
		b.Capability != want.Capability || b.Target != want.Target {
		t.Errorf("Parse(wire-v1) = %+v; want %+v", b, want)
	}
	if !b.IssuedAt.Equal(w.VerifyAt) || b.ExpiresAt.Sub(b.IssuedAt) != time.Minute {
		t.Errorf("times = %v, %v", b.IssuedAt, b.ExpiresAt)
	}
	if got := string(b.Payload.Plain); got != `{"order_id":"ord_123","amount_cents":2500}` {
		t.Errorf("Plain = %s", got)
	}
	if b.Payload.IsSealed() {
		t.Error("IsSealed() = true for a plain payload")
	}
	if got, want := b.PayloadDigest(), Digest([]byte(`{"plain":{"order_id":"ord_123","amount_cents":2500}}`)); got != want {
		t.Errorf("PayloadDigest = %x; want %x", got, want)
	}
}

func TestWireV1SealedPayload(t *testing.T) {
	w := loadWire(t)
	sp := w.SealedPayload
	raw := withMember("payload", `{"sealed":"`+sp.SealedB64URL+`","from":"`+sp.From+`","to":"`+sp.To+`"}`)
	b, err := Parse(raw, Limits{})
	if err != nil {
		t.Fatalf("Parse(sealed) = %v", err)
	}
	if !b.Payload.IsSealed() || b.Payload.From != w.Keys.AgentXkeyPublic || b.Payload.To != w.Keys.GatewayXkeyPublic {
		t.Errorf("Payload = %+v", b.Payload)
	}
	ct, err := b.Payload.SealedBytes()
	if err != nil || len(ct) == 0 {
		t.Fatalf("SealedBytes() = %d bytes, %v", len(ct), err)
	}
	// The ciphertext opens with the gateway's xkey: the vector is what it says.
	kp, err := nkeys.FromSeed([]byte(loadSeed(t, "gateway_xkey_seed")))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := kp.Open(ct, sp.From)
	if err != nil || string(pt) != `{"order_id":"ord_123","amount_cents":2500}` {
		t.Errorf("Open = %q, %v", pt, err)
	}
}

func loadSeed(t *testing.T, name string) string {
	raw, err := os.ReadFile("../../testdata/wire-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Keys map[string]string }
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v.Keys[name]
}

// wycheproof is Project Wycheproof's Ed25519 verification test file.
type wycheproof struct {
	NumberOfTests int `json:"numberOfTests"`
	TestGroups    []struct {
		PublicKey struct {
			PK string `json:"pk"`
		} `json:"publicKey"`
		Tests []struct {
			TCID    int    `json:"tcId"`
			Comment string `json:"comment"`
			Msg     string `json:"msg"`
			Sig     string `json:"sig"`
			Result  string `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

func loadWycheproof(t *testing.T) wycheproof {
	t.Helper()
	raw, err := os.ReadFile("../../testdata/wycheproof/ed25519_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var file wycheproof
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestWycheproof runs Project Wycheproof's Ed25519 verification vectors
// (../testdata/wycheproof/SOURCE.md) through VerifyBytes.
func TestWycheproof(t *testing.T) {
	file := loadWycheproof(t)
	n := 0
	for _, g := range file.TestGroups {
		pk := mustHex(t, g.PublicKey.PK)
		for _, tc := range g.Tests {
			n++
			msg, sig := mustHex(t, tc.Msg), mustHex(t, tc.Sig)
			var want bool
			switch tc.Result {
			case "valid":
				want = true
			case "invalid":
				want = false
			default:
				t.Fatalf("tc %d: result %q has no expectation", tc.TCID, tc.Result)
			}
			if got := VerifyBytes(pk, msg, sig); got != want {
				t.Errorf("tc %d (%s): VerifyBytes = %v; want %v", tc.TCID, tc.Comment, got, want)
			}
		}
	}
	if n != 151 || file.NumberOfTests != 151 {
		t.Errorf("ran %d vectors (file says %d); want 151", n, file.NumberOfTests)
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
