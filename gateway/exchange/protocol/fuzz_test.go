package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

// fuzzRequestBody is a valid request's body, as Marshal writes it.
func fuzzRequestBody(f *testing.F) []byte {
	f.Helper()
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	ck, _ := nkeys.CreateCurveKeys()
	xkey, _ := ck.PublicKey()
	gx, _ := gatewayCurve.PublicKey()
	r := &Request{
		V: Version, GrantType: GrantType, SubjectToken: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", SubjectTokenType: TokenTypeJWT,
		Audience: "gw", Tenant: "tenant_a", Scope: "refund:draft kb:read", Agent: pub, XKey: xkey,
		RequestID: NewRequestID(), IssuedAt: time.Now().UTC().Format(time.RFC3339),
	}
	proof, err := SealXKeyProof(ck, gx, r.Agent, r.RequestID)
	if err != nil {
		f.Fatal(err)
	}
	r.XKeyProof = proof
	body, err := Marshal(r)
	if err != nil {
		f.Fatal(err)
	}
	return body
}

// looseString is the string a lenient decoder finds under name in raw,
// if any: what a careless error message could have quoted.
func looseString(raw []byte, name string) string {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return ""
	}
	s, _ := m[name].(string)
	return s
}

// FuzzParse: Parse never panics on any body; a refusal wraps ErrMalformed
// and never quotes the subject token; what it accepts prints without the
// token and survives Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	body := fuzzRequestBody(f)
	if _, err := Parse(body); err != nil {
		f.Fatalf("the seed request does not parse: %v", err)
	}
	f.Add(body)
	f.Add([]byte(strings.Replace(string(body), `{"v":2`, `{"v":1`, 1)))
	f.Add([]byte(`{"subject_token":"secret-token-value-0123456789"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := Parse(raw)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q) = %v; want ErrMalformed", raw, err)
			}
			if r != nil {
				t.Fatalf("Parse(%q) returned a request and %v", raw, err)
			}
			if tok := looseString(raw, "subject_token"); len(tok) >= 8 && strings.Contains(err.Error(), tok) {
				t.Fatalf("Parse's error quotes the subject token: %v", err)
			}
			return
		}
		if len(r.SubjectToken) >= 8 {
			for _, s := range []string{r.String(), fmt.Sprintf("%v", r), fmt.Sprintf("%+v", *r), fmt.Sprintf("%#v", r)} {
				if strings.Contains(s, r.SubjectToken) {
					t.Fatalf("a printed request shows its subject token: %s", s)
				}
			}
		}
		again, err := Marshal(r)
		if err != nil {
			t.Fatalf("Marshal of a parsed request: %v", err)
		}
		r2, err := Parse(again)
		if err != nil {
			t.Fatalf("Parse(Marshal(Parse(%q))) = %v", raw, err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed the request: %+v, then %+v", *r, *r2)
		}
	})
}

// FuzzParseResponse: ParseResponse never panics, and what it accepts
// holds a credential and prints without it.
func FuzzParseResponse(f *testing.F) {
	ok := []byte(`{"access_token":"eyJ0eXAiOiJKV1QifQ.e30.c2ln","issued_token_type":"` + TokenTypeAgentgw + `","token_type":"N_A","expires_in":300,"scope":"kb:read","tenant":"tenant_a","jti":"J1"}`)
	if _, err := ParseResponse(ok); err != nil {
		f.Fatalf("the seed response does not parse: %v", err)
	}
	f.Add(ok)
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := ParseResponse(raw)
		if err != nil {
			if r != nil {
				t.Fatalf("ParseResponse(%q) returned a response and %v", raw, err)
			}
			return
		}
		if r.AccessToken == "" || r.IssuedTokenType != TokenTypeAgentgw {
			t.Fatalf("ParseResponse(%q) accepted a response without a credential", raw)
		}
		if len(r.AccessToken) >= 8 {
			for _, s := range []string{r.String(), fmt.Sprintf("%v", r), fmt.Sprintf("%+v", *r)} {
				if strings.Contains(s, r.AccessToken) {
					t.Fatalf("a printed response shows its credential: %s", s)
				}
			}
		}
	})
}
