package identity

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentgw/agentgw/subjects/reason"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

const canonHeader = `{"typ":"JWT","alg":"ed25519-nkey"}`

// world is a vector-based fixture: tenant_a trusts the vector's issuer,
// tenant_b trusts another issuer.
type world struct {
	v       *vector
	issA    nkeys.KeyPair
	issB    nkeys.KeyPair
	trust   map[string][]string
	now     time.Time
	iat     int64
	exp     int64
	claims  map[string]any
	cfg     VerifierConfig
	agentKP nkeys.KeyPair
}

func newWorld(t testing.TB) *world {
	t.Helper()
	v := loadVector(t)
	w := &world{v: v, issA: mustSeed(t, v.Keys.IssuerSeed), issB: mustKey(t, NewIssuer), now: v.checkAt()}
	w.agentKP = mustSeed(t, v.Keys.AgentSeed)
	w.trust = map[string][]string{"tenant_a": {v.Keys.IssuerPublic}, "tenant_b": {mustPub(t, w.issB)}}
	w.claims = v.Credential.Claims
	w.iat = int64(w.claims["iat"].(float64))
	w.exp = int64(w.claims["exp"].(float64))
	w.cfg = VerifierConfig{Audience: "billing-gateway", Skew: 30 * time.Second, MaxLifetime: time.Hour, Trust: w.trust}
	return w
}

func (w *world) verifier(t testing.TB, rev *Revocations) *Verifier {
	t.Helper()
	ver, err := NewVerifier(w.cfg, rev)
	if err != nil {
		t.Fatal(err)
	}
	return ver
}

// token signs the vector's claims, edited, with kp (the vector issuer
// when nil).
func (w *world) token(t testing.TB, kp nkeys.KeyPair, edit func(c, nats map[string]any)) string {
	t.Helper()
	c := cloneClaims(t, w.claims)
	if kp == nil {
		kp = w.issA
	}
	c["iss"] = mustPub(t, kp)
	if edit != nil {
		edit(c, c["nats"].(map[string]any))
	}
	return signRaw(t, kp, canonHeader, claimsJSON(t, c))
}

