package mcp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/subjects/reason"
)

// maxBearerBytes bounds a bearer token before it is parsed.
const maxBearerBytes = 16 << 10

// maxPrincipals bounds the principals (and verified tokens) held in
// memory; past it, new ones are refused rather than old ones forgotten.
const maxPrincipals = 10000

// principal is one authenticated MCP user and the agent identity the
// endpoint signs for it with.
type principal struct {
	id    string // issuer + " " + subject
	key   nkeys.KeyPair
	curve nkeys.KeyPair
	xkey  string

	mu     sync.Mutex
	agent  *client.Agent
	cred   identity.Token // the agent's credential (printed redacted)
	scopes []string
	who    policy.Principal // the credential's Cedar principal
	expiry time.Time        // of the credential
}

// session is a verified bearer token.
type session struct {
	p      *principal
	expiry time.Time // the token's
}

// bearerClaims are the claims read from a bearer token before the token
// exchange verifies its signature, issuer, audience and times.
type bearerClaims struct {
	Issuer   string          `json:"iss"`
	Subject  string          `json:"sub"`
	Audience json.RawMessage `json:"aud"`
	Expiry   int64           `json:"exp"`
}

func (c *bearerClaims) audiences() []string {
	var one string
	if json.Unmarshal(c.Audience, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(c.Audience, &many)
	return many
}

func parseBearer(raw string) (*bearerClaims, error) {
	if len(raw) > maxBearerBytes {
		return nil, errors.New("bearer token too large")
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, errors.New("bearer token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("bearer token claims do not decode")
	}
	var c bearerClaims
	if err := json.Unmarshal(payload, &c); err != nil || c.Issuer == "" || c.Subject == "" || c.Expiry == 0 {
		return nil, errors.New("bearer token lacks iss, sub or exp")
	}
	return &c, nil
}

// verifyToken is the endpoint's auth.TokenVerifier. A token is accepted
// when its issuer is a configured authorization server, its audience
// names the endpoint's canonical URI, it has not expired, and the token
// exchange (which verifies the signature, issuer, audience and times
// again with the IdP's keys) grants a credential for it to the
// principal's agent key. The token itself goes nowhere else: the
// exchange is agentgw's own service, and no upstream sees it.
// Errors name no token bytes.
func (e *Endpoint) verifyToken(ctx context.Context, raw string, _ *http.Request) (*auth.TokenInfo, error) {
	sum := sha256.Sum256([]byte(raw))
	now := e.now()
	e.mu.Lock()
	s, ok := e.sessions[sum]
	e.mu.Unlock()
	if ok && now.Before(s.expiry) {
		// This token was verified by the exchange when it was cached.
		if info, err := e.refresh(ctx, s.p, raw, s.expiry, false); err == nil {
			return info, nil
		}
	}
	c, err := parseBearer(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", auth.ErrInvalidToken, err)
	}
	exp := time.Unix(c.Expiry, 0)
	switch {
	case !slices.Contains(e.ep.AuthorizationServers, c.Issuer):
		return nil, fmt.Errorf("%w: issuer is not an authorization server of this resource", auth.ErrInvalidToken)
	case !slices.Contains(c.audiences(), e.ep.Resource):
		return nil, fmt.Errorf("%w: token audience is not this resource", auth.ErrInvalidToken)
	case !now.Before(exp):
		return nil, fmt.Errorf("%w: token expired", auth.ErrInvalidToken)
	}
	// A new principal's keys are kept (and written to key_dir) only once
	// the exchange has accepted its token: forged tokens create nothing.
	p, known, err := e.principal(c.Issuer + " " + c.Subject)
	if err != nil {
		return nil, err
	}
	// A token not seen before is verified by the exchange, even when
	// its claims name a principal that already holds a live credential:
	// only the exchange checks its signature.
	info, err := e.refresh(ctx, p, raw, exp, true)
	if err != nil {
		return nil, err
	}
	if !known {
		if p, err = e.adopt(p); err != nil {
			return nil, err
		}
		if info, err = e.refresh(ctx, p, raw, exp, false); err != nil {
			return nil, err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, s := range e.sessions {
		if !now.Before(s.expiry) {
			delete(e.sessions, k)
		}
	}
	if len(e.sessions) >= maxPrincipals {
		return nil, fmt.Errorf("%w: too many sessions", auth.ErrInvalidToken)
	}
	e.sessions[sum] = session{p: p, expiry: exp}
	return info, nil
}

// refresh returns the principal's token info, exchanging raw for a new
// credential when verify is set (raw has not been verified yet) or the
// current credential is missing or about to expire.
func (e *Endpoint) refresh(ctx context.Context, p *principal, raw string, tokenExpiry time.Time, verify bool) (*auth.TokenInfo, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := e.now()
	if verify || p.agent == nil || !now.Add(e.renewBefore).Before(p.expiry) {
		cred, err := client.Exchange(ctx, e.nc, client.ExchangeConfig{
			Subject: e.ep.ExchangeSubject, Audience: e.ep.GatewayAudience, Tenant: e.cfg.Tenant,
			Key: p.key, XKey: p.xkey,
			Token: func(context.Context) (string, error) { return raw, nil },
		}, client.WithClock(e.now))
		if err != nil {
			if d, ok := errors.AsType[*reason.Denial](err); ok {
				return nil, fmt.Errorf("%w: token exchange refused (%s)", auth.ErrInvalidToken, d.Code)
			}
			return nil, errors.New("token exchange unavailable")
		}
		ac := client.DefaultAgentConfig()
		ac.Credential, ac.Key, ac.Curve, ac.GatewayXKey = cred.Token, p.key, p.curve, e.ep.GatewayXKey
		ag, err := client.NewAgent(e.nc, ac, client.WithClock(e.now))
		if err != nil {
			return nil, errors.New("exchanged credential is unusable")
		}
		who, err := credentialPrincipal(cred.Token)
		if err != nil {
			return nil, errors.New("exchanged credential is unusable")
		}
		p.agent, p.cred, p.scopes, p.who, p.expiry = ag, cred.Token, cred.Scopes, who, cred.Expires
	}
	return &auth.TokenInfo{
		Scopes: slices.Clone(p.scopes), Expiration: tokenExpiry, UserID: p.id,
		Extra: map[string]any{principalKey: p},
	}, nil
}

const principalKey = "agentgw.principal"

// principal returns the known principal named id, or a new one with
// fresh (or key_dir's) keys that is not kept until adopt.
func (e *Endpoint) principal(id string) (p *principal, known bool, err error) {
	e.mu.Lock()
	p, ok := e.principals[id]
	n := len(e.principals)
	e.mu.Unlock()
	if ok {
		return p, true, nil
	}
	if n >= maxPrincipals {
		return nil, false, fmt.Errorf("%w: too many principals", auth.ErrInvalidToken)
	}
	key, curve, err := e.keys(id)
	if err != nil {
		return nil, false, err
	}
	xkey, _ := curve.PublicKey()
	return &principal{id: id, key: key, curve: curve, xkey: xkey}, false, nil
}

// adopt keeps a principal whose token the exchange accepted, writing its
// keys to key_dir. If another request adopted the same principal first,
// that one is returned.
func (e *Endpoint) adopt(p *principal) (*principal, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if q, ok := e.principals[p.id]; ok {
		return q, nil
	}
	if len(e.principals) >= maxPrincipals {
		return nil, fmt.Errorf("%w: too many principals", auth.ErrInvalidToken)
	}
	if e.ep.KeyDir != "" {
		if err := e.saveKeys(p); err != nil {
			return nil, err
		}
	}
	e.principals[p.id] = p
	return p, nil
}

// keyPath is the key_dir file of principal id.
func (e *Endpoint) keyPath(id string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(e.ep.KeyDir, hex.EncodeToString(sum[:16])+".nk")
}

// keys loads a principal's agent key and curve key from key_dir, or
// creates them (in memory) when there is no file.
func (e *Endpoint) keys(id string) (nkeys.KeyPair, nkeys.KeyPair, error) {
	if e.ep.KeyDir != "" {
		path := e.keyPath(id)
		data, err := os.ReadFile(path)
		if err == nil {
			defer clear(data)
			lines := bytes.Fields(data)
			if len(lines) == 2 {
				key, err1 := nkeys.FromSeed(lines[0])
				curve, err2 := nkeys.FromCurveSeed(lines[1])
				if err1 == nil && err2 == nil {
					return key, curve, nil
				}
			}
			return nil, nil, fmt.Errorf("principal key file %s does not hold an agent and a curve seed", path)
		}
		if !os.IsNotExist(err) {
			return nil, nil, fmt.Errorf("principal key file: %w", err)
		}
	}
	key, err := identity.NewAgent()
	if err != nil {
		return nil, nil, err
	}
	curve, err := identity.NewCurve()
	if err != nil {
		return nil, nil, err
	}
	return key, curve, nil
}

// saveKeys writes p's seeds to its key_dir file (mode 0600) unless the
// file exists.
func (e *Endpoint) saveKeys(p *principal) error {
	path := e.keyPath(p.id)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	ks, _ := p.key.Seed()
	cs, _ := p.curve.Seed()
	data := append(append(append(ks, '\n'), cs...), '\n')
	defer clear(data)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("principal key file: %w", err)
	}
	return nil
}
