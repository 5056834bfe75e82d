package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// fuzzRequestBody is a valid request's body, with a tenant and scopes,
// as Marshal writes it.
func fuzzRequestBody(f *testing.F) []byte {
	f.Helper()
	r, _, _ := validRequestCurve(f)
	r.Tenant, r.Scope = "tenant_a", "refund:draft kb:read"
	body, err := Marshal(r)
	if err != nil {
		f.Fatal(err)
	}
	return body
}

// standIn is n bytes of text no message of the package holds.
func standIn(n int) string {
	return strings.Repeat("zQ7wK2pX", n/8+1)[:n]
}

// printed is v in every form a log or error may print it.
func printed(v any) string {
	return fmt.Sprintf("%v|%+v|%#v|%s", v, v, v, v)
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
			// A message that quotes the token quotes its stand-in too;
			// one that only happens to hold the token's text does not.
			if tok := looseString(raw, "subject_token"); len(tok) >= 8 && bytes.Count(raw, []byte(tok)) == 1 && strings.Contains(err.Error(), tok) {
				alt := standIn(len(tok))
				_, err2 := Parse(bytes.Replace(raw, []byte(tok), []byte(alt), 1))
				if err2 != nil && strings.Contains(err2.Error(), alt) {
					t.Fatalf("Parse's error quotes the subject token: %v", err)
				}
			}
			return
		}
		other := *r
		other.SubjectToken = standIn(len(r.SubjectToken) + 1)
		if printed(r) != printed(&other) {
			t.Fatalf("a printed request shows its subject token: %s", printed(r))
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
// holds a credential, reads the same to encoding/json, and prints
// without it.
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
		var loose Response
		if err := json.Unmarshal(raw, &loose); err != nil || loose != *r {
			t.Fatalf("ParseResponse(%q) = %+v; encoding/json reads %+v (%v)", raw, *r, loose, err)
		}
		other := *r
		other.AccessToken = standIn(len(r.AccessToken) + 1)
		if printed(r) != printed(&other) {
			t.Fatalf("a printed response shows its credential: %s", printed(r))
		}
	})
}
