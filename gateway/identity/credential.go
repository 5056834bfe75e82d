package identity

import (
	"crypto/sha512"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/nats-io/nkeys"
)

// CredentialType is the claim type (nats.type) of an agentgw credential.
const CredentialType = "agentgw-credential"

// credentialVersion is nats.version: jwt/v2's claim layout version.
const credentialVersion = 2

// MaxScopes is the most scopes a credential holds (Issue refuses more).
const MaxScopes = 256

// Bounds on credential claims.
const (
	maxScopeLen   = 256
	maxNameLen    = 256
	maxAudience   = 256
	maxPrincipal  = 1024
	maxActors     = 8
	maxUnixSecond = 253402300799 // 9999-12-31T23:59:59Z: keeps time math far from overflow
)

// Credential is a verified agentgw credential. Times are UTC, at second
// precision; NotBefore is the zero Time when the token has no nbf.
type Credential struct {
	ID        string // jti: safe to log ([A-Za-z0-9._:-], at most 128)
	Issuer    string // iss: the tenant issuer's public 'A' key
	Subject   string // sub: the agent's public 'U' key
	Audience  string // aud: the gateway audience
	Name      string // name: free text for humans, may be empty
	IssuedAt  time.Time
	NotBefore time.Time
	Expires   time.Time
	Tenant    string   // nats.tenant: [a-z0-9_-]{1,64}
	Service   string   // nats.service: may be empty
	Scopes    []string // nats.scopes
	XKey      string   // nats.xkey: the agent's public curve 'X' key
	// Principal (nats.principal) is who the credential was issued for,
	// when an issuer knows: package exchange sets "<IdP issuer>#<IdP
	// subject>", so every credential one IdP identity obtains, for any
	// agent key, names the same principal. Empty when not recorded. Two
	// credentials with the same non-empty principal act for the same
	// party (the gateway refuses one approving the other's request).
	// Not a secret; at most 1024 bytes of UTF-8 without control
	// characters.
	Principal string
	// Actors (nats.actors) are the parties that act for Principal, when
	// the credential was issued for a delegated token (package exchange:
	// the principals of its act chain, outermost first). The gateway
	// refuses an approver that is the requester's principal or one of
	// its actors, or acts through one of them. At most 8, each as
	// Principal.
	Actors []string
}

// HasScope reports whether the credential grants the concrete scope s.
//
// The rule, with no regular expressions: a granted scope matches s when it
// equals s, or when it is a pattern and s extends it. A pattern is a
// granted scope whose final character is '*' directly after a '.' or a
// ':' ("approve:refunds.*", "approve:*"); it matches every s that starts
// with the pattern minus its '*' and has at least one more character, at
// any depth: "approve:refunds.*" matches "approve:refunds.draft_refund"
// and "approve:refunds.eu.large", but not "approve:refunds",
// "approve:refunds_eu.x" or "refund:draft". A bare "*" is not a pattern.
// A requested s that is empty or contains '*' never matches: requests
// name one concrete scope.
func (c *Credential) HasScope(s string) bool {
	if c == nil || s == "" || strings.IndexByte(s, '*') >= 0 {
		return false
	}
	for _, g := range c.Scopes {
		if g == s {
			return true
		}
		if n := len(g); n >= 2 && g[n-1] == '*' && (g[n-2] == '.' || g[n-2] == ':') {
			p := g[:n-1]
			if len(s) > len(p) && strings.HasPrefix(s, p) {
				return true
			}
		}
	}
	return false
}

// validScope reports whether g is 1–256 characters of [A-Za-z0-9._:-],
// optionally ending in a pattern '*' directly after '.' or ':'.
func validScope(g string) bool {
	if g == "" || len(g) > maxScopeLen {
		return false
	}
	body := g
	if n := len(g); g[n-1] == '*' {
		if n < 2 || (g[n-2] != '.' && g[n-2] != ':') {
			return false
		}
		body = g[:n-1]
	}
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		if !safeChar(body[i]) {
			return false
		}
	}
	return true
}

