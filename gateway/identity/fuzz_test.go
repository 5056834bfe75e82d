package identity

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/subjects/reason"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// The seed corpus lives at the repository root, beside the other shared
// test data; `go test -fuzz` only reads testdata/fuzz under the package,
// so FuzzVerifyCredential adds the root corpus itself. Regenerate with
//
//	go test ./identity -run TestFuzzCorpus -update-corpus
const fuzzCorpusDir = "../../testdata/fuzz/FuzzVerifyCredential"

var updateCorpus = flag.Bool("update-corpus", false, "rewrite "+fuzzCorpusDir)

var tenantForm = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// FuzzVerifyCredential feeds Verify arbitrary tokens (resign=false) and
// arbitrary claims signed by a trusted issuer (resign=true, so the claim
// rules, not the signature, are what is fuzzed). It must never panic, a
// cached and an uncached verifier must agree, every failure must be a
// credential-stage denial that does not quote the token, and every success
// must satisfy each claim rule, checked independently (jwt/v2 re-verifies
// the signature; regexps and nkeys re-check the claims).
func FuzzVerifyCredential(f *testing.F) {
	w := newWorld(f)
	for _, e := range readFuzzCorpus(f) {
		f.Add(e.raw, e.resign)
	}
	f.Add(w.v.Credential.JWT, false)
	signer, err := NewSigner(w.issA)
	if err != nil {
		f.Fatal(err)
	}
	rev := NewRevocations()
	rev.RevokeJTI("REVOKED")
	cached := w.verifier(f, rev)
	cfg := w.cfg
	cfg.CacheSize = -1
	uncached, err := NewVerifier(cfg, rev)
	if err != nil {
		f.Fatal(err)
	}
	credentialCodes := map[reason.Code]bool{
		reason.MalformedCredential: true, reason.UntrustedIssuer: true, reason.Revoked: true,
		reason.WrongAudience: true, reason.CredentialExpired: true, reason.CredentialNotYetValid: true,
		reason.CredentialTooLong: true,
	}

	f.Fuzz(func(t *testing.T, raw string, resign bool) {
		token := raw
		if resign {
			token = SignJWT(signer, []byte(raw)).Reveal()
		}
		_ = Token(token).String()
		c, err := cached.Verify(token, w.now)
		c2, err2 := uncached.Verify(token, w.now)
		if reason.Of(err) != reason.Of(err2) {
			t.Fatalf("cached Verify = %v; uncached = %v", err, err2)
		}
		if err != nil {
			var d *reason.Denial
			if !errors.As(err, &d) || !credentialCodes[d.Code] || c != nil {
				t.Fatalf("Verify = %v (%T), %v; want a credential denial and no credential", err, err, c)
			}
			if len(token) >= 24 && strings.Contains(err.Error(), token[len(token)-24:]) {
				t.Fatalf("Verify error quotes the token: %v", err)
			}
			return
		}
		if fmt.Sprint(*c) != fmt.Sprint(*c2) {
			t.Fatalf("cached credential %+v != uncached %+v", *c, *c2)
		}
		checkCredentialRules(t, w, token, c)
	})
}

// checkCredentialRules re-checks a successful Verify without its code.
func checkCredentialRules(t *testing.T, w *world, token string, c *Credential) {
	t.Helper()
	gc, err := jwt.DecodeGeneric(token)
	if err != nil {
		t.Fatalf("Verify accepted a token jwt/v2 rejects: %v", err)
	}
	header, _ := b64.DecodeString(strings.SplitN(token, ".", 2)[0])
	if !strings.Contains(string(header), `"ed25519-nkey"`) || strings.Contains(strings.ToLower(string(header)), `"none"`) {
		t.Fatalf("accepted header %s", header)
	}
	switch {
	case gc.Issuer != c.Issuer || gc.Subject != c.Subject || gc.ID != c.ID || gc.Audience != c.Audience:
		t.Fatalf("jwt/v2 reads other registered claims: %+v vs %+v", gc.ClaimsData, *c)
	case gc.Expires != c.Expires.Unix() || gc.IssuedAt != c.IssuedAt.Unix():
		t.Fatalf("jwt/v2 reads other times: %+v vs %+v", gc.ClaimsData, *c)
	case gc.Data["type"] != CredentialType || gc.Data["tenant"] != c.Tenant || gc.Data["xkey"] != c.XKey:
		t.Fatalf("jwt/v2 reads other nats claims: %v vs %+v", gc.Data, *c)
	case !nkeys.IsValidPublicAccountKey(c.Issuer) || !nkeys.IsValidPublicUserKey(c.Subject) || !nkeys.IsValidPublicCurveKey(c.XKey):
		t.Fatalf("accepted keys iss %s sub %s xkey %s", c.Issuer, c.Subject, c.XKey)
	case !tenantForm.MatchString(c.Tenant) || c.ID == "" || c.Audience != w.cfg.Audience:
		t.Fatalf("accepted tenant %q jti %q aud %q", c.Tenant, c.ID, c.Audience)
	}
	trusted := false
	for _, k := range w.trust[c.Tenant] {
		trusted = trusted || k == c.Issuer
	}
	if !trusted {
		t.Fatalf("accepted issuer %s for tenant %s", c.Issuer, c.Tenant)
	}
	start := c.IssuedAt
	if c.NotBefore.After(start) {
		start = c.NotBefore
	}
	skew := w.cfg.Skew
	if w.now.After(c.Expires.Add(skew)) || w.now.Add(skew).Before(start) || c.Expires.Sub(start) > w.cfg.MaxLifetime || !c.Expires.After(start) {
		t.Fatalf("accepted times iat %v nbf %v exp %v at %v", c.IssuedAt, c.NotBefore, c.Expires, w.now)
	}
	if c.ID == "REVOKED" {
		t.Fatal("accepted a revoked jti")
	}
}

