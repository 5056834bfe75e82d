package exchange

import (
	"context"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-json-experiment/json"

	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects/reason"
)

// idp verifies the tokens of one configured OpenID provider.
type idp struct {
	cfg    IdPConfig
	client *http.Client
	now    func() time.Time
	skew   time.Duration
	// slots bounds this IdP's exchanges in flight (Serve only).
	slots chan struct{}

	mu    sync.Mutex
	keys  *keySet // nil until discovery has succeeded
	tried time.Time
}

func newIdP(cfg IdPConfig, client *http.Client, now func() time.Time, skew time.Duration, slots int) *idp {
	return &idp{cfg: cfg, client: client, now: now, skew: skew, slots: make(chan struct{}, slots)}
}

// enter takes one of the IdP's exchange slots, false when all are in
// use; leave gives it back.
func (p *idp) enter() bool {
	select {
	case p.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (p *idp) leave() { <-p.slots }

// ensure returns the IdP's key set, running discovery first if it has
// not succeeded yet (at most once per KeysMinRefresh while it fails), so
// an IdP that is down when the gateway starts is picked up later.
func (p *idp) ensure(ctx context.Context) (*keySet, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.keys != nil {
		return p.keys, nil
	}
	now := p.now()
	if !p.tried.IsZero() && now.Sub(p.tried) < p.cfg.KeysMinRefresh {
		return nil, errors.New("discovery failed recently; not retried yet")
	}
	p.tried = now
	jwksURL := p.cfg.JWKSURL
	if jwksURL == "" {
		// go-oidc's discovery: fetches the document and refuses one whose
		// issuer is not exactly ours.
		prov, err := oidc.NewProvider(oidc.ClientContext(ctx, p.client), p.cfg.Issuer)
		if err != nil {
			return nil, fmt.Errorf("discovery: %s", discoveryError(err))
		}
		var doc struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := prov.Claims(&doc); err != nil {
			return nil, fmt.Errorf("discovery document: %w", err)
		}
		if err := checkURL(doc.JWKSURI); err != nil {
			return nil, fmt.Errorf("discovery jwks_uri: %w", err)
		}
		jwksURL = doc.JWKSURI
	}
	p.keys = newKeySet(jwksURL, p.client, p.now, p.cfg.KeysMaxAge, p.cfg.KeysMinRefresh, p.skew, p.cfg.Algorithms)
	return p.keys, nil
}

// discoveryError is err's text without the answer's body: go-oidc
// reports a non-200 discovery answer as "<status>: <body>", and an
// issuer mismatch quoting the document's issuer; the body's content (up
// to a MiB) belongs in no detail, log or audit event.
func discoveryError(err error) string {
	var mismatch *oidc.IssuerMismatchError
	if errors.As(err, &mismatch) {
		return "the discovery document names another issuer"
	}
	msg := err.Error()
	// Any three digits: Go's client takes a status of 000 to 999, and
	// reports one it has no text for as "600 status code 600".
	if len(msg) > 4 && isDigit(msg[0]) && isDigit(msg[1]) && isDigit(msg[2]) && msg[3] == ' ' {
		if i := strings.Index(msg, ": "); i > 0 {
			return "answered " + msg[:i]
		}
	}
	return msg
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// verifyKeys is the oidc.KeySet of one verification: it passes the call
// to the IdP's keySet and keeps the error, which go-oidc's verifier
// returns wrapped with %v (errors.Is cannot find errKeysFetch in it).
type verifyKeys struct {
	ks  *keySet
	err error
}

// VerifySignature implements oidc.KeySet.
func (v *verifyKeys) VerifySignature(ctx context.Context, token string) ([]byte, error) {
	payload, err := v.ks.VerifySignature(ctx, token)
	v.err = err
	return payload, err
}

// token is a verified IdP token.
type token struct {
	Issuer  string
	Subject string
	Expires time.Time
	Claims  map[string]any
}

// verify checks raw's signature, algorithm, issuer, audience, times and
// required claims. Errors are *reason.Denial: exchange_idp_unavailable
// when discovery or the signing keys the token needs could not be
// obtained (the token was not judged), exchange_token_* otherwise.
func (p *idp) verify(ctx context.Context, raw string) (*token, error) {
	ks, err := p.ensure(ctx)
	if err != nil {
		return nil, reason.Deny(reason.ExchangeIdPUnavailable, "idp %s (%s): %s", p.cfg.Name, p.cfg.Issuer, oneLine(err.Error()))
	}
	// Audience and every time rule are checked below, with the injected
	// clock and the configured skew, so that each failure has its own
	// typed reason; go-oidc checks the algorithm allowlist (before any
	// key is looked at), the signature (through keys) and the issuer.
	keys := &verifyKeys{ks: ks}
	idt, err := oidc.NewVerifier(p.cfg.Issuer, keys, &oidc.Config{
		SupportedSigningAlgs: p.cfg.Algorithms,
		SkipClientIDCheck:    true,
		SkipExpiryCheck:      true,
		Now:                  p.now,
	}).Verify(ctx, raw)
	if err != nil {
		if errors.Is(keys.err, errKeysFetch) {
			return nil, reason.Deny(reason.ExchangeIdPUnavailable, "idp %s: %s", p.cfg.Name, oneLine(keys.err.Error()))
		}
		return nil, reason.Deny(reason.ExchangeTokenInvalid, "idp %s: %s", p.cfg.Name, oneLine(err.Error()))
	}
	var payload stdjson.RawMessage // a verbatim copy of the verified claims
	if err := idt.Claims(&payload); err != nil {
		return nil, reason.Deny(reason.ExchangeTokenInvalid, "idp %s: claims do not decode", p.cfg.Name)
	}
	var claims map[string]any
	// json v2 refuses duplicate member names and invalid UTF-8.
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, reason.Deny(reason.ExchangeTokenInvalid, "idp %s: claims are not strict JSON", p.cfg.Name)
	}
	// The issuer verified is the one configured, byte for byte: go-oidc
	// also takes Google's "accounts.google.com" for
	// "https://accounts.google.com", which would give one identity a
	// second principal. The principal is built from the configured one.
	if iss, _ := claims["iss"].(string); iss != p.cfg.Issuer {
		return nil, reason.Deny(reason.ExchangeTokenInvalid, "idp %s: iss %.128q is not %q", p.cfg.Name, iss, p.cfg.Issuer)
	}
	t := &token{Issuer: p.cfg.Issuer, Claims: claims}
	if t.Subject, _ = claims["sub"].(string); t.Subject == "" || len(t.Subject) > 256 {
		return nil, reason.Deny(reason.ExchangeTokenInvalid, "idp %s: sub missing or longer than 256", p.cfg.Name)
	}
	// The principal "<iss>#<sub>" is a credential claim: identity.Issue
	// refuses one holding a control character (C0, DEL or C1).
	if !identity.ValidPrincipal(Principal(t.Issuer, t.Subject)) {
		return nil, reason.Deny(reason.ExchangeTokenInvalid, "idp %s: sub holds control characters", p.cfg.Name)
	}
	if !hasAudience(claims["aud"], p.cfg.Audience) {
		return nil, reason.Deny(reason.ExchangeTokenAudience, "idp %s: aud does not hold %q", p.cfg.Name, p.cfg.Audience)
	}
	exp, okExp := numericDate(claims["exp"])
	iat, okIat := numericDate(claims["iat"])
	if !okExp || !okIat {
		return nil, reason.Deny(reason.ExchangeTokenInvalid, "idp %s: exp and iat must be numeric dates", p.cfg.Name)
	}
	now := p.now()
	switch {
	case !now.Before(exp.Add(p.skew)):
		return nil, reason.Deny(reason.ExchangeTokenExpired, "idp %s: expired at %s", p.cfg.Name, exp.Format(time.RFC3339))
	case iat.After(now.Add(p.skew)):
		return nil, reason.Deny(reason.ExchangeTokenExpired, "idp %s: iat %s is in the future", p.cfg.Name, iat.Format(time.RFC3339))
	case p.cfg.MaxTokenAge > 0 && now.Sub(iat) > p.cfg.MaxTokenAge+p.skew:
		return nil, reason.Deny(reason.ExchangeTokenExpired, "idp %s: issued %s, older than max_token_age", p.cfg.Name, iat.Format(time.RFC3339))
	}
	if v, present := claims["nbf"]; present {
		nbf, ok := numericDate(v)
		if !ok {
			return nil, reason.Deny(reason.ExchangeTokenInvalid, "idp %s: nbf is not a numeric date", p.cfg.Name)
		}
		if nbf.After(now.Add(p.skew)) {
			return nil, reason.Deny(reason.ExchangeTokenExpired, "idp %s: not valid before %s", p.cfg.Name, nbf.Format(time.RFC3339))
		}
	}
	for _, c := range p.cfg.RequiredClaims {
		if v, ok := lookup(claims, c); !ok || isEmpty(v) {
			return nil, reason.Deny(reason.ExchangeTokenInvalid, "idp %s: required claim %s missing or empty", p.cfg.Name, c)
		}
	}
	t.Expires = exp
	return t, nil
}

func hasAudience(v any, want string) bool {
	switch a := v.(type) {
	case string:
		return a == want
	case []any:
		for _, e := range a {
			if s, ok := e.(string); ok && s == want {
				return true
			}
		}
	}
	return false
}

// numericDate accepts a JSON number of seconds within year 9999.
func numericDate(v any) (time.Time, bool) {
	f, ok := v.(float64)
	if !ok || f <= 0 || f > 253402300799 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0).UTC(), true
}

// lookup follows a dotted claim path through nested objects.
func lookup(claims map[string]any, path string) (any, bool) {
	var cur any = claims
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// oneLine bounds a library error for a denial detail.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// limitedTransport caps every response body at maxJWKSBytes, so go-oidc's
// discovery (which reads whole bodies) cannot be fed an unbounded one.
type limitedTransport struct{ base http.RoundTripper }

func (t limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = limitedBody{io.LimitReader(resp.Body, maxJWKSBytes), resp.Body}
	return resp, nil
}

type limitedBody struct {
	io.Reader
	c io.Closer
}

func (b limitedBody) Close() error { return b.c.Close() }