func TestVerifyWireVector(t *testing.T) {
	w := newWorld(t)
	ver := w.verifier(t, nil)
	c, err := ver.Verify(w.v.Credential.JWT, w.now)
	if err != nil {
		t.Fatalf("Verify(wire-v1) = %v; want nil", err)
	}
	verifyAt, _ := time.Parse(time.RFC3339, w.v.VerifyAt)
	if !verifyAt.Equal(w.now) {
		t.Errorf("verify_at %v != check_at_unix %v", verifyAt, w.now)
	}
	want := Credential{
		ID: w.claims["jti"].(string), Issuer: w.v.Keys.IssuerPublic, Subject: w.v.Keys.AgentPublic,
		Audience: "billing-gateway", Name: "support agent", Tenant: "tenant_a", Service: "support-agent-runtime",
		XKey: w.v.Keys.AgentXKeyPublic, IssuedAt: time.Unix(w.iat, 0).UTC(), NotBefore: time.Unix(w.iat, 0).UTC(),
		Expires: time.Unix(w.exp, 0).UTC(),
	}
	if c.ID != want.ID || c.Issuer != want.Issuer || c.Subject != want.Subject || c.Audience != want.Audience ||
		c.Name != want.Name || c.Tenant != want.Tenant || c.Service != want.Service || c.XKey != want.XKey ||
		!c.IssuedAt.Equal(want.IssuedAt) || !c.NotBefore.Equal(want.NotBefore) || !c.Expires.Equal(want.Expires) {
		t.Errorf("Verify(wire-v1) = %+v; want %+v", *c, want)
	}
	if strings.Join(c.Scopes, ",") != "agent:delegate,refund:draft" {
		t.Errorf("scopes = %v", c.Scopes)
	}
	// The default MaxLifetime (1 h) admits the vector's 3600 s lifetime.
	cfg := w.cfg
	cfg.MaxLifetime = 0
	def, err := NewVerifier(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := def.Verify(w.v.Credential.JWT, w.now); err != nil {
		t.Errorf("Verify(wire-v1) with default MaxLifetime = %v; want nil", err)
	}
}

func TestVerifyDenials(t *testing.T) {
	w := newWorld(t)
	wire := w.v.Credential.JWT
	parts := strings.Split(wire, ".")
	mallory := mustKey(t, NewIssuer)
	natsUser := func() string {
		uc := jwt.NewUserClaims(w.v.Keys.AgentPublic)
		uc.Audience = "billing-gateway"
		uc.Expires = w.exp
		s, err := uc.Encode(w.issA)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	header := func(h string) string {
		return signRaw(t, w.issA, h, claimsJSON(t, w.claims))
	}
	set := func(k string, val any) func(c, n map[string]any) {
		return func(c, n map[string]any) { c[k] = val }
	}
	setNats := func(k string, val any) func(c, n map[string]any) {
		return func(c, n map[string]any) { n[k] = val }
	}
	del := func(k string) func(c, n map[string]any) {
		return func(c, n map[string]any) { delete(c, k) }
	}
	delNats := func(k string) func(c, n map[string]any) {
		return func(c, n map[string]any) { delete(n, k) }
	}
	// tampered: the vector's header and signature around an edited payload.
	tampered := func() string {
		c := cloneClaims(t, w.claims)
		c["nats"].(map[string]any)["scopes"] = []string{"approve:*"}
		p := strings.Split(signRaw(t, w.issA, canonHeader, claimsJSON(t, c)), ".")[1]
		return parts[0] + "." + p + "." + parts[2]
	}()
	// lastChar flips the unused low bits of the signature's final base64
	// character: the same 64 bytes, a non-canonical encoding.
	noncanon := func() string {
		last := wire[len(wire)-1]
		alpha := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		i := strings.IndexByte(alpha, last)
		return wire[:len(wire)-1] + string(alpha[i^1])
	}()

	tests := []struct {
		name  string
		token string
		now   time.Time
		want  reason.Code
	}{
		{"allow/wire-v1", wire, w.now, ""},
		{"allow/resigned-vector-claims", w.token(t, nil, nil), w.now, ""},
		{"allow/tenant-b-by-its-issuer", w.token(t, w.issB, setNats("tenant", "tenant_b")), w.now, ""},
		{"allow/header-other-member-order", header(`{"alg":"ed25519-nkey","typ":"JWT"}`), w.now, ""},

		{"deny/empty", "", w.now, reason.MalformedCredential},
		{"deny/oversized", strings.Repeat("a", MaxTokenSize+1), w.now, reason.MalformedCredential},
		{"deny/alg-none", header(`{"typ":"JWT","alg":"none"}`), w.now, reason.MalformedCredential},
		{"deny/alg-none-unsigned", strings.Join([]string{b64.EncodeToString([]byte(`{"typ":"JWT","alg":"none"}`)), parts[1], ""}, "."), w.now, reason.MalformedCredential},
		{"deny/alg-HS256", header(`{"typ":"JWT","alg":"HS256"}`), w.now, reason.MalformedCredential},
		{"deny/alg-EdDSA", header(`{"typ":"JWT","alg":"EdDSA"}`), w.now, reason.MalformedCredential},
		{"deny/alg-ed25519-v1", header(`{"typ":"JWT","alg":"ed25519"}`), w.now, reason.MalformedCredential},
		{"deny/alg-uppercase", header(`{"typ":"JWT","alg":"ED25519-NKEY"}`), w.now, reason.MalformedCredential},
		{"deny/typ-lowercase", header(`{"typ":"jwt","alg":"ed25519-nkey"}`), w.now, reason.MalformedCredential},
		{"deny/typ-missing", header(`{"alg":"ed25519-nkey"}`), w.now, reason.MalformedCredential},
		{"deny/header-extra-member", header(`{"typ":"JWT","alg":"ed25519-nkey","kid":"x"}`), w.now, reason.MalformedCredential},
		{"deny/header-duplicate-alg", header(`{"typ":"JWT","alg":"none","alg":"ed25519-nkey"}`), w.now, reason.MalformedCredential},
		{"deny/claim-type-nats-user", natsUser, w.now, reason.MalformedCredential},
		{"deny/claim-type-decision", w.token(t, nil, setNats("type", "agentgw-decision")), w.now, reason.MalformedCredential},
		{"deny/claim-version-1", w.token(t, nil, setNats("version", 1)), w.now, reason.MalformedCredential},
		{"deny/untrusted-issuer", w.token(t, mallory, nil), w.now, reason.UntrustedIssuer},
		{"deny/issuer-of-another-tenant", w.token(t, w.issB, nil), w.now, reason.UntrustedIssuer},
		{"deny/claims-trusted-issuer-signed-by-other", func() string {
			return w.token(t, mallory, set("iss", w.v.Keys.IssuerPublic))
		}(), w.now, reason.MalformedCredential},
		{"deny/expired", wire, time.Unix(w.exp, 0).Add(31 * time.Second), reason.CredentialExpired},
		{"allow/expired-within-skew", wire, time.Unix(w.exp, 0).Add(30 * time.Second), ""},
		{"deny/not-yet-valid-nbf", w.token(t, nil, set("nbf", w.iat+120)), w.now, reason.CredentialNotYetValid},
		{"allow/nbf-within-skew", w.token(t, nil, set("nbf", w.iat+40)), w.now, ""},
		{"deny/iat-in-future", wire, time.Unix(w.iat, 0).Add(-31 * time.Second), reason.CredentialNotYetValid},
		{"deny/over-max-lifetime", w.token(t, nil, set("exp", w.iat+3601)), w.now, reason.CredentialTooLong},
		{"allow/lifetime-counted-from-nbf", w.token(t, nil, func(c, n map[string]any) {
			c["nbf"], c["exp"] = w.iat+10, w.iat+3610
		}), w.now.Add(10 * time.Second), ""},
		{"deny/wrong-audience", w.token(t, nil, set("aud", "other-gateway")), w.now, reason.WrongAudience},
		{"deny/missing-audience", w.token(t, nil, del("aud")), w.now, reason.WrongAudience},
		{"deny/audience-array", w.token(t, nil, set("aud", []string{"billing-gateway"})), w.now, reason.MalformedCredential},
		{"deny/missing-tenant", w.token(t, nil, delNats("tenant")), w.now, reason.MalformedCredential},
		{"deny/tenant-uppercase", w.token(t, nil, setNats("tenant", "Tenant_A")), w.now, reason.MalformedCredential},
		{"deny/tenant-wildcard", w.token(t, nil, setNats("tenant", "tenant_a.>")), w.now, reason.MalformedCredential},
		{"deny/missing-xkey", w.token(t, nil, delNats("xkey")), w.now, reason.MalformedCredential},
		{"deny/xkey-is-user-key", w.token(t, nil, setNats("xkey", w.v.Keys.AgentPublic)), w.now, reason.MalformedCredential},
		{"deny/missing-sub", w.token(t, nil, del("sub")), w.now, reason.MalformedCredential},
		{"deny/sub-is-account-key", w.token(t, nil, set("sub", w.v.Keys.IssuerPublic)), w.now, reason.MalformedCredential},
		{"deny/missing-jti", w.token(t, nil, del("jti")), w.now, reason.MalformedCredential},
		{"deny/jti-with-newline", w.token(t, nil, set("jti", "a\nb")), w.now, reason.MalformedCredential},
		{"deny/missing-iat", w.token(t, nil, del("iat")), w.now, reason.MalformedCredential},
		{"deny/missing-exp", w.token(t, nil, del("exp")), w.now, reason.MalformedCredential},
		{"deny/exp-before-iat", w.token(t, nil, set("exp", w.iat-1)), w.now, reason.MalformedCredential},
		{"deny/iat-fractional", w.token(t, nil, set("iat", float64(w.iat)+0.5)), w.now, reason.MalformedCredential},
		{"deny/scope-bad-wildcard", w.token(t, nil, setNats("scopes", []string{"approve*"})), w.now, reason.MalformedCredential},
		{"deny/unknown-claim", w.token(t, nil, set("admin", true)), w.now, reason.MalformedCredential},
		{"deny/unknown-nats-claim", w.token(t, nil, setNats("pub", map[string]any{})), w.now, reason.MalformedCredential},
		{"deny/duplicate-claim", signRaw(t, w.issA, canonHeader,
			strings.Replace(claimsJSON(t, w.claims), `"tenant":"tenant_a"`, `"tenant":"tenant_a","tenant":"tenant_b"`, 1)), w.now, reason.MalformedCredential},
		{"deny/claim-name-case", signRaw(t, w.issA, canonHeader,
			strings.Replace(claimsJSON(t, w.claims), `"aud":`, `"AUD":`, 1)), w.now, reason.MalformedCredential},
		{"deny/tampered-payload", tampered, w.now, reason.MalformedCredential},
		{"deny/truncated-signature", wire[:len(wire)-10], w.now, reason.MalformedCredential},
		{"deny/truncated-half", wire[:len(wire)/2], w.now, reason.MalformedCredential},
		{"deny/two-segments", parts[0] + "." + parts[1], w.now, reason.MalformedCredential},
		{"deny/four-segments", wire + ".x", w.now, reason.MalformedCredential},
		{"deny/noncanonical-signature-encoding", noncanon, w.now, reason.MalformedCredential},
		{"deny/padded-segments", wire + "==", w.now, reason.MalformedCredential},
		{"deny/newline-in-token", parts[0] + "." + parts[1][:20] + "\n" + parts[1][20:] + "." + parts[2], w.now, reason.MalformedCredential},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ver := w.verifier(t, nil)
			c, err := ver.Verify(tt.token, tt.now)
			// Verify is VerifyUntimed, then CheckValidity: the same
			// verdict, and the clock read by CheckValidity alone.
			split, serr := ver.VerifyUntimed(tt.token)
			if serr == nil {
				serr = ver.CheckValidity(split, tt.now)
			}
			if reason.Of(serr) != reason.Of(err) || (serr == nil) != (err == nil) {
				t.Errorf("VerifyUntimed+CheckValidity(%s) = %v; Verify = %v", tt.name, serr, err)
			}
			if _, uerr := ver.VerifyUntimed(tt.token); timeRule(tt.want) && uerr != nil {
				t.Errorf("VerifyUntimed(%s) = %v; want nil (%s is a validity rule)", tt.name, uerr, tt.want)
			}
			if tt.want == "" {
				if err != nil || c == nil {
					t.Fatalf("Verify(%s) = %v; want nil", tt.name, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify(%s) = %v; want %v", tt.name, err, tt.want)
			}
			t.Logf("Verify(%s) = %v", tt.name, err)
			if c != nil {
				t.Errorf("Verify(%s) returned a credential with error %v", tt.name, err)
			}
			var d *reason.Denial
			if !errors.As(err, &d) {
				t.Fatalf("Verify(%s) error %T is not a *reason.Denial", tt.name, err)
			}
			if len(tt.token) > 40 && strings.Contains(err.Error(), tt.token[len(tt.token)-40:]) {
				t.Errorf("Verify(%s) error quotes the token: %v", tt.name, err)
			}
		})
	}
}

// timeRule reports whether code is one of CheckValidity's denials.
func timeRule(code reason.Code) bool {
	return code == reason.CredentialExpired || code == reason.CredentialNotYetValid || code == reason.CredentialTooLong
}

func TestVerifyCachedTokenStillChecked(t *testing.T) {
	w := newWorld(t)
	wire := w.v.Credential.JWT
	jti := w.claims["jti"].(string)
	ok := func(t *testing.T, ver *Verifier, now time.Time) {
		t.Helper()
		if _, err := ver.Verify(wire, now); err != nil {
			t.Fatalf("Verify(wire-v1) = %v; want nil", err)
		}
	}
	deny := func(t *testing.T, ver *Verifier, now time.Time, want reason.Code) {
		t.Helper()
		if _, err := ver.Verify(wire, now); !errors.Is(err, want) {
			t.Fatalf("Verify(wire-v1) = %v; want %v", err, want)
		}
	}
	t.Run("deny/revoked-jti-after-cache-hit", func(t *testing.T) {
		rev := NewRevocations()
		ver := w.verifier(t, rev)
		ok(t, ver, w.now)
		if ver.cached() != 1 {
			t.Fatalf("cached() = %d; want 1", ver.cached())
		}
		rev.RevokeJTI(jti)
		deny(t, ver, w.now, reason.Revoked)
		rev.Replace(nil, nil)
		ok(t, ver, w.now)
	})
	t.Run("deny/revoked-key-after-cache-hit", func(t *testing.T) {
		rev := NewRevocations()
		ver := w.verifier(t, rev)
		ok(t, ver, w.now)
		rev.RevokeKey(w.v.Keys.AgentPublic)
		deny(t, ver, w.now, reason.Revoked)
		rev.Replace([]string{"some-other-jti"}, nil) // un-revokes the key
		ok(t, ver, w.now)
		rev.Replace(nil, []string{w.v.Keys.AgentPublic})
		deny(t, ver, w.now, reason.Revoked)
	})
	t.Run("deny/expired-after-cache-hit", func(t *testing.T) {
		ver := w.verifier(t, nil)
		ok(t, ver, w.now)
		deny(t, ver, time.Unix(w.exp+31, 0), reason.CredentialExpired)
		deny(t, ver, time.Unix(w.iat-31, 0), reason.CredentialNotYetValid)
	})
	t.Run("deny/untrusted-after-SetTrust", func(t *testing.T) {
		ver := w.verifier(t, nil)
		ok(t, ver, w.now)
		ver.SetTrust(map[string][]string{"tenant_b": {w.v.Keys.IssuerPublic}})
		if ver.cached() != 0 {
			t.Errorf("cached() after SetTrust = %d; want 0", ver.cached())
		}
		deny(t, ver, w.now, reason.UntrustedIssuer)
		ver.SetTrust(w.trust)
		ok(t, ver, w.now)
	})
	t.Run("allow/returned-credential-is-a-copy", func(t *testing.T) {
		ver := w.verifier(t, nil)
		c, _ := ver.Verify(wire, w.now)
		c.Scopes[0] = "approve:*"
		c.Tenant = "tenant_b"
		c2, err := ver.Verify(wire, w.now)
		if err != nil || c2.Scopes[0] != "agent:delegate" || c2.Tenant != "tenant_a" {
			t.Errorf("cached credential was modified through a returned copy: %v %+v", err, c2)
		}
	})
	t.Run("allow/cache-is-bounded", func(t *testing.T) {
		cfg := w.cfg
		cfg.CacheSize = 2
		ver, err := NewVerifier(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			tok := w.token(t, nil, func(c, n map[string]any) { c["name"] = strings.Repeat("n", i+1) })
			if _, err := ver.Verify(tok, w.now); err != nil {
				t.Fatalf("Verify(token %d) = %v", i, err)
			}
		}
		if ver.cached() != 2 {
			t.Errorf("cached() = %d; want 2", ver.cached())
		}
	})
	t.Run("allow/cache-disabled", func(t *testing.T) {
		cfg := w.cfg
		cfg.CacheSize = -1
		ver, err := NewVerifier(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		ok(t, ver, w.now)
		ok(t, ver, w.now)
		if ver.cached() != 0 {
			t.Errorf("cached() = %d; want 0", ver.cached())
		}
	})
	t.Run("deny/invalid-token-is-not-cached", func(t *testing.T) {
		ver := w.verifier(t, nil)
		if _, err := ver.Verify(w.token(t, mustKey(t, NewIssuer), set0("iss", w.v.Keys.IssuerPublic)), w.now); err == nil {
			t.Fatal("forged token verified")
		}
		if ver.cached() != 0 {
			t.Errorf("cached() = %d; want 0", ver.cached())
		}
	})
}

func set0(k string, v any) func(c, n map[string]any) { return func(c, n map[string]any) { c[k] = v } }

func TestVerifierConfigValidate(t *testing.T) {
	good := VerifierConfig{Audience: "gw", Trust: map[string][]string{"tenant_a": {"ABIZV3KHMZ6UPCHTZNGXCAFSELE6QI3KVYQ7COJWIM3FZPLJ6R33ZLXM"}}}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	bad := VerifierConfig{Skew: -1, MaxLifetime: -1, Trust: map[string][]string{
		"Tenant A": {"UBEAFGHZ4WU2HWKV5UISUNSQ3HPVFCDDNRIU2NO67ILH5CAZ2IYTUFAM"},
	}}
	err := bad.Validate()
	if err == nil {
		t.Fatal("Validate(bad) = nil")
	}
	for _, want := range []string{"audience", "skew", "max lifetime", "Tenant A", "not a public account"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(bad) = %v; want it to mention %q", err, want)
		}
	}
	if _, err := NewVerifier(bad, nil); err == nil {
		t.Error("NewVerifier(bad) = nil error")
	}
}

func TestVerifyConcurrent(t *testing.T) {
	w := newWorld(t)
	rev := NewRevocations()
	ver := w.verifier(t, rev)
	cfg := w.cfg
	cfg.CacheSize = 4
	small, _ := NewVerifier(cfg, rev)
	toks := []string{w.v.Credential.JWT, w.token(t, nil, nil), w.token(t, w.issB, setNats0("tenant", "tenant_b"))}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				tok := toks[(g+i)%len(toks)]
				_, err := ver.Verify(tok, w.now)
				if code := reason.Of(err); code != "" && code != reason.Revoked && code != reason.UntrustedIssuer {
					t.Errorf("Verify = %v", err)
					return
				}
				_, _ = small.Verify(tok, w.now)
			}
		}()
	}
	for i := range 200 {
		switch i % 4 {
		case 0:
			rev.RevokeKey(w.v.Keys.AgentPublic)
		case 1:
			rev.Replace(nil, nil)
		case 2:
			ver.SetTrust(map[string][]string{"tenant_b": w.trust["tenant_b"]})
		case 3:
			ver.SetTrust(w.trust)
		}
	}
	close(done)
	wg.Wait()
	rev.Replace(nil, nil)
	if _, err := ver.Verify(w.v.Credential.JWT, w.now); err != nil {
		t.Errorf("Verify after the storm = %v", err)
	}
}

