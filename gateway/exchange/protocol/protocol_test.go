package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

// gatewayCurve is the gateway's curve key of these tests.
var gatewayCurve, _ = nkeys.CreateCurveKeys()

func validRequest(t *testing.T) (*Request, nkeys.KeyPair) {
	t.Helper()
	r, kp, _ := validRequestCurve(t)
	return r, kp
}

// validRequestCurve is a valid request, its agent key pair and its
// curve key pair.
func validRequestCurve(t testing.TB) (*Request, nkeys.KeyPair, nkeys.KeyPair) {
	t.Helper()
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	ck, _ := nkeys.CreateCurveKeys()
	xkey, _ := ck.PublicKey()
	r := &Request{
		V: Version, GrantType: GrantType, SubjectToken: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", SubjectTokenType: TokenTypeJWT,
		Audience: "gw", Agent: pub, XKey: xkey, RequestID: NewRequestID(), IssuedAt: time.Now().UTC().Format(time.RFC3339),
	}
	r.XKeyProof = sealProof(t, ck, r.Agent, r.RequestID)
	return r, kp, ck
}

func sealProof(t testing.TB, ck nkeys.KeyPair, agent, requestID string) string {
	t.Helper()
	gx, _ := gatewayCurve.PublicKey()
	p, err := SealXKeyProof(ck, gx, agent, requestID)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseStrict(t *testing.T) {
	r, _ := validRequest(t)
	body, err := Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(body); err != nil {
		t.Fatalf("Parse(valid) = %v", err)
	}
	tooLong := strings.Repeat("A", maxXKeyProofText+1)
	tests := map[string]string{
		"deny/unknown_member":   strings.Replace(string(body), `{"v":2`, `{"v":2,"extra":1`, 1),
		"deny/duplicate_member": strings.Replace(string(body), `{"v":2`, `{"v":2,"v":2`, 1),
		"deny/v1":               strings.Replace(string(body), `{"v":2`, `{"v":1`, 1),
		"deny/v1_without_proof": strings.Replace(strings.Replace(string(body), `{"v":2`, `{"v":1`, 1), `,"xkey_proof":"`+r.XKeyProof+`"`, "", 1),
		"deny/no_xkey_proof":    strings.Replace(string(body), `,"xkey_proof":"`+r.XKeyProof+`"`, "", 1),
		"deny/empty_xkey_proof": strings.Replace(string(body), r.XKeyProof, "", 1),
		"deny/xkey_proof_b64":   strings.Replace(string(body), r.XKeyProof, r.XKeyProof[:20]+"+/"+r.XKeyProof[22:], 1),
		"deny/xkey_proof_pad":   strings.Replace(string(body), r.XKeyProof, r.XKeyProof+"=", 1),
		"deny/xkey_proof_long":  strings.Replace(string(body), r.XKeyProof, tooLong, 1),
		"deny/not_json":         "{",
		"deny/local_time":       strings.Replace(string(body), "Z\"", "+01:00\"", 1),
		"deny/fraction":         strings.Replace(string(body), "Z\"", ".5Z\"", 1),
		"deny/long_fraction":    strings.Replace(string(body), "Z\"", "."+strings.Repeat("0", 30000)+"Z\"", 1),
		"deny/lowercase_z":      strings.Replace(string(body), "Z\"", "z\"", 1),
		"deny/short_request_id": strings.Replace(string(body), r.RequestID, "abc", 1),
		"deny/token_type":       strings.Replace(string(body), TokenTypeJWT, "urn:x", 1),
		// nkeys' base32 decoding skips line breaks; the wire's keys have none.
		"deny/agent_line_break": strings.Replace(string(body), r.Agent, r.Agent[:20]+`\n`+r.Agent[20:], 1),
		"deny/xkey_line_break":  strings.Replace(string(body), r.XKey, r.XKey[:20]+`\r\n`+r.XKey[20:], 1),
		"deny/agent_lowercase":  strings.Replace(string(body), r.Agent, "U"+strings.ToLower(r.Agent[1:]), 1),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if b == string(body) {
				t.Fatal("the case does not change the body")
			}
			if _, err := Parse([]byte(b)); !errors.Is(err, ErrMalformed) {
				t.Errorf("Parse = %v; want ErrMalformed", err)
			}
		})
	}
	// A v1 request is told what is required.
	if _, err := Parse([]byte(tests["deny/v1_without_proof"])); err == nil || !strings.Contains(err.Error(), "v2 request with xkey_proof is required") {
		t.Errorf("Parse(v1) = %v; want it to say a v2 request with xkey_proof is required", err)
	}
}

