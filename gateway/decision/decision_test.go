package decision

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects/reason"
	"github.com/nats-io/nkeys"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	now     = time.Date(2026, 11, 26, 1, 8, 41, 0, time.UTC)
	body    = []byte(`{"v":1,"message_id":"9f1c2b7e4d8a4c3fb6e15a2d7c9e0f41"}`)
	payload = []byte("xkv1 re-sealed payload bytes")
)

type fixture struct {
	gw, other *identity.Signer
	agent     string
	approver  string
	claims    Claims
	opt       VerifyOptions
}

// newSigner is a signer of the key pair f makes.
func newSigner(t testing.TB, f func() (nkeys.KeyPair, error)) *identity.Signer {
	t.Helper()
	kp, err := f()
	if err != nil {
		t.Fatal(err)
	}
	s, err := identity.NewSigner(kp)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	signer := func(f func() (nkeys.KeyPair, error)) *identity.Signer { return newSigner(t, f) }
	fx := &fixture{gw: signer(identity.NewGatewayKey), other: signer(identity.NewGatewayKey)}
	fx.agent = signer(identity.NewAgent).PublicKey()
	fx.approver = signer(identity.NewAgent).PublicKey()
	fx.claims = Claims{
		Subject: fx.agent, Audience: "refunds.draft_refund",
		IssuedAt: now, Expires: now.Add(time.Minute),
		Tenant: "tenant_a", Scope: "refund:draft",
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", MessageID: "9f1c2b7e4d8a4c3fb6e15a2d7c9e0f41",
		BodyDigest: Digest(body), PayloadDigest: Digest(payload),
		PolicyIDs: []string{"refund-limit", "policy0"}, PolicyVersion: "v42", Route: RouteAllow,
	}
	fx.opt = VerifyOptions{TrustedGateways: []string{fx.gw.PublicKey()}, Audience: "refunds.draft_refund", Now: now.Add(5 * time.Second), Skew: 2 * time.Second}
	return fx
}

func (fx *fixture) sign(t testing.TB, s *identity.Signer, edit func(c *Claims)) string {
	t.Helper()
	c := fx.claims
	if edit != nil {
		edit(&c)
	}
	tok, err := Sign(s, c)
	if err != nil {
		t.Fatalf("Sign = %v", err)
	}
	return tok.Reveal()
}

// rawSign signs arbitrary claims JSON as a batch of one, bypassing the
// claim checks of Sign.
func rawSign(s *identity.Signer, claims string) string {
	in := tokenHeadB64 + "." + b64.EncodeToString([]byte(claims))
	leaf := leafHash([]byte(in))
	sig := s.Sign(rootInput(1, leaf))
	return in + "." + b64.EncodeToString([]byte{0, 1}) + "." + b64.EncodeToString(sig)
}

func TestRoundTrip(t *testing.T) {
	fx := newFixture(t)
	tok := fx.sign(t, fx.gw, func(c *Claims) { c.Act.Approver = fx.approver })
	c, err := Verify(tok, fx.opt)
	if err != nil {
		t.Fatalf("Verify = %v", err)
	}
	want := fx.claims
	want.Issuer = fx.gw.PublicKey()
	want.Act = Actor{Subject: fx.agent, Via: fx.gw.PublicKey(), Approver: fx.approver}
	want.ID = c.ID
	if len(c.ID) != 26 {
		t.Errorf("jti %q; want 26 base32 characters (128 bits)", c.ID)
	}
	if c.Issuer != want.Issuer || c.Subject != want.Subject || c.Audience != want.Audience || c.Act != want.Act ||
		!c.IssuedAt.Equal(want.IssuedAt) || !c.Expires.Equal(want.Expires) || c.Tenant != want.Tenant ||
		c.Scope != want.Scope || c.TraceID != want.TraceID || c.MessageID != want.MessageID ||
		c.BodyDigest != want.BodyDigest || c.PayloadDigest != want.PayloadDigest ||
		strings.Join(c.PolicyIDs, ",") != "refund-limit,policy0" || c.PolicyVersion != "v42" || c.Route != RouteAllow {
		t.Errorf("Verify = %+v;\nwant %+v", *c, want)
	}
	if err := c.CheckBinding(body, payload); err != nil {
		t.Errorf("CheckBinding(exact bytes) = %v", err)
	}

	parts := strings.Split(tok, ".")
	if len(parts) != 4 {
		t.Fatalf("token has %d parts; want header.claims.proof.signature", len(parts))
	}
	if h, _ := b64.DecodeString(parts[0]); string(h) != tokenHeader {
		t.Errorf("header = %s", h)
	}
	if cl, _ := b64.DecodeString(parts[1]); !strings.Contains(string(cl), `"type":"agentgw-decision"`) {
		t.Errorf("claims lack the decision type: %s", cl)
	}
	if Header != "Agentgw-Decision" {
		t.Errorf("Header = %q", Header)
	}
	if tok2 := fx.sign(t, fx.gw, nil); tok2 == tok || identity.Token(tok2).JTI() == c.ID {
		t.Error("two tokens share a jti")
	}
}

