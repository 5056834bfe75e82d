package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/exchange/protocol"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// ErrExchange: the token exchange service could not be reached or gave
// an answer that is not an exchange response (no responders, timeout, a
// malformed reply) or not the credential asked for (another agent key,
// xkey, audience or tenant, unrequested scopes, an untrusted issuer). A
// refusal is a *reason.Denial instead.
var ErrExchange = errors.New("client: token exchange unavailable")

// DefaultExchangeTimeout bounds one exchange request.
const DefaultExchangeTimeout = 5 * time.Second

// ExchangeConfig says how an agent obtains its credential from the
// gateway's token exchange (package exchange) for an IdP token. Key and
// Curve are secrets: String and Format print a redacted summary, but a
// copy of Key or Curve printed on its own is not redacted by nkeys —
// never log those.
type ExchangeConfig struct {
	// Subject of the exchange service. Zero: "agentgw.exchange".
	Subject string
	// Audience is the gateway's audience. Required.
	Audience string
	// Tenant, when set, must be the tenant the IdP token maps to.
	Tenant string
	// Scopes, when set, narrow the credential to these; the exchange
	// refuses any the IdP token's claims do not grant. Empty: all granted.
	Scopes []string
	// Key is the agent's user ('U') key pair: the credential's subject
	// and the key that signs the proof of possession. Required.
	Key nkeys.KeyPair
	// Curve is the agent's curve ('X') key pair: its public key is the
	// credential's xkey, the key sealed payloads must come from, and the
	// request proves possession of it (xkey_proof). Required.
	Curve nkeys.KeyPair
	// GatewayXKey is the gateway's public curve key, the one payloads
	// are sealed to: the xkey proof is sealed to it. Required.
	GatewayXKey string
	// Token returns a current IdP token (JWT access or ID token) each
	// time it is called, e.g. from an oauth2.TokenSource. Required.
	Token func(ctx context.Context) (string, error)
	// TokenType is the RFC 8693 subject_token_type. Zero:
	// urn:ietf:params:oauth:token-type:jwt.
	TokenType string
	// Timeout bounds one request. Zero: 5 s.
	Timeout time.Duration
	// RenewBefore is how long before expiry a CredentialSource renews.
	// Zero: a third of the credential's lifetime.
	RenewBefore time.Duration
	// TrustedIssuers, when set, are the account ('A') keys whose
	// credentials the exchange may hand out (the gateway's exchange
	// issuer keys): an answer signed by any other key, or whose signature
	// does not verify, is refused. Empty: the issuer is not checked, and
	// the answer is trusted as far as NATS permissions keep anyone but
	// the gateway from answering Subject.
	TrustedIssuers []string
}

// String names public keys only.
func (c ExchangeConfig) String() string {
	return fmt.Sprintf("client.ExchangeConfig{audience=%s tenant=%s scopes=%v xkey=%s gateway_xkey=%s}",
		c.Audience, c.Tenant, c.Scopes, c.xkey(), c.GatewayXKey)
}

// xkey is Curve's public key, "" when there is none.
func (c ExchangeConfig) xkey() string {
	if c.Curve == nil {
		return ""
	}
	x, err := c.Curve.PublicKey()
	if err != nil {
		return ""
	}
	return x
}

// Format prints String for every verb, so %+v cannot reach the key pairs.
func (c ExchangeConfig) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