// ValidTenant reports whether s is a tenant token: [a-z0-9_-]{1,64}.
func ValidTenant(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// IssueRequest describes a credential to issue.
type IssueRequest struct {
	Subject  string   // the agent's public 'U' key; required
	Audience string   // the gateway audience; required
	Tenant   string   // [a-z0-9_-]{1,64}; required
	Service  string   // optional, [A-Za-z0-9._:-]{0,128}
	Name     string   // optional free text, at most 256 bytes, no control characters
	Scopes   []string // see HasScope for the pattern form
	XKey     string   // the agent's public curve 'X' key; required
	// Principal is who the credential is issued for (see
	// Credential.Principal); optional, at most 1024 bytes of UTF-8
	// without control characters.
	Principal string
	// Actors act for Principal (see Credential.Actors); optional.
	Actors []string

	// NotBefore delays validity; the zero Time (or any time before now)
	// means valid from now.
	NotBefore time.Time
	// TTL is the lifetime from the start of validity, rounded down to
	// whole seconds; at least one second.
	TTL time.Duration
}

// ErrInvalidRequest is returned (wrapped with every problem) by Issue.
var ErrInvalidRequest = errors.New("identity: invalid credential request")

// credentialWire is the credential's JSON form. Field order matches
// jwt/v2's ClaimsData, then the "nats" members in jwt/v2's (sorted) order.
type credentialWire struct {
	Audience  string         `json:"aud,omitempty"`
	Expires   int64          `json:"exp"`
	ID        string         `json:"jti"`
	IssuedAt  int64          `json:"iat"`
	Issuer    string         `json:"iss"`
	Name      string         `json:"name,omitempty"`
	NotBefore int64          `json:"nbf,omitempty"`
	Subject   string         `json:"sub"`
	Nats      credentialNats `json:"nats"`
}

type credentialNats struct {
	Actors    []string `json:"actors,omitempty"`
	Principal string   `json:"principal,omitempty"`
	Scopes    []string `json:"scopes,omitempty"`
	Service   string   `json:"service,omitempty"`
	Tenant    string   `json:"tenant"`
	Type      string   `json:"type"`
	Version   int      `json:"version"`
	XKey      string   `json:"xkey"`
}

// Issue signs a credential for req with issuer, an 'A' key pair, at now
// (iat). nbf is the later of now and req.NotBefore; exp is nbf + TTL. The
// jti is the base32 SHA-512/256 digest of the claims with an empty jti
// (jwt/v2's scheme, but over every claim, scopes and xkey included), so
// two credentials that differ in any claim differ in jti.
//
// Issue returns an error wrapping ErrInvalidRequest (or ErrKey for the
// issuer) listing every problem; it never contains the issuer's seed.
func Issue(issuer nkeys.KeyPair, req IssueRequest, now time.Time) (Token, error) {
	s, err := NewSigner(issuer)
	if err != nil {
		return "", err
	}
	if s.Prefix() != nkeys.PrefixByteAccount {
		return "", fmt.Errorf("%w: issuer must be an account ('A') key, not %s", ErrKey, s.Prefix())
	}
	var problems []error
	if req.TTL < time.Second {
		problems = append(problems, errors.New("TTL must be at least 1s"))
	}
	iat := now.Unix()
	nbf := iat
	if !req.NotBefore.IsZero() && req.NotBefore.Unix() > nbf {
		nbf = req.NotBefore.Unix()
	}
	w := credentialWire{
		Audience:  req.Audience,
		Expires:   nbf + int64(req.TTL/time.Second),
		IssuedAt:  iat,
		Issuer:    s.PublicKey(),
		Name:      req.Name,
		NotBefore: nbf,
		Subject:   req.Subject,
		Nats: credentialNats{
			Actors:    req.Actors,
			Principal: req.Principal,
			Scopes:    req.Scopes,
			Service:   req.Service,
			Tenant:    req.Tenant,
			Type:      CredentialType,
			Version:   credentialVersion,
			XKey:      req.XKey,
		},
	}
	if req.Audience == "" {
		problems = append(problems, errors.New("audience is required"))
	}
	problems = append(problems, checkClaims(&w, false)...)
	if len(problems) > 0 {
		return "", fmt.Errorf("%w: %w", ErrInvalidRequest, errors.Join(problems...))
	}
	unsigned, err := json.Marshal(&w)
	if err != nil {
		return "", fmt.Errorf("identity: issue: %w", err)
	}
	sum := sha512.Sum512_256(unsigned)
	w.ID = base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:])
	payload, err := json.Marshal(&w)
	if err != nil {
		return "", fmt.Errorf("identity: issue: %w", err)
	}
	return SignJWT(s, payload), nil
}