func TestVerifyDenials(t *testing.T) {
	fx := newFixture(t)
	good := fx.sign(t, fx.gw, nil)
	parts := strings.Split(good, ".")
	claimsJSON, _ := b64.DecodeString(parts[1])
	tamper := func(old, new string) string {
		p := b64.EncodeToString([]byte(strings.Replace(string(claimsJSON), old, new, 1)))
		return parts[0] + "." + p + "." + parts[2] + "." + parts[3]
	}
	resign := func(old, new string) string {
		return rawSign(fx.gw, strings.Replace(string(claimsJSON), old, new, 1))
	}
	userKP, _ := identity.NewIssuer()
	issuerSigner, _ := identity.NewSigner(userKP)
	withOpt := func(edit func(o *VerifyOptions)) VerifyOptions {
		o := fx.opt
		edit(&o)
		return o
	}

	tests := []struct {
		name  string
		token string
		opt   VerifyOptions
		want  reason.Code
	}{
		{"allow/good", good, fx.opt, ""},
		{"allow/expired-within-skew", good, withOpt(func(o *VerifyOptions) { o.Now = now.Add(time.Minute + 2*time.Second) }), ""},
		{"allow/second-trusted-gateway", fx.sign(t, fx.other, nil), withOpt(func(o *VerifyOptions) {
			o.TrustedGateways = append(o.TrustedGateways, fx.other.PublicKey())
		}), ""},
		{"deny/missing", "", fx.opt, reason.DecisionMissing},
		{"deny/forged-other-gateway-key", fx.sign(t, fx.other, nil), fx.opt, reason.DecisionInvalid},
		{"deny/forged-claims-trusted-iss", func() string {
			tok := resign(`"iss":"`+fx.gw.PublicKey()+`"`, `"iss":"`+fx.gw.PublicKey()+`"`)
			p := strings.Split(tok, ".")
			forged := rawSign(fx.other, string(claimsJSON))
			return p[0] + "." + p[1] + "." + p[2] + "." + strings.Split(forged, ".")[3]
		}(), fx.opt, reason.DecisionInvalid},
		{"deny/tampered-audience", tamper(`"aud":"refunds.draft_refund"`, `"aud":"refunds.issue_refund"`), withOpt(func(o *VerifyOptions) { o.Audience = "refunds.issue_refund" }), reason.DecisionInvalid},
		{"deny/tampered-body-digest", tamper(fx.claims.BodyDigest, Digest([]byte("other"))), fx.opt, reason.DecisionInvalid},
		{"deny/truncated", good[:len(good)-5], fx.opt, reason.DecisionInvalid},
		{"deny/garbage", "not a jwt", fx.opt, reason.DecisionInvalid},
		{"deny/alg-none", b64.EncodeToString([]byte(`{"typ":"JWT","alg":"none"}`)) + "." + parts[1] + "." + parts[2] + "." + parts[3], fx.opt, reason.DecisionInvalid},
		{"deny/jwt-form", identity.SignJWT(fx.gw, claimsJSON).Reveal(), fx.opt, reason.DecisionInvalid},
		{"deny/proof-claims-bigger-tree", parts[0] + "." + parts[1] + "." + b64.EncodeToString([]byte{0, 2}) + "." + parts[3], fx.opt, reason.DecisionInvalid},
		{"deny/expired", good, withOpt(func(o *VerifyOptions) { o.Now = now.Add(time.Minute + 3*time.Second) }), reason.DecisionExpired},
		{"deny/issued-in-future", good, withOpt(func(o *VerifyOptions) { o.Now = now.Add(-3 * time.Second) }), reason.DecisionInvalid},
		{"deny/wrong-audience", good, withOpt(func(o *VerifyOptions) { o.Audience = "refunds.issue_refund" }), reason.DecisionAudience},
		{"deny/no-audience-configured", good, withOpt(func(o *VerifyOptions) { o.Audience = "" }), reason.DecisionAudience},
		{"deny/no-trusted-gateways", good, withOpt(func(o *VerifyOptions) { o.TrustedGateways = nil }), reason.DecisionInvalid},
		{"deny/no-clock", good, withOpt(func(o *VerifyOptions) { o.Now = time.Time{} }), reason.Internal},
		{"deny/negative-skew", good, withOpt(func(o *VerifyOptions) { o.Skew = -time.Second }), reason.Internal},
		{"deny/credential-type", resign(`"type":"agentgw-decision"`, `"type":"agentgw-credential"`), fx.opt, reason.DecisionInvalid},
		{"deny/unknown-claim", resign(`"route":"allow"`, `"route":"allow","admin":true`), fx.opt, reason.DecisionInvalid},
		{"deny/duplicate-claim", resign(`"aud":"refunds.draft_refund"`, `"aud":"refunds.draft_refund","aud":"x"`), fx.opt, reason.DecisionInvalid},
		{"deny/route-other", resign(`"route":"allow"`, `"route":"approved"`), fx.opt, reason.DecisionInvalid},
		{"deny/act-sub-not-sub", resign(`"act":{"sub":"`+fx.agent, `"act":{"sub":"`+fx.approver), fx.opt, reason.DecisionInvalid},
		{"deny/signed-by-issuer-key", func() string {
			c := strings.ReplaceAll(string(claimsJSON), fx.gw.PublicKey(), issuerSigner.PublicKey())
			return rawSign(issuerSigner, c)
		}(), withOpt(func(o *VerifyOptions) { o.TrustedGateways = []string{issuerSigner.PublicKey()} }), reason.DecisionInvalid},
	}
	// Only a token whose issuer the caller does not trust is marked
	// ErrUntrustedGateway: the caller's keys may be at fault. A bad
	// signature under a trusted key is not.
	untrusted := map[string]bool{"deny/forged-other-gateway-key": true, "deny/no-trusted-gateways": true}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Verify(tt.token, tt.opt)
			if got := errors.Is(err, ErrUntrustedGateway); got != untrusted[tt.name] {
				t.Errorf("Verify(%s) = %v: marked ErrUntrustedGateway %v, want %v", tt.name, err, got, untrusted[tt.name])
			}
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Verify(%s) = %v; want nil", tt.name, err)
				}
				return
			}
			t.Logf("Verify(%s) = %v", tt.name, err)
			if !errors.Is(err, tt.want) || c != nil {
				t.Fatalf("Verify(%s) = %v; want %v", tt.name, err, tt.want)
			}
			if len(tt.token) > 30 && strings.Contains(err.Error(), tt.token[len(tt.token)-30:]) {
				t.Errorf("Verify(%s) error quotes the token", tt.name)
			}
		})
	}
}

