package mcp

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestEndpointForgedTokenCreatesNothing: a token with the right issuer
// and audience but a forged signature is refused (401) by the exchange's
// verification, and leaves no principal and no key file behind.
func TestEndpointForgedTokenCreatesNothing(t *testing.T) {
	h := newEndpointHarness(t)
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	forged := enc(`{"alg":"RS256","typ":"JWT","kid":"x"}`) + "." +
		enc(fmt.Sprintf(`{"iss":%q,"sub":"mallory","aud":[%q],"exp":%d,"org":"tenant_a","groups":["billing"]}`,
			h.idp.Issuer, h.resource, time.Now().Add(time.Hour).Unix())) + "." + enc("not a signature")
	for i := range 3 {
		if code, _ := h.postRPC(forged, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/list"}`, i)); code != http.StatusUnauthorized {
			t.Errorf("forged token: status %d; want 401", code)
		}
	}
	entries, err := os.ReadDir(h.cfg.Endpoint.KeyDir)
	must(t, err)
	h.endpoint.mu.Lock()
	n := len(h.endpoint.principals)
	h.endpoint.mu.Unlock()
	if len(entries) != 0 || n != 0 {
		t.Errorf("after forged tokens: %d key files, %d principals; want none", len(entries), n)
	}
}

// TestEndpointForgedTokenForKnownPrincipal: a token whose claims name a
// principal that is already signed in (its issuer and subject copied
// from a real token) but whose signature is forged is refused too. A
// token the endpoint has not seen is always verified by the exchange,
// whatever the state of the principal's credential.
func TestEndpointForgedTokenForKnownPrincipal(t *testing.T) {
	h := newEndpointHarness(t)
	real := h.token("alice-ide", "s3cret-alice")
	alice := h.connect(real)
	if _, err := alice.ListTools(h.ctx, nil); err != nil {
		t.Fatalf("alice's own token: %v", err)
	}
	parts := strings.Split(real, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	must(t, err)
	var claims struct {
		Issuer  string `json:"iss"`
		Subject string `json:"sub"`
	}
	must(t, json.Unmarshal(payload, &claims))
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	forged := parts[0] + "." +
		enc(fmt.Sprintf(`{"iss":%q,"sub":%q,"aud":[%q],"exp":%d}`, claims.Issuer, claims.Subject, h.resource, time.Now().Add(24*time.Hour).Unix())) +
		"." + enc("not a signature")
	for i, method := range []string{"tools/list", "tools/call"} {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q}`, i, method)
		if method == "tools/call" {
			body = fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"search","arguments":{"q":"x"}}}`, i)
		}
		if code, _ := h.postRPC(forged, body); code != http.StatusUnauthorized {
			t.Errorf("%s with a forged token naming a signed-in principal: status %d; want 401", method, code)
		}
	}
}