func setNats0(k string, v any) func(c, n map[string]any) {
	return func(c, n map[string]any) { n[k] = v }
}

func TestRevocationsZeroValue(t *testing.T) {
	var r Revocations
	if r.Revoked("", "a", "b") {
		t.Fatal("empty set revokes")
	}
	r.RevokeJTI("a")
	r.RevokeKey("k")
	if !r.Revoked("", "a", "x") || !r.Revoked("", "x", "k") || r.Revoked("", "x", "y") {
		t.Error("zero-value Revocations does not record revocations")
	}
}

// TestRevocationScopedToIssuer: a jti is its issuer's to write, so two
// tenants' issuers can write the same one. A scoped entry revokes only
// its issuer's credential; a bare one, the id whoever issued it.
func TestRevocationScopedToIssuer(t *testing.T) {
	a, b := mustAccount(t), mustAccount(t)
	r := NewRevocations()
	r.Replace([]string{ScopedJTI(b, "SAMEJTI")}, nil)
	if r.Revoked(a, "SAMEJTI", "") || !r.Revoked(b, "SAMEJTI", "") {
		t.Errorf("scoped to %s: revoked for a = %v, b = %v; want only b", b, r.Revoked(a, "SAMEJTI", ""), r.Revoked(b, "SAMEJTI", ""))
	}
	r.Replace([]string{"SAMEJTI"}, nil)
	if !r.Revoked(a, "SAMEJTI", "") || !r.Revoked(b, "SAMEJTI", "") {
		t.Error("a bare jti does not revoke the id of every issuer")
	}
	for j, ok := range map[string]bool{
		"SAMEJTI": true, ScopedJTI(a, "SAMEJTI"): true, "has space": false, ScopedJTI(a, "has space"): false,
		"UAAA/SAMEJTI": false, a + "/": false, "/SAMEJTI": false, ScopedJTI(a, ScopedJTI(b, "X")): false,
	} {
		if ValidRevokedJTI(j) != ok {
			t.Errorf("ValidRevokedJTI(%q) = %v; want %v", j, !ok, ok)
		}
	}
}