func TestCheckBinding(t *testing.T) {
	fx := newFixture(t)
	c, err := Verify(fx.sign(t, fx.gw, nil), fx.opt)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		body, payload []byte
		want          reason.Code
	}{
		{"allow/exact", body, payload, ""},
		{"deny/body-other", []byte(`{"v":1,"message_id":"another"}`), payload, reason.DecisionBinding},
		{"deny/body-trailing-space", append([]byte(string(body)), ' '), payload, reason.DecisionBinding},
		{"deny/payload-other", body, []byte("xkv1 other payload"), reason.DecisionBinding},
		{"deny/payload-swapped-with-body", payload, body, reason.DecisionBinding},
		{"deny/empty", nil, nil, reason.DecisionBinding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.CheckBinding(tt.body, tt.payload)
			if reason.Of(err) != tt.want {
				t.Errorf("CheckBinding(%s) = %v; want %q", tt.name, err, tt.want)
			}
		})
	}
	var nilClaims *Claims
	if !errors.Is(nilClaims.CheckBinding(body, payload), reason.DecisionBinding) {
		t.Error("nil claims bind")
	}
}

func TestSignRejects(t *testing.T) {
	fx := newFixture(t)
	agentKP, _ := identity.NewAgent()
	agentSigner, _ := identity.NewSigner(agentKP)
	approverKP, _ := identity.NewAgent()
	approver, _ := identity.NewSigner(approverKP)
	if _, err := Sign(agentSigner, fx.claims); !errors.Is(err, identity.ErrKey) {
		t.Errorf("Sign(agent key) = %v; want identity.ErrKey", err)
	}
	if _, err := Sign(nil, fx.claims); !errors.Is(err, identity.ErrKey) {
		t.Errorf("Sign(nil) = %v; want identity.ErrKey", err)
	}
	bad := []struct {
		name string
		edit func(c *Claims)
	}{
		{"no subject", func(c *Claims) { c.Subject = "" }},
		{"subject not a user key", func(c *Claims) { c.Subject = fx.gw.PublicKey() }},
		// nkeys' base32 decoding skips line breaks; the wire's keys have none.
		{"subject with a line break", func(c *Claims) {
			c.Subject = c.Subject[:20] + "\n" + c.Subject[20:]
			c.Act.Subject = c.Subject
		}},
		{"approver with a line break", func(c *Claims) {
			k := approver.PublicKey()
			c.Act.Approver = k[:20] + "\r\n" + k[20:]
		}},
		{"no audience", func(c *Claims) { c.Audience = "" }},
		{"audience with wildcard", func(c *Claims) { c.Audience = "refunds.>" }},
		{"no times", func(c *Claims) { c.IssuedAt, c.Expires = time.Time{}, time.Time{} }},
		{"exp before iat", func(c *Claims) { c.Expires = c.IssuedAt.Add(-time.Second) }},
		{"bad tenant", func(c *Claims) { c.Tenant = "Tenant A" }},
		{"pattern scope", func(c *Claims) { c.Scope = "refund:*" }},
		{"bad trace id", func(c *Claims) { c.TraceID = "00000000000000000000000000000000" }},
		{"short message id", func(c *Claims) { c.MessageID = "short" }},
		{"digest uppercase", func(c *Claims) { c.BodyDigest = strings.ToUpper(c.BodyDigest) }},
		{"no payload digest", func(c *Claims) { c.PayloadDigest = "" }},
		{"bad route", func(c *Claims) { c.Route = "deny" }},
		{"self approval", func(c *Claims) { c.Act.Approver = c.Subject }},
		{"act via someone else", func(c *Claims) { c.Act.Via = fx.other.PublicKey() }},
		{"policy id with space", func(c *Claims) { c.PolicyIDs = []string{"a b"} }},
	}
	for _, tt := range bad {
		t.Run("deny/"+tt.name, func(t *testing.T) {
			c := fx.claims
			tt.edit(&c)
			if _, err := Sign(fx.gw, c); !errors.Is(err, ErrInvalidClaims) {
				t.Errorf("Sign(%s) = %v; want ErrInvalidClaims", tt.name, err)
			}
		})
	}
}