type corpusEntry struct {
	raw    string
	resign bool
}

// readFuzzCorpus reads "go test fuzz v1" files of (string, bool).
func readFuzzCorpus(t testing.TB) []corpusEntry {
	t.Helper()
	ents, err := os.ReadDir(fuzzCorpusDir)
	if err != nil {
		t.Fatalf("fuzz corpus: %v", err)
	}
	var out []corpusEntry
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		f, err := os.Open(filepath.Join(fuzzCorpusDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		var lines []string
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		_ = f.Close()
		if len(lines) != 3 || lines[0] != "go test fuzz v1" ||
			!strings.HasPrefix(lines[1], "string(") || !strings.HasPrefix(lines[2], "bool(") {
			t.Fatalf("fuzz corpus %s: not a (string, bool) go test fuzz v1 file", e.Name())
		}
		raw, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
		if err != nil {
			t.Fatalf("fuzz corpus %s: %v", e.Name(), err)
		}
		resign, err := strconv.ParseBool(strings.TrimSuffix(strings.TrimPrefix(lines[2], "bool("), ")"))
		if err != nil {
			t.Fatalf("fuzz corpus %s: %v", e.Name(), err)
		}
		out = append(out, corpusEntry{raw, resign})
	}
	return out
}

// TestFuzzCorpus checks (or, with -update-corpus, writes) the seed corpus
// and that every entry runs the way its name says.
func TestFuzzCorpus(t *testing.T) {
	w := newWorld(t)
	wire := w.v.Credential.JWT
	parts := strings.Split(wire, ".")
	claims := func(edit func(c, n map[string]any)) string {
		c := cloneClaims(t, w.claims)
		if edit != nil {
			edit(c, c["nats"].(map[string]any))
		}
		return claimsJSON(t, c)
	}
	seeds := []struct {
		name   string
		raw    string
		resign bool
		want   reason.Code
	}{
		{"wire-v1", wire, false, ""},
		{"claims-valid", claims(nil), true, ""},
		{"claims-pattern-scope", claims(func(c, n map[string]any) { n["scopes"] = []string{"approve:refunds.*"} }), true, ""},
		{"claims-tenant-b", claims(func(c, n map[string]any) { n["tenant"] = "tenant_b" }), true, reason.UntrustedIssuer},
		{"claims-no-xkey", claims(func(c, n map[string]any) { delete(n, "xkey") }), true, reason.MalformedCredential},
		{"claims-long-life", claims(func(c, n map[string]any) { c["exp"] = 1795655311 + 86400 }), true, reason.CredentialTooLong},
		{"claims-nbf-future", claims(func(c, n map[string]any) { c["nbf"] = 1795655311 + 600 }), true, reason.CredentialNotYetValid},
		{"claims-revoked", claims(func(c, n map[string]any) { c["jti"] = "REVOKED" }), true, reason.Revoked},
		{"claims-audience", claims(func(c, n map[string]any) { c["aud"] = "other" }), true, reason.WrongAudience},
		{"claims-nats-user", claims(func(c, n map[string]any) { n["type"] = "user" }), true, reason.MalformedCredential},
		{"claims-duplicate", strings.Replace(claims(nil), `"tenant":"tenant_a"`, `"tenant":"tenant_a","tenant":"x"`, 1), true, reason.MalformedCredential},
		{"alg-none", b64.EncodeToString([]byte(`{"typ":"JWT","alg":"none"}`)) + "." + parts[1] + "." + parts[2], false, reason.MalformedCredential},
		{"truncated", wire[:len(wire)-3], false, reason.MalformedCredential},
		{"tampered", parts[0] + "." + parts[1][:30] + "A" + parts[1][31:] + "." + parts[2], false, reason.MalformedCredential},
		{"empty", "", false, reason.MalformedCredential},
		{"dots", "a.b.c", false, reason.MalformedCredential},
	}
	if *updateCorpus {
		if err := os.MkdirAll(fuzzCorpusDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\nstring(%s)\nbool(%t)\n", strconv.Quote(s.raw), s.resign)
			sum := sha256.Sum256([]byte(body))
			name := s.name + "-" + hex.EncodeToString(sum[:4])
			if err := os.WriteFile(filepath.Join(fuzzCorpusDir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := readFuzzCorpus(t); len(got) < len(seeds) {
		t.Fatalf("fuzz corpus has %d entries; want at least %d (run with -update-corpus)", len(got), len(seeds))
	}
	signer, _ := NewSigner(w.issA)
	rev := NewRevocations()
	rev.RevokeJTI("REVOKED")
	ver := w.verifier(t, rev)
	for _, s := range seeds {
		t.Run(s.name, func(t *testing.T) {
			tok := s.raw
			if s.resign {
				tok = SignJWT(signer, []byte(s.raw)).Reveal()
			}
			_, err := ver.Verify(tok, w.now)
			if reason.Of(err) != s.want {
				t.Errorf("Verify(%s) = %v; want %q", s.name, err, s.want)
			}
		})
	}
}