func mustAccount(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestScopedRevocationSparesAnotherTenant: tenant B's issuer mints a
// credential whose jti copies one of tenant A's. The operator revokes
// B's credential as the CLI writes it (scoped to its issuer): A's stands.
func TestScopedRevocationSparesAnotherTenant(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	issA, issB := mustKey(t, NewIssuer), mustKey(t, NewIssuer)
	agentA, agentB := mustKey(t, NewAgent), mustKey(t, NewAgent)
	xA, xB := mustKey(t, NewCurve), mustKey(t, NewCurve)
	rev := NewRevocations()
	v, err := NewVerifier(VerifierConfig{Audience: "gw", Skew: 30 * time.Second, MaxLifetime: time.Hour,
		Trust: map[string][]string{"tenant_a": {mustPub(t, issA)}, "tenant_b": {mustPub(t, issB)}}}, rev)
	if err != nil {
		t.Fatal(err)
	}
	victim, err := Issue(issA, IssueRequest{Subject: mustPub(t, agentA), Audience: "gw", Tenant: "tenant_a", XKey: mustPub(t, xA), Scopes: []string{"kb:read"}, TTL: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	vc, err := v.Verify(victim.Reveal(), now)
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{
		"aud": "gw", "exp": now.Add(time.Hour).Unix(), "jti": vc.ID, "iat": now.Unix(), "iss": mustPub(t, issB),
		"nbf": now.Unix(), "sub": mustPub(t, agentB),
		"nats": map[string]any{"tenant": "tenant_b", "type": CredentialType, "version": 2, "xkey": mustPub(t, xB)},
	}
	raw, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	copied := signRaw(t, issB, jwtHeader, string(raw))
	cc, err := v.Verify(copied, now)
	if err != nil || cc.ID != vc.ID {
		t.Fatalf("tenant B's credential with tenant A's jti: %v", err)
	}
	rev.Replace([]string{ScopedJTI(Token(copied).Issuer(), Token(copied).JTI())}, nil)
	if _, err := v.Verify(copied, now); !errors.Is(err, reason.Revoked) {
		t.Errorf("tenant B's credential after its scoped revocation: %v; want revoked", err)
	}
	if _, err := v.Verify(victim.Reveal(), now); err != nil {
		t.Errorf("tenant A's credential after tenant B's was revoked: %v", err)
	}
}
