package identity

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
)

func TestHasScope(t *testing.T) {
	c := &Credential{Scopes: []string{"refund:draft", "approve:refunds.*", "read:*", "admin"}}
	tests := []struct {
		scope string
		want  bool
	}{
		{"refund:draft", true},
		{"refund:draft2", false},
		{"refund:dra", false},
		{"refund", false},
		{"approve:refunds.draft_refund", true},
		{"approve:refunds.eu.large", true},
		{"approve:refunds.", false},
		{"approve:refunds", false},
		{"approve:refunds_eu.x", false},
		{"approve:refundsx", false},
		{"approve:orders.x", false},
		{"approve:refunds.*", false}, // requests are concrete
		{"read:anything.at.all", true},
		{"read:", false},
		{"readx:a", false},
		{"admin", true},
		{"admin:x", false},
		{"", false},
		{"*", false},
	}
	for _, tt := range tests {
		if got := c.HasScope(tt.scope); got != tt.want {
			t.Errorf("HasScope(%q) = %v; want %v", tt.scope, got, tt.want)
		}
	}
	if (&Credential{Scopes: []string{"*"}}).HasScope("refund:draft") {
		t.Error(`a bare "*" scope granted refund:draft`)
	}
	var nilCred *Credential
	if nilCred.HasScope("refund:draft") {
		t.Error("nil credential has a scope")
	}
}

func TestValidScope(t *testing.T) {
	for _, s := range []string{"refund:draft", "approve:refunds.*", "read:*", "a", "respond:9f1c2b7e-4d8a"} {
		if !validScope(s) {
			t.Errorf("validScope(%q) = false; want true", s)
		}
	}
	for _, s := range []string{"", "*", "approve*", "approve:re*", "a b", "a\n", "é", "approve:*.x", strings.Repeat("a", 257)} {
		if validScope(s) {
			t.Errorf("validScope(%q) = true; want false", s)
		}
	}
}