func (c ExchangeConfig) check() error {
	var errs []error
	if c.Audience == "" {
		errs = append(errs, errors.New("audience is required"))
	}
	if c.Key == nil {
		errs = append(errs, errors.New("agent key is required"))
	} else if pub, err := c.Key.PublicKey(); err != nil || !nkeys.IsValidPublicUserKey(pub) {
		errs = append(errs, errors.New("agent key is not a user ('U') key"))
	}
	if c.Curve == nil {
		errs = append(errs, errors.New("agent curve key is required: the request proves possession of it"))
	} else if !subjects.ValidKey(c.xkey(), 'X') {
		errs = append(errs, errors.New("agent curve key is not a curve ('X') key"))
	}
	if !subjects.ValidKey(c.GatewayXKey, 'X') {
		errs = append(errs, errors.New("gateway xkey is not a public curve ('X') key"))
	}
	if c.Token == nil {
		errs = append(errs, errors.New("token source is required"))
	}
	for _, k := range c.TrustedIssuers {
		if !subjects.ValidKey(k, 'A') {
			errs = append(errs, errors.New("trusted issuer is not a public account ('A') key"))
			break
		}
	}
	if c.Timeout < 0 || c.RenewBefore < 0 {
		errs = append(errs, errors.New("timeout and renew_before must not be negative"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	return nil
}

// ExchangedCredential is a credential obtained through the exchange.
type ExchangedCredential struct {
	Token    identity.Token // the credential JWT (printed redacted)
	ID       string         // jti
	Tenant   string
	Scopes   []string
	IssuedAt time.Time
	Expires  time.Time
}

// Exchange asks the exchange service on nc for a credential: it builds a
// fresh request (new request id, issued_at from the clock) whose
// xkey_proof is sealed by cfg.Curve to cfg.GatewayXKey, signs it with
// cfg.Key and returns the credential. A refusal is a *reason.Denial whose Code is
// one of the exchange_* reasons (match with errors.Is); transport
// failures wrap ErrExchange; a bad cfg wraps ErrConfig.
//
// reason.ExchangeIdPUnavailable says the exchange could not fetch the
// IdP's signing keys and did not judge the token: retry later with the
// same token, like ErrExchange. Every other exchange_* code is a verdict
// on the token or the request, which a retry unchanged gets again.
func Exchange(ctx context.Context, nc *nats.Conn, cfg ExchangeConfig, opts ...Option) (*ExchangedCredential, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil connection", ErrConfig)
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	o := applyOptions(opts)
	tok, err := cfg.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: IdP token: %w", ErrExchange, err)
	}
	pub, _ := cfg.Key.PublicKey()
	tokenType := cfg.TokenType
	if tokenType == "" {
		tokenType = protocol.TokenTypeJWT
	}
	xkey, requestID := cfg.xkey(), protocol.NewRequestID()
	proof, err := protocol.SealXKeyProof(cfg.Curve, cfg.GatewayXKey, pub, requestID)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	body, err := protocol.Marshal(&protocol.Request{
		V:                  protocol.Version,
		GrantType:          protocol.GrantType,
		SubjectToken:       tok,
		SubjectTokenType:   tokenType,
		RequestedTokenType: protocol.TokenTypeAgentgw,
		Audience:           cfg.Audience,
		Tenant:             cfg.Tenant,
		Scope:              strings.Join(cfg.Scopes, " "),
		Agent:              pub,
		XKey:               xkey,
		XKeyProof:          proof,
		RequestID:          requestID,
		IssuedAt:           o.now().UTC().Truncate(time.Second).Format(time.RFC3339),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	sig, err := protocol.Sign(cfg.Key, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	subject := cfg.Subject
	if subject == "" {
		subject = protocol.DefaultSubject
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultExchangeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m := nats.NewMsg(subject)
	m.Data = body
	m.Header.Set(protocol.SignatureHeader, sig)
	reply, err := nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrExchange, err)
	}
	if code := reply.Header.Get(micro.ErrorHeader); code != "" {
		c := reason.Code(code)
		if !reason.Known(c) {
			c = reason.Internal
		}
		return nil, reason.Deny(c, "exchange refused (status %s)", reply.Header.Get(micro.ErrorCodeHeader))
	}
	resp, err := protocol.ParseResponse(reply.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrExchange, err)
	}
	return readExchanged(resp, cfg, pub, xkey)
}

// readExchanged checks that the returned credential is the one asked
// for: it names this agent key and xkey, the configured audience, the
// configured tenant (when set), only scopes that were requested (when
// any were), and, with cfg.TrustedIssuers, is signed by one of them.
// Anyone allowed to answer on the exchange subject could otherwise hand
// the agent a credential of another tenant, whose sealed payloads would
// then go there. The response's own tenant and scope members are not
// read: the credential's claims are what the gateway acts on. The
// protocol's response does not echo the request id, so an answer is tied
// to its request by the reply inbox only.
func readExchanged(resp *protocol.Response, cfg ExchangeConfig, pub, xkey string) (*ExchangedCredential, error) {
	jwt, err := identity.ParseJWT(resp.AccessToken)
	if err != nil {
		return nil, fmt.Errorf("%w: credential is not a JWT", ErrExchange)
	}
	var c struct {
		ID       string `json:"jti"`
		Issuer   string `json:"iss"`
		Subject  string `json:"sub"`
		Audience string `json:"aud"`
		Iat      int64  `json:"iat"`
		Exp      int64  `json:"exp"`
		Nats     struct {
			Tenant string   `json:"tenant"`
			Scopes []string `json:"scopes"`
			XKey   string   `json:"xkey"`
		} `json:"nats"`
	}
	// Exact names, no duplicates: encoding/json would read "SUB" or
	// "Tenant" as the claim, and the last of two.
	if err := jsonv2.Unmarshal(jwt.Payload, &c); err != nil {
		return nil, fmt.Errorf("%w: credential claims do not decode", ErrExchange)
	}
	if c.Subject != pub || c.Nats.XKey != xkey || c.Exp <= c.Iat {
		return nil, fmt.Errorf("%w: credential is not for this agent key and xkey", ErrExchange)
	}
	if c.Audience != cfg.Audience {
		return nil, fmt.Errorf("%w: credential is for audience %.72q, not %.72q", ErrExchange, c.Audience, cfg.Audience)
	}
	if cfg.Tenant != "" && c.Nats.Tenant != cfg.Tenant {
		return nil, fmt.Errorf("%w: credential is for tenant %.72q, not %.72q", ErrExchange, c.Nats.Tenant, cfg.Tenant)
	}
	if len(cfg.Scopes) > 0 {
		for _, g := range c.Nats.Scopes {
			if !slices.Contains(cfg.Scopes, g) {
				return nil, fmt.Errorf("%w: credential grants scope %.72q, which was not requested", ErrExchange, g)
			}
		}
	}
	if len(cfg.TrustedIssuers) > 0 {
		if !slices.Contains(cfg.TrustedIssuers, c.Issuer) {
			return nil, fmt.Errorf("%w: credential issuer %.72q is not trusted", ErrExchange, c.Issuer)
		}
		if !jwt.VerifySignature(c.Issuer, nkeys.PrefixByteAccount) {
			return nil, fmt.Errorf("%w: credential signature does not verify with issuer %s", ErrExchange, c.Issuer)
		}
	}
	return &ExchangedCredential{
		Token: identity.Token(resp.AccessToken), ID: c.ID, Tenant: c.Nats.Tenant, Scopes: c.Nats.Scopes,
		IssuedAt: time.Unix(c.Iat, 0).UTC(), Expires: time.Unix(c.Exp, 0).UTC(),
	}, nil
}

// CredentialSource keeps one agent's credential fresh through the
// exchange: Credential returns the current one until RenewBefore its
// expiry, then exchanges a new IdP token for a new one. It is safe for
// concurrent use: one caller renews at a time, and while the current
// credential is valid the others are handed it meanwhile rather than
// waiting for the renewal.
type CredentialSource struct {
	nc   *nats.Conn
	cfg  ExchangeConfig
	opts []Option
	now  func() time.Time

	mu       sync.Mutex
	cur      *ExchangedCredential
	renewing *renewal // the renewal in flight; nil when none
	// retryAt is renewRetry after a renewal failed, and failed its
	// error: until then no other renewal starts, and a caller is handed
	// cur if it is valid, failed if not.
	retryAt time.Time
	failed  error
	// freshUntil is set when cur arrived already due for renewal
	// (RenewBefore at least its lifetime, or this clock ahead of the
	// gateway's by more than it): until then cur is handed out whatever
	// this clock says of it, so that such a credential costs one
	// exchange every renewRetry, not one per call. It is renewRetry
	// after the exchange, and no later than cur's expiry if cur had not
	// expired by this clock on arrival. The gateway judges a credential
	// by its own clock.
	freshUntil time.Time
}

// renewal is one exchange for a new credential; done is closed once c or
// err is set.
type renewal struct {
	done chan struct{}
	c    *ExchangedCredential
	err  error
}

// renewRetry is how long a CredentialSource whose renewal failed while
// its credential is still valid waits before it tries again, so that an
// outage does not cost every call an exchange's timeout.
const renewRetry = 5 * time.Second

// NewCredentialSource checks cfg and returns a source; it exchanges
// nothing until the first Credential call. Errors wrap ErrConfig.
func NewCredentialSource(nc *nats.Conn, cfg ExchangeConfig, opts ...Option) (*CredentialSource, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil connection", ErrConfig)
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &CredentialSource{nc: nc, cfg: cfg, opts: opts, now: applyOptions(opts).now}, nil
}

// Credential returns a credential valid for at least RenewBefore more,
// exchanging for a new one when needed. One that arrives already due for
// renewal (RenewBefore at least its lifetime, or this clock ahead of the
// gateway's) is returned as it is until it expires, or for a few seconds
// if it arrived expired by this clock, and then renewed. If a renewal
// fails while the current credential is still valid, that one is
// returned with no error, so a brief IdP or gateway outage does not stop
// an agent; once it has expired, by the clock read after the renewal
// failed, the renewal's error is returned.
//
// One caller renews at a time. While it does, the others are handed the
// current credential if it is still valid, and otherwise wait for the
// renewal (or their context) and share its result. For a few seconds
// after a renewal failed no other starts: callers are handed the current
// credential if it is still valid, and the failure if not.
func (s *CredentialSource) Credential(ctx context.Context) (*ExchangedCredential, error) {
	for {
		s.mu.Lock()
		now := s.now()
		if s.cur != nil && (now.Before(s.renewAt(s.cur)) || now.Before(s.freshUntil)) {
			c := s.cur
			s.mu.Unlock()
			return c, nil
		}
		valid := s.cur != nil && now.Before(s.cur.Expires)
		if valid && (s.renewing != nil || now.Before(s.retryAt)) {
			c := s.cur
			s.mu.Unlock()
			return c, nil
		}
		if s.renewing == nil && !valid && now.Before(s.retryAt) {
			err := s.failed
			s.mu.Unlock()
			return nil, err
		}
		if r := s.renewing; r != nil {
			s.mu.Unlock()
			select {
			case <-r.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if r.err == nil {
				return r.c, nil
			}
			if errors.Is(r.err, context.Canceled) || errors.Is(r.err, context.DeadlineExceeded) {
				continue // its caller gave up, not the exchange: try again
			}
			if c, ok := s.valid(); ok {
				return c, nil
			}
			return nil, r.err
		}
		r := &renewal{done: make(chan struct{})}
		s.renewing = r
		s.mu.Unlock()
		r.c, r.err = Exchange(ctx, s.nc, s.cfg, s.opts...)
		s.mu.Lock()
		s.renewing = nil
		switch t := s.now(); {
		case r.err == nil:
			s.cur, s.retryAt, s.failed, s.freshUntil = r.c, time.Time{}, nil, time.Time{}
			if !t.Before(s.renewAt(r.c)) {
				s.freshUntil = t.Add(renewRetry)
				if t.Before(r.c.Expires) && r.c.Expires.Before(s.freshUntil) {
					s.freshUntil = r.c.Expires
				}
			}
		case ctx.Err() == nil: // the exchange failed, not this caller's patience
			s.retryAt, s.failed = t.Add(renewRetry), r.err
		}
		s.mu.Unlock()
		close(r.done)
		if r.err == nil {
			return r.c, nil
		}
		// The exchange may have taken its whole timeout: judge the
		// fallback at the instant it would be returned.
		if c, ok := s.valid(); ok {
			return c, nil
		}
		return nil, r.err
	}
}

// valid returns the current credential if it has not expired by now.
func (s *CredentialSource) valid() (*ExchangedCredential, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && s.now().Before(s.cur.Expires) {
		return s.cur, true
	}
	return nil, false
}

func (s *CredentialSource) renewAt(c *ExchangedCredential) time.Time {
	before := s.cfg.RenewBefore
	if before == 0 {
		before = c.Expires.Sub(c.IssuedAt) / 3
	}
	return c.Expires.Add(-before)
}

// ExchangeAgent is an Agent whose credential comes from a
// CredentialSource and is renewed before it expires. It is safe for
// concurrent use.
type ExchangeAgent struct {
	nc   *nats.Conn
	cfg  AgentConfig
	src  *CredentialSource
	opts []Option

	mu    sync.Mutex
	agent *Agent
	jti   string
}

// NewExchangeAgent returns an agent sending with cfg (its Credential,
// Key, Curve and GatewayXKey are replaced by the source's) through nc.
// Nothing is exchanged until the first Send.
func NewExchangeAgent(nc *nats.Conn, cfg AgentConfig, src *CredentialSource, opts ...Option) (*ExchangeAgent, error) {
	if nc == nil || src == nil {
		return nil, fmt.Errorf("%w: nil connection or credential source", ErrConfig)
	}
	cfg.Key, cfg.Curve, cfg.GatewayXKey = src.cfg.Key, src.cfg.Curve, src.cfg.GatewayXKey
	return &ExchangeAgent{nc: nc, cfg: cfg, src: src, opts: opts}, nil
}

// String returns "client.ExchangeAgent{<config summary> <public key>}":
// never the credential of its config, which fmt would print from the
// unexported field otherwise.
func (a *ExchangeAgent) String() string {
	pub := ""
	if a.cfg.Key != nil {
		pub, _ = a.cfg.Key.PublicKey()
	}
	return "client.ExchangeAgent{" + a.cfg.String() + " " + pub + "}"
}

// Format prints String for every verb, %#v included.
func (a *ExchangeAgent) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(a.String())) }

// GoString returns String.
func (a *ExchangeAgent) GoString() string { return a.String() }

// Agent returns an Agent holding a current credential.
func (a *ExchangeAgent) Agent(ctx context.Context) (*Agent, error) {
	c, err := a.src.Credential(ctx)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.agent != nil && a.jti == c.ID {
		return a.agent, nil
	}
	cfg := a.cfg
	cfg.Credential = c.Token
	ag, err := NewAgent(a.nc, cfg, a.opts...)
	if err != nil {
		return nil, err
	}
	a.agent, a.jti = ag, c.ID
	return ag, nil
}

// Send sends req with a current credential (see Agent.Send).
func (a *ExchangeAgent) Send(ctx context.Context, req Request) (*Receipt, error) {
	ag, err := a.Agent(ctx)
	if err != nil {
		return nil, err
	}
	return ag.Send(ctx, req)
}