// TestValidGatewayKey: the issuer check takes the strict form only, and
// remembering the last key it accepted never lets another string through.
func TestValidGatewayKey(t *testing.T) {
	fx := newFixture(t)
	gw := fx.gw.PublicKey()
	if !validGatewayKey(gw) || !validGatewayKey(gw) {
		t.Fatal("the gateway's key refused")
	}
	for name, bad := range map[string]string{
		"line break":  gw[:20] + "\n" + gw[20:],
		"crlf suffix": gw + "\r\n",
		"checksum":    gw[:55] + map[bool]string{true: "B", false: "A"}[gw[55] == 'A'],
		"user key":    fx.claims.Subject,
		"lowercase":   strings.ToLower(gw),
		"short":       gw[:55],
		"empty":       "",
	} {
		if validGatewayKey(bad) {
			t.Errorf("validGatewayKey(%s) = true", name)
		}
	}
	if !validGatewayKey(gw) {
		t.Error("the gateway's key refused after refusals")
	}
}

// TestClaimAlphabets: every byte is in or out of the id and hex claims'
// alphabets exactly as the wire rules write them.
func TestClaimAlphabets(t *testing.T) {
	const id = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"
	const hex = "0123456789abcdef"
	for c := range 256 {
		s := string([]byte{byte(c)})
		if got, want := ValidClaimID(s), strings.Contains(id, s); got != want {
			t.Errorf("ValidClaimID(%q) = %v", s, got)
		}
		if got, want := lowerHex(s, 1), strings.Contains(hex, s); got != want {
			t.Errorf("lowerHex(%q) = %v", s, got)
		}
		// One byte out of place in a long value is found too.
		long := strings.Repeat("a", 40) + s + strings.Repeat("0", 23)
		if got, want := lowerHex(long, 64), strings.Contains(hex, s); got != want {
			t.Errorf("lowerHex(..%q..) = %v", s, got)
		}
	}
}