func TestIssue(t *testing.T) {
	w := newWorld(t)
	req := IssueRequest{
		Subject: w.v.Keys.AgentPublic, Audience: "billing-gateway", Tenant: "tenant_a",
		Service: "support-agent-runtime", Name: "support agent", Scopes: []string{"agent:delegate", "refund:draft"},
		XKey: w.v.Keys.AgentXKeyPublic, TTL: time.Hour,
	}
	tok, err := Issue(w.issA, req, time.Unix(w.iat, 0))
	if err != nil {
		t.Fatalf("Issue = %v", err)
	}

	t.Run("same claims as the wire vector but for jti", func(t *testing.T) {
		got := decodePayload(t, string(tok))
		want := cloneClaims(t, w.claims)
		if got["jti"] == "" || got["jti"] == want["jti"] {
			t.Errorf("jti = %v; want a digest over all claims, not jwt/v2's", got["jti"])
		}
		delete(got, "jti")
		delete(want, "jti")
		if g, wt := claimsJSON(t, got), claimsJSON(t, want); g != wt {
			t.Errorf("Issue claims =\n%s\nwant\n%s", g, wt)
		}
		// Field order follows jwt/v2's: header and layout are byte-compatible.
		if !strings.HasPrefix(string(tok), strings.Split(w.v.Credential.JWT, ".")[0]+".") {
			t.Errorf("header differs from the vector's")
		}
	})
	t.Run("verifies", func(t *testing.T) {
		c, err := w.verifier(t, nil).Verify(tok.Reveal(), w.now)
		if err != nil {
			t.Fatalf("Verify(Issue(...)) = %v", err)
		}
		if c.Subject != req.Subject || c.XKey != req.XKey || !c.HasScope("refund:draft") {
			t.Errorf("Verify(Issue(...)) = %+v", c)
		}
	})
	t.Run("jwt/v2 decodes it", func(t *testing.T) {
		gc, err := jwt.DecodeGeneric(tok.Reveal())
		if err != nil {
			t.Fatalf("jwt.DecodeGeneric = %v", err)
		}
		// jwt/v2 reports any non-NATS type as "generic"; ours is in Data.
		if gc.Data["type"] != CredentialType || gc.Issuer != w.v.Keys.IssuerPublic || gc.Data["tenant"] != "tenant_a" {
			t.Errorf("jwt.DecodeGeneric = type %q iss %q data %v", gc.ClaimType(), gc.Issuer, gc.Data)
		}
	})
	t.Run("jti differs when only scopes differ", func(t *testing.T) {
		r2 := req
		r2.Scopes = []string{"refund:draft"}
		tok2, err := Issue(w.issA, r2, time.Unix(w.iat, 0))
		if err != nil {
			t.Fatal(err)
		}
		if tok.JTI() == tok2.JTI() {
			t.Error("two credentials with different scopes share a jti")
		}
	})
	t.Run("principal", func(t *testing.T) {
		r2 := req
		r2.Principal = "https://idp.example.com/realms/corp#5f0c2a7e-user"
		tok2, err := Issue(w.issA, r2, time.Unix(w.iat, 0))
		if err != nil {
			t.Fatal(err)
		}
		c, err := w.verifier(t, nil).Verify(tok2.Reveal(), w.now)
		if err != nil || c.Principal != r2.Principal {
			t.Fatalf("Verify(Issue(principal)) = %+v, %v; want principal %q", c, err, r2.Principal)
		}
		gc, err := jwt.DecodeGeneric(tok2.Reveal())
		if err != nil || gc.Data["principal"] != r2.Principal {
			t.Fatalf("jwt.DecodeGeneric = %v, %v; want nats.principal", gc, err)
		}
		if tok.JTI() == tok2.JTI() {
			t.Error("two credentials with different principals share a jti")
		}
		if c, _ := w.verifier(t, nil).Verify(tok.Reveal(), w.now); c.Principal != "" {
			t.Errorf("credential issued without a principal verifies with principal %q", c.Principal)
		}
	})
	t.Run("not before", func(t *testing.T) {
		r2 := req
		r2.NotBefore = time.Unix(w.iat+600, 0)
		tok2, err := Issue(w.issA, r2, time.Unix(w.iat, 0))
		if err != nil {
			t.Fatal(err)
		}
		p := decodePayload(t, string(tok2))
		if p["nbf"].(float64) != float64(w.iat+600) || p["exp"].(float64) != float64(w.iat+600+3600) {
			t.Errorf("nbf/exp = %v/%v", p["nbf"], p["exp"])
		}
	})

	bad := []struct {
		name string
		edit func(r *IssueRequest)
	}{
		{"subject not a user key", func(r *IssueRequest) { r.Subject = w.v.Keys.IssuerPublic }},
		{"no audience", func(r *IssueRequest) { r.Audience = "" }},
		{"bad tenant", func(r *IssueRequest) { r.Tenant = "Tenant A" }},
		{"no xkey", func(r *IssueRequest) { r.XKey = "" }},
		{"bad scope", func(r *IssueRequest) { r.Scopes = []string{"a b"} }},
		{"zero ttl", func(r *IssueRequest) { r.TTL = 0 }},
		{"control char in name", func(r *IssueRequest) { r.Name = "a\x1b[31m" }},
		{"control char in principal", func(r *IssueRequest) { r.Principal = "https://idp#a\nb" }},
		{"principal not UTF-8", func(r *IssueRequest) { r.Principal = "https://idp#\xff" }},
		{"principal too long", func(r *IssueRequest) { r.Principal = strings.Repeat("p", 1025) }},
	}
	for _, tt := range bad {
		t.Run("deny/"+tt.name, func(t *testing.T) {
			r := req
			tt.edit(&r)
			if _, err := Issue(w.issA, r, w.now); !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("Issue = %v; want ErrInvalidRequest", err)
			}
		})
	}
	t.Run("deny/issuer not an account key", func(t *testing.T) {
		if _, err := Issue(w.agentKP, req, w.now); !errors.Is(err, ErrKey) {
			t.Errorf("Issue(user key) = %v; want ErrKey", err)
		}
		if err != nil && strings.Contains(err.Error(), w.v.Keys.AgentSeed) {
			t.Error("error contains the seed")
		}
	})
}

func decodePayload(t testing.TB, tok string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