// checkClaims returns every rule a credential's claims break. With
// needID the jti is required (a received token); Issue computes it.
// Audience and time validity relative to a clock are the Verifier's.
func checkClaims(w *credentialWire, needID bool) []error {
	var p []error
	add := func(format string, args ...any) { p = append(p, fmt.Errorf(format, args...)) }
	if w.Nats.Type != CredentialType {
		add("claim type %s is not %s", safeText(w.Nats.Type), CredentialType)
	}
	if w.Nats.Version != credentialVersion {
		add("claim version %d is not %d", w.Nats.Version, credentialVersion)
	}
	if needID && !isSafeID(w.ID) {
		add("jti missing or not [A-Za-z0-9._:-]{1,128}")
	}
	if !isPublic(w.Issuer, nkeys.PrefixByteAccount) {
		add("iss is not a public account ('A') nkey")
	}
	if !isPublic(w.Subject, nkeys.PrefixByteUser) {
		add("sub is not a public user ('U') nkey")
	}
	if !isPublic(w.Nats.XKey, nkeys.PrefixByteCurve) {
		add("xkey is not a public curve ('X') nkey")
	}
	if !ValidTenant(w.Nats.Tenant) {
		add("tenant missing or not [a-z0-9_-]{1,64}")
	}
	if w.Nats.Service != "" && !isSafeID(w.Nats.Service) {
		add("service is not [A-Za-z0-9._:-]{0,128}")
	}
	if len(w.Name) > maxNameLen || strings.IndexFunc(w.Name, unicode.IsControl) >= 0 {
		add("name longer than %d bytes or holds control characters", maxNameLen)
	}
	if len(w.Audience) > maxAudience {
		add("aud longer than %d bytes", maxAudience)
	}
	if p := w.Nats.Principal; !validPrincipal(p) {
		add("principal longer than %d bytes, not UTF-8, or holds control characters", maxPrincipal)
	}
	if len(w.Nats.Actors) > maxActors {
		add("more than %d actors", maxActors)
	}
	for i, a := range w.Nats.Actors {
		if a == "" || !validPrincipal(a) {
			add("actor %d is empty, longer than %d bytes, not UTF-8, or holds control characters", i, maxPrincipal)
		}
	}
	if len(w.Nats.Scopes) > MaxScopes {
		add("more than %d scopes", MaxScopes)
	}
	for i, g := range w.Nats.Scopes {
		if !validScope(g) {
			add("scope %d is not a valid scope", i)
		}
	}
	switch {
	case w.IssuedAt <= 0 || w.IssuedAt > maxUnixSecond:
		add("iat missing or out of range")
	case w.Expires <= 0 || w.Expires > maxUnixSecond:
		add("exp missing or out of range")
	case w.NotBefore < 0 || w.NotBefore > maxUnixSecond:
		add("nbf out of range")
	case w.Expires <= w.IssuedAt || w.Expires <= w.NotBefore:
		add("exp is not after iat and nbf")
	}
	return p
}

// decodeCredential parses claims JSON strictly and checks every
// clock-independent claim rule. The error is a detail for a
// MalformedCredential denial.
func decodeCredential(payload []byte) (*Credential, error) {
	var w credentialWire
	if err := unmarshalStrict(payload, &w); err != nil {
		return nil, errors.New("claims are not strict JSON of the credential shape")
	}
	if p := checkClaims(&w, true); len(p) > 0 {
		return nil, p[0]
	}
	c := &Credential{
		ID:        w.ID,
		Issuer:    w.Issuer,
		Subject:   w.Subject,
		Audience:  w.Audience,
		Name:      w.Name,
		IssuedAt:  time.Unix(w.IssuedAt, 0).UTC(),
		Expires:   time.Unix(w.Expires, 0).UTC(),
		Tenant:    w.Nats.Tenant,
		Service:   w.Nats.Service,
		Scopes:    w.Nats.Scopes,
		XKey:      w.Nats.XKey,
		Principal: w.Nats.Principal,
		Actors:    w.Nats.Actors,
	}
	if w.NotBefore > 0 {
		c.NotBefore = time.Unix(w.NotBefore, 0).UTC()
	}
	return c, nil
}

// ValidPrincipal reports whether p can be a credential's non-empty
// principal (Credential.Principal).
func ValidPrincipal(p string) bool { return p != "" && validPrincipal(p) }

// validPrincipal: at most maxPrincipal bytes of UTF-8 without control
// characters.
func validPrincipal(p string) bool {
	return len(p) <= maxPrincipal && utf8.ValidString(p) && strings.IndexFunc(p, unicode.IsControl) < 0
}