// TestAppendJSONMatchesMarshal: the hand-written claims encoder writes
// exactly what json.Marshal writes, with and without optional members,
// and escaping still goes through the library.
func TestAppendJSONMatchesMarshal(t *testing.T) {
	base := wire{Audience: "refunds.draft", Expires: 1700000300, ID: "JTI", IssuedAt: 1700000000, Issuer: "NGW", Subject: "UAG",
		Nats: wireNats{Act: Actor{Subject: "UAG", Via: "NGW"}, BodyDigest: "ab", MessageID: "m-1", PayloadDigest: "cd",
			PolicyIDs: []string{"p1", "p:2"}, PolicyVersion: "sha256:00", Route: RouteAllow, Scope: "refund:draft",
			Tenant: "tenant_a", TraceID: "0af7", Type: Type, Version: version}}
	cases := map[string]func(*wire){
		"base":            func(*wire) {},
		"approver":        func(w *wire) { w.Nats.Act.Approver = "UAP" },
		"no policy ids":   func(w *wire) { w.Nats.PolicyIDs = nil },
		"empty policy id": func(w *wire) { w.Nats.PolicyIDs = []string{} },
		"negative time":   func(w *wire) { w.IssuedAt = -5 },
	}
	for name, mod := range cases {
		w := base
		mod(&w)
		want, err := json.Marshal(&w)
		if err != nil {
			t.Fatal(err)
		}
		if !w.plain() {
			t.Fatalf("%s: not plain", name)
		}
		if got := w.appendJSON(nil); string(got) != string(want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
	for _, s := range []string{`a"b`, `a\b`, "a\nb", "é"} {
		w := base
		w.Nats.Scope = s
		if w.plain() {
			t.Errorf("scope %q counted as plain: it needs escaping", s)
		}
	}
}

// TestIssued: Issued reads back a token a trusted gateway signed whatever
// its times and audience (an expired one included), and refuses one that
// is empty, signed by another gateway or altered.
func TestIssued(t *testing.T) {
	fx := newFixture(t)
	tok := fx.sign(t, fx.gw, func(c *Claims) { c.Act.Approver = fx.approver })
	if _, err := Verify(tok, VerifyOptions{TrustedGateways: fx.opt.TrustedGateways, Audience: "other.target", Now: now.Add(time.Hour)}); err == nil {
		t.Fatal("Verify accepted an expired token for another audience")
	}
	c, err := Issued(tok, fx.opt.TrustedGateways)
	if err != nil {
		t.Fatalf("Issued = %v", err)
	}
	if c.Subject != fx.agent || c.Audience != fx.claims.Audience || c.Tenant != "tenant_a" || c.Act.Approver != fx.approver ||
		c.TraceID != fx.claims.TraceID || c.MessageID != fx.claims.MessageID || !c.Expires.Equal(fx.claims.Expires) {
		t.Errorf("Issued = %+v; want the signed claims", *c)
	}
	parts := strings.Split(tok, ".")
	altered := fx.claims
	altered.Subject = fx.approver
	forged := strings.Split(fx.sign(t, fx.other, func(c *Claims) { *c = altered }), ".")
	for name, bad := range map[string]string{
		"empty":         "",
		"other-gateway": fx.sign(t, fx.other, nil),
		"altered":       parts[0] + "." + forged[1] + "." + parts[2] + "." + parts[3],
	} {
		if _, err := Issued(bad, fx.opt.TrustedGateways); err == nil {
			t.Errorf("%s: Issued accepted it", name)
		}
	}
}