// TestXKeyProof: the proof opens only with the gateway's curve key, from
// the request's xkey, for the request's agent key and request id.
func TestXKeyProof(t *testing.T) {
	r, _, ck := validRequestCurve(t)
	if err := VerifyXKeyProof(gatewayCurve, r); err != nil {
		t.Fatalf("VerifyXKeyProof(valid) = %v", err)
	}
	gx, _ := gatewayCurve.PublicKey()
	other, _ := nkeys.CreateCurveKeys()
	otherX, _ := other.PublicKey()
	otherAgent, _ := nkeys.CreateUser()
	otherPub, _ := otherAgent.PublicKey()
	sealRaw := func(kp nkeys.KeyPair, plain []byte, to string) string {
		b, err := kp.Seal(plain, to)
		if err != nil {
			t.Fatal(err)
		}
		return b64url(b)
	}
	input := XKeyProofInput(r.Agent, r.RequestID)
	tests := map[string]func(r *Request){
		// Whoever names a victim's xkey holds only its own curve key.
		"deny/sealed_by_another_curve_key": func(r *Request) { r.XKeyProof = sealProof(t, other, r.Agent, r.RequestID) },
		"deny/names_another_xkey":          func(r *Request) { r.XKey = otherX },
		"deny/for_another_agent":           func(r *Request) { r.XKeyProof = sealProof(t, ck, otherPub, r.RequestID) },
		"deny/for_another_request_id":      func(r *Request) { r.XKeyProof = sealProof(t, ck, r.Agent, NewRequestID()) },
		"deny/sealed_to_another_key":       func(r *Request) { r.XKeyProof = sealRaw(ck, input, otherX) },
		"deny/without_domain":              func(r *Request) { r.XKeyProof = sealRaw(ck, input[len(xkeyProofPrefix):], gx) },
		// Same length as the proof, other bytes: opened, then compared.
		"deny/same_length_other_text": func(r *Request) {
			r.XKeyProof = sealRaw(ck, []byte(strings.Repeat("x", len(input))), gx)
		},
		"deny/longer":     func(r *Request) { r.XKeyProof = sealRaw(ck, append(append([]byte{}, input...), '\n'), gx) },
		"deny/not_base64": func(r *Request) { r.XKeyProof = "!!" },
		"deny/empty":      func(r *Request) { r.XKeyProof = "" },
		// A low-order point: every shared key would be public.
		"deny/low_order_xkey": func(r *Request) { r.XKey = lowOrderXKey(t) },
	}
	for name, edit := range tests {
		t.Run(name, func(t *testing.T) {
			c := *r
			edit(&c)
			if err := VerifyXKeyProof(gatewayCurve, &c); !errors.Is(err, ErrProof) {
				t.Errorf("VerifyXKeyProof = %v; want ErrProof", err)
			}
		})
	}
	if err := VerifyXKeyProof(other, r); !errors.Is(err, ErrProof) {
		t.Errorf("VerifyXKeyProof(another gateway's key) = %v; want ErrProof", err)
	}
	if err := VerifyXKeyProof(nil, r); !errors.Is(err, ErrProof) {
		t.Errorf("VerifyXKeyProof(no key) = %v; want ErrProof", err)
	}
}

