package identity

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// vector is testdata/wire-v1.json.
type vector struct {
	Credential struct {
		CheckAtUnix int64          `json:"check_at_unix"`
		Claims      map[string]any `json:"claims"`
		JWT         string         `json:"jwt"`
	} `json:"credential"`
	Keys struct {
		AgentPublic     string `json:"agent_public"`
		AgentSeed       string `json:"agent_seed"`
		AgentXKeyPublic string `json:"agent_xkey_public"`
		AgentXKeySeed   string `json:"agent_xkey_seed"`
		GatewayXKeyPub  string `json:"gateway_xkey_public"`
		GatewayXKeySeed string `json:"gateway_xkey_seed"`
		IssuerPublic    string `json:"issuer_public"`
		IssuerSeed      string `json:"issuer_seed"`
	} `json:"keys"`
	SealedPayload struct {
		From      string `json:"from"`
		Plaintext string `json:"plaintext"`
		SealedB64 string `json:"sealed_b64url"`
		To        string `json:"to"`
	} `json:"sealed_payload"`
	VerifyAt string `json:"verify_at"`
}

func loadVector(t testing.TB) *vector {
	t.Helper()
	data, err := os.ReadFile("../../testdata/wire-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vector
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return &v
}

func (v *vector) checkAt() time.Time { return time.Unix(v.Credential.CheckAtUnix, 0) }

func mustSeed(t testing.TB, seed string) nkeys.KeyPair {
	t.Helper()
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func mustPub(t testing.TB, kp nkeys.KeyPair) string {
	t.Helper()
	p, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustKey(t testing.TB, f func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	t.Helper()
	kp, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// signRaw builds a compact JWT from a literal header and payload JSON,
// signed by kp over "b64(header).b64(payload)".
func signRaw(t testing.TB, kp nkeys.KeyPair, header, payload string) string {
	t.Helper()
	in := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	sig, err := kp.Sign([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// claimsJSON renders claims (the vector's map, edited) as JSON.
func claimsJSON(t testing.TB, claims map[string]any) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// cloneClaims deep-copies a decoded JSON object.
func cloneClaims(t testing.TB, m map[string]any) map[string]any {
	t.Helper()
	var out map[string]any
	if err := json.Unmarshal([]byte(claimsJSON(t, m)), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func decodeSeedForTest(seed []byte) (nkeys.PrefixByte, []byte, error) { return nkeys.DecodeSeed(seed) }

func encodeCurveForTest(t testing.TB, raw []byte) string {
	t.Helper()
	b, err := nkeys.Encode(nkeys.PrefixByteCurve, raw)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
