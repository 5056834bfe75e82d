package mcp

import (
	"encoding/base64"
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
		req, err := http.NewRequest(http.MethodPost, h.resource, strings.NewReader(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/list"}`, i)))
		must(t, err)
		req.Header.Set("Authorization", "Bearer "+forged)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("forged token: status %d; want 401", resp.StatusCode)
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