// lowOrderXKey is the all-zero point as a public curve key.
func lowOrderXKey(t *testing.T) string {
	t.Helper()
	k, err := nkeys.Encode(nkeys.PrefixByteCurve, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return string(k)
}

// TestXKeyProofVector pins the proof's bytes for other implementations:
// keys with raw seed SHA-256("agentgw exchange test key: " ‖ label),
// nonce the first 24 bytes of SHA-256("agentgw exchange test nonce:
// xkey_proof").
func TestXKeyProofVector(t *testing.T) {
	raw := func(label string) []byte {
		s := sha256.Sum256([]byte("agentgw exchange test key: " + label))
		return s[:]
	}
	from := func(p nkeys.PrefixByte, label string) nkeys.KeyPair {
		seed, err := nkeys.EncodeSeed(p, raw(label))
		if err != nil {
			t.Fatal(err)
		}
		var kp nkeys.KeyPair
		if p == nkeys.PrefixByteCurve {
			kp, err = nkeys.FromCurveSeed(seed)
		} else {
			kp, err = nkeys.FromSeed(seed)
		}
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	agent, curve, gw := from(nkeys.PrefixByteUser, "agent"), from(nkeys.PrefixByteCurve, "agent curve"), from(nkeys.PrefixByteCurve, "gateway curve")
	agentPub, _ := agent.PublicKey()
	xkey, _ := curve.PublicKey()
	gx, _ := gw.PublicKey()
	const requestID = "0123456789abcdef0123456789abcdef"
	nonce := sha256.Sum256([]byte("agentgw exchange test nonce: xkey_proof"))

	const (
		wantAgent = "UCYKVANE7NEVBOBXFXBH3NKBPZY5FHYXARAWAWZRT4B6W3YTXGCPWOZW"
		wantXKey  = "XBC2K72ASBWWOMSGOVV5VQC27ENSYNWQTFAXB3BV2KHXLIJYQ2QUAO3F"
		wantGW    = "XAZVMPJ7MIZ5HE5WY2FYPBX6Z53MTN5LJWQCSOG5GPC3XRNZ5ISWIFMJ"
		wantProof = "eGt2MZxq-BGBexXWtj21cnBPa80c8IfttyWyiVjmmcs-3S8qDSjW7eTMwYAsNJy1hoTqQTJa6m4_pNdzh3CDs2E0bsLbJzKxXGBXboo8IK4OHPFysk619kZXjuC59gRhNGxKJg3AhmPyPtIoXmC_K-S7KrD8j2XMN4Zk3iDwbEY3FvZxmSOP0WF6T49-ZTDUp_kZlr8FF5cqbUM6RJY"
	)
	if got := string(XKeyProofInput(agentPub, requestID)); got != "agentgw-exchange-xkey-v1\n"+agentPub+"\n"+requestID {
		t.Errorf("XKeyProofInput = %q", got)
	}
	sealed, err := curve.SealWithRand(XKeyProofInput(agentPub, requestID), gx, bytes.NewReader(nonce[:24]))
	if err != nil {
		t.Fatal(err)
	}
	proof := b64url(sealed)
	if agentPub != wantAgent || xkey != wantXKey || gx != wantGW || proof != wantProof {
		t.Errorf("vector = agent %s xkey %s gateway %s proof %s; want %s %s %s %s", agentPub, xkey, gx, proof, wantAgent, wantXKey, wantGW, wantProof)
	}
	r := &Request{Agent: agentPub, XKey: xkey, RequestID: requestID, XKeyProof: wantProof}
	if err := VerifyXKeyProof(gw, r); err != nil {
		t.Errorf("VerifyXKeyProof(vector) = %v", err)
	}
}

func TestProofIsDomainSeparated(t *testing.T) {
	r, kp := validRequest(t)
	body, _ := Marshal(r)
	sig, err := Sign(kp, body)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyProof(r.Agent, body, sig); err != nil {
		t.Fatalf("VerifyProof(valid) = %v", err)
	}
	// A signature over the same bytes as an envelope does not pass.
	envSig, _ := kp.Sign(append([]byte("agentgw-envelope-v1\n"), body...))
	for name, s := range map[string]string{
		"deny/envelope_signature": b64url(envSig),
		"deny/empty":              "",
		"deny/not_base64":         "!!",
	} {
		if err := VerifyProof(r.Agent, body, s); !errors.Is(err, ErrProof) {
			t.Errorf("%s: VerifyProof = %v; want ErrProof", name, err)
		}
	}
	tampered := []byte(strings.Replace(string(body), `"aud`, `"aud`, 1))
	tampered = append(tampered[:len(tampered)-1], ' ', '}')
	if err := VerifyProof(r.Agent, tampered, sig); !errors.Is(err, ErrProof) {
		t.Errorf("VerifyProof(other bytes) = %v; want ErrProof", err)
	}
}

func TestRequestPrintsNoToken(t *testing.T) {
	r, _ := validRequest(t)
	for _, s := range []string{fmt.Sprint(r), fmt.Sprintf("%+v", *r), fmt.Sprintf("%#v", r), r.String()} {
		if strings.Contains(s, r.SubjectToken) {
			t.Errorf("printed request holds the subject token: %s", s)
		}
	}
	resp := Response{AccessToken: "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.c2ln"}
	if strings.Contains(fmt.Sprintf("%+v", resp), resp.AccessToken) {
		t.Error("printed response holds the credential")
	}
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// TestVerifyProofLongSignatureBoundedMemory: a signature header of a
// megabyte, read before anything is authenticated, is refused by its
// length, without being decoded.
func TestVerifyProofLongSignatureBoundedMemory(t *testing.T) {
	agent, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := agent.PublicKey()
	long := strings.Repeat("A", 1<<20)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		err = VerifyProof(pub, []byte("{}"), long)
	}
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrProof) {
		t.Fatalf("VerifyProof(1 MiB signature) = %v; want %v", err, ErrProof)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("10 refusals allocated %d bytes; want less than the signature's size", got)
	}
}
