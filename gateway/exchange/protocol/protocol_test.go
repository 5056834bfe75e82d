package protocol

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

func validRequest(t *testing.T) (*Request, nkeys.KeyPair) {
	t.Helper()
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	ck, _ := nkeys.CreateCurveKeys()
	xkey, _ := ck.PublicKey()
	return &Request{
		V: Version, GrantType: GrantType, SubjectToken: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", SubjectTokenType: TokenTypeJWT,
		Audience: "gw", Agent: pub, XKey: xkey, RequestID: NewRequestID(), IssuedAt: time.Now().UTC().Format(time.RFC3339),
	}, kp
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
	tests := map[string]string{
		"deny/unknown_member":   strings.Replace(string(body), `{"v":1`, `{"v":1,"extra":1`, 1),
		"deny/duplicate_member": strings.Replace(string(body), `{"v":1`, `{"v":1,"v":1`, 1),
		"deny/not_json":         "{",
		"deny/local_time":       strings.Replace(string(body), "Z\"", "+01:00\"", 1),
		"deny/short_request_id": strings.Replace(string(body), r.RequestID, "abc", 1),
		"deny/token_type":       strings.Replace(string(body), TokenTypeJWT, "urn:x", 1),
		// nkeys' base32 decoding skips line breaks; the wire's keys have none.
		"deny/agent_line_break": strings.Replace(string(body), r.Agent, r.Agent[:20]+`\n`+r.Agent[20:], 1),
		"deny/xkey_line_break":  strings.Replace(string(body), r.XKey, r.XKey[:20]+`\r\n`+r.XKey[20:], 1),
		"deny/agent_lowercase":  strings.Replace(string(body), r.Agent, "U"+strings.ToLower(r.Agent[1:]), 1),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(b)); !errors.Is(err, ErrMalformed) {
				t.Errorf("Parse = %v; want ErrMalformed", err)
			}
		})
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
