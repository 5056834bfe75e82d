package mcp

import (
	"bytes"
	"container/heap"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/exchange"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/subjects/reason"
)

// maxBearerBytes bounds a bearer token before it is parsed.
const maxBearerBytes = 16 << 10

// bounds limit the endpoint's memory. Past principals, those with no
// live token are forgotten (their keys stay in key_dir, if set) and, if
// none is, a new principal is refused. Past sessions live tokens, or
// perPrincipal of one principal, a new token is refused until one
// expires: one principal cannot take every place.
//
// calls bounds a principal's tools/call requests in flight, synchronous
// and tasks together (takeCall), so that one principal cannot take every
// place max_calls_in_flight gives. The calls of one session wait on one
// subscription to the principal's reply subject (its agent's), each
// reply and notice handed only to the call it names.
type bounds struct{ principals, sessions, perPrincipal, calls int }

var defaultBounds = bounds{principals: 10000, sessions: 10000, perPrincipal: 64, calls: 64}

// principal is one authenticated MCP user (an IdP issuer and subject)
// and the agent identity the endpoint signs for it with.
type principal struct {
	id              string // issuer + " " + subject
	issuer, subject string
	key             nkeys.KeyPair
	curve           nkeys.KeyPair
	live            int          // its sessions in Endpoint.sessions; under Endpoint.mu
	calls           atomic.Int64 // tools/call in flight, tasks included
}

// session is one verified bearer token and the credential the token
// exchange issued for it to its principal's agent key: a call made with
// the token acts with that credential's scopes and attributes, never
// with those of another token of the same principal.
type session struct {
	p      *principal
	sum    [sha256.Size]byte // of the token: its key in Endpoint.sessions
	signed [sha256.Size]byte // of its signed content (header.payload): its key in Endpoint.signed
	// aliases are the other spellings of the token the exchange verified,
	// also keys in Endpoint.sessions: a signature that verifies in more
	// than one form (ES256's (r, s) and (r, n-s)) or claims the IdP
	// signed twice are one token, with one record of its calls.
	aliases [][sha256.Size]byte
	expiry  time.Time // the token's

	mu         sync.Mutex // the credential and its renewal; not held during an exchange
	agent      *client.Agent
	cred       identity.Token // printed redacted
	scopes     []string
	who        policy.Principal // the credential's Cedar principal
	credExpiry time.Time
	renewing   *renewal  // the renewal in flight; nil when none
	retryAt    time.Time // after a failed renewal, none before this
	failed     error     // that renewal's error

	idsMu sync.Mutex
	calls replaySet // the tools/call requests made with the token
}

// credential returns the session's agent, scopes and Cedar principal.
func (s *session) credential() (*client.Agent, []string, policy.Principal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.agent, slices.Clone(s.scopes), s.who
}

// useCall records a tools/call request made with the token.
func (s *session) useCall(id, body []byte) callVerdict {
	s.idsMu.Lock()
	defer s.idsMu.Unlock()
	return s.calls.use(id, body)
}

// forgetCall drops the record useCall made of the request.
func (s *session) forgetCall(id, body []byte) {
	s.idsMu.Lock()
	defer s.idsMu.Unlock()
	s.calls.forget(id, body)
}

// unsentKey is the TokenInfo.Extra key of the request's unsent func.
const unsentKey = "agentgw.unsent"

// refusedUnsent forgets the tools/call request that info's HTTP request
// carried, which refuseReplay recorded, when it is refused before
// anything was sent (too many calls in flight, the endpoint closing,
// headers that do not match the body): sent again as it was, it is then
// served, not refused as a replay. Only these refusals call it; any
// other end keeps the record.
func refusedUnsent(info *auth.TokenInfo) {
	if info == nil {
		return
	}
	if f, ok := info.Extra[unsentKey].(func()); ok {
		f()
	}
}

// bearerClaims are the claims read from a bearer token before the token
// exchange verifies its signature, issuer, audience and times.
// They are read as the exchange reads them (exact member names, no
// duplicates, valid UTF-8), and the exchange's credential must then name
// the same issuer and subject: the endpoint files a token under the
// principal the exchange verified, never one a look-alike claim names.
type bearerClaims struct {
	Issuer   string         `json:"iss"`
	Subject  string         `json:"sub"`
	Audience jsontext.Value `json:"aud"`
	Expiry   float64        `json:"exp"` // a NumericDate may have a fraction
}

func (c *bearerClaims) audiences() []string {
	var one string
	if jsonv2.Unmarshal(c.Audience, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = jsonv2.Unmarshal(c.Audience, &many)
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
	// One spelling per token: the IdP's JWS library reads base64url
	// loosely (bits past the last byte ignored), so a token with its
	// last character changed in those bits would still verify, and as a
	// token not seen before it would get a session, and a replay set, of
	// its own.
	for _, p := range []string{parts[0], parts[2]} {
		if _, err := base64.RawURLEncoding.Strict().DecodeString(p); err != nil {
			return nil, errors.New("bearer token is not canonical base64url")
		}
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("bearer token claims do not decode")
	}
	var c bearerClaims
	if err := jsonv2.Unmarshal(payload, &c); err != nil {
		return nil, errors.New("bearer token claims are not strict JSON")
	}
	if c.Issuer == "" || c.Subject == "" || !(c.Expiry >= 1 && c.Expiry < 1<<40) {
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
	s := e.sessions[sum]
	e.mu.Unlock()
	if s != nil {
		// The exchange verified this token when its session began; the
		// session (and the requests it has made) outlives the token.
		if !now.Before(s.expiry) {
			return nil, fmt.Errorf("%w: token expired", auth.ErrInvalidToken)
		}
		if err := e.refresh(ctx, s, raw, false); err != nil {
			return nil, err
		}
		return s.info(), nil
	}
	c, err := parseBearer(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", auth.ErrInvalidToken, err)
	}
	exp := time.Unix(int64(c.Expiry), 0)
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
	// A token not seen before is verified by the exchange, even when its
	// claims name a principal that already holds a live credential: only
	// the exchange checks its signature.
	p, known, err := e.principal(c.Issuer, c.Subject, now)
	if err != nil {
		return nil, err
	}
	signed := signedSum(raw) // a token not seen before only
	s = &session{p: p, sum: sum, signed: signed, expiry: exp}
	if err := e.refresh(ctx, s, raw, true); err != nil {
		return nil, err
	}
	if !known {
		q, err := e.adopt(p, now)
		if err != nil {
			return nil, err
		}
		if q != p { // adopted by a concurrent request first: its keys
			s = &session{p: q, sum: sum, signed: signed, expiry: exp}
			if err := e.refresh(ctx, s, raw, true); err != nil {
				return nil, err
			}
		}
	}
	if old, err := e.keep(s, now); old != nil || err != nil {
		if err != nil {
			return nil, err
		}
		return old.info(), nil // a concurrent request began it first
	}
	return s.info(), nil
}

// maxSpellings bounds the spellings of one token that share its session:
// ES256 gives each signature two, and an IdP that signs the same claims
// again makes more.
const maxSpellings = 4

// signedSum is the sha256 of a JWS's signed content, its header and
// payload as sent (parseBearer has checked they are canonical base64url).
func signedSum(raw string) [sha256.Size]byte {
	return sha256.Sum256([]byte(raw[:max(0, strings.LastIndexByte(raw, '.'))]))
}

// keep files the verified session s, unless a session of the same token
// is there (returned) or a bound is reached. The same token is the same
// spelling, or the same signed content under a signature the exchange
// has verified too: the new spelling joins that session, and with it its
// record of calls, so a captured call sent again under a respelled
// signature is still a replay.
func (e *Endpoint) keep(s *session, now time.Time) (*session, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireLocked(now)
	if old := e.sessions[s.sum]; old != nil {
		return old, nil
	}
	if old := e.signed[s.signed]; old != nil {
		if len(old.aliases)+1 >= maxSpellings || len(e.sessions) >= e.bounds.sessions {
			return nil, fmt.Errorf("%w: too many spellings of this token", auth.ErrInvalidToken)
		}
		old.aliases = append(old.aliases, s.sum)
		e.sessions[s.sum] = old
		return old, nil
	}
	switch {
	case len(e.sessions) >= e.bounds.sessions:
		return nil, fmt.Errorf("%w: too many live tokens", auth.ErrInvalidToken)
	case s.p.live >= e.bounds.perPrincipal:
		return nil, fmt.Errorf("%w: too many live tokens of this principal", auth.ErrInvalidToken)
	}
	switch q, ok := e.principals[s.p.id]; {
	case q == s.p:
		delete(e.idle, s.p.id)
	case !ok && e.roomLocked(now):
		// Forgotten while its token was exchanged: kept again.
		e.principals[s.p.id] = s.p
	}
	// Otherwise forgotten and taken again with other keys, or no room:
	// the session keeps the keys its credential was issued to, and
	// expireLocked leaves the registered principal alone.
	e.sessions[s.sum] = s
	e.signed[s.signed] = s
	heap.Push(&e.expiring, s)
	s.p.live++
	return nil, nil
}

// sessionGrace is how long a session outlives its token: its token is
// refused from its expiry on, but a clock stepped back within the grace
// finds the session, and the requests it has made, still there.
const sessionGrace = 2 * time.Minute

// expireLocked drops the sessions whose token expired more than
// sessionGrace ago, soonest first, in O(log n) each. A principal left
// with none becomes idle: it may be forgotten when the principal table
// is full. e.mu is held.
func (e *Endpoint) expireLocked(now time.Time) {
	for len(e.expiring) > 0 && !now.Before(e.expiring[0].expiry.Add(sessionGrace)) {
		s := heap.Pop(&e.expiring).(*session)
		delete(e.sessions, s.sum)
		delete(e.signed, s.signed)
		for _, a := range s.aliases {
			delete(e.sessions, a)
		}
		if s.p.live--; s.p.live == 0 && e.principals[s.p.id] == s.p {
			e.idle[s.p.id] = s.p
		}
	}
}

// roomLocked makes room for one more principal, forgetting idle ones
// while the table is full, and reports whether there is room. Only a
// verified token's principal may take room: a forged token must not make
// anyone be forgotten. e.mu is held.
func (e *Endpoint) roomLocked(now time.Time) bool {
	e.expireLocked(now)
	for id := range e.idle {
		if len(e.principals) < e.bounds.principals {
			break
		}
		delete(e.idle, id)
		delete(e.principals, id)
	}
	return len(e.principals) < e.bounds.principals
}

// expiryHeap orders sessions by their token's expiry.
type expiryHeap []*session

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expiry.Before(h[j].expiry) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(*session)) }
func (h *expiryHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return s
}

// info is the session's auth.TokenInfo.
func (s *session) info() *auth.TokenInfo {
	_, scopes, _ := s.credential()
	return &auth.TokenInfo{
		Scopes: scopes, Expiration: s.expiry, UserID: s.p.id,
		Extra: map[string]any{sessionKey: s},
	}
}

// renewRetry is how long a session whose renewal failed waits before it
// tries again: meanwhile its requests use the current credential while
// it is valid, and otherwise get that failure, so that an outage does
// not cost every request an exchange's timeout.
const renewRetry = 5 * time.Second

// renewal is one exchange for a session's new credential; done is closed
// once err (and gaveUp) is set.
type renewal struct {
	done   chan struct{}
	err    error
	gaveUp bool // the renewing request's context ended: the exchange was not judged
}

// issued is a credential the exchange issued and the agent that uses it.
type issued struct {
	agent   *client.Agent
	cred    identity.Token
	scopes  []string
	who     policy.Principal
	expires time.Time
}

// refresh exchanges raw for a new credential when verify is set (raw has
// not been verified yet, and s is not filed: no other request has it) or
// when the session's credential is missing or about to expire (renew).
func (e *Endpoint) refresh(ctx context.Context, s *session, raw string, verify bool) error {
	if !verify {
		return e.renew(ctx, s, raw)
	}
	c, err := e.issue(ctx, s.p, raw)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.set(c)
	s.mu.Unlock()
	return nil
}

// renew renews the credential of a filed session as
// client.CredentialSource does: one request at a time exchanges, without
// s.mu held, and s.mu is taken only to swap in the new credential. While
// it does, the other requests go on with the current credential if it is
// still valid, and otherwise wait for the renewal (or their context) and
// share its outcome. After a failed renewal none is tried for
// renewRetry: requests go on with the current credential while it is
// valid, and otherwise get that failure. A typed refusal
// (auth.ErrInvalidToken) is the token's: it is returned, valid credential
// or not, until the next attempt.
func (e *Endpoint) renew(ctx context.Context, s *session, raw string) error {
	for {
		s.mu.Lock()
		now := e.now()
		// A credential is renewed when it nears its end, unless it
		// already lasts as long as the token (the exchange issues none
		// longer, and cuts its lifetime to whole seconds).
		if s.agent != nil && (now.Add(e.renewBefore).Before(s.credExpiry) || !s.credExpiry.Add(2*time.Second).Before(s.expiry)) {
			s.mu.Unlock()
			return nil
		}
		valid := s.agent != nil && now.Before(s.credExpiry)
		if s.renewing == nil && now.Before(s.retryAt) {
			err := s.failed
			if valid && !errors.Is(err, auth.ErrInvalidToken) {
				err = nil
			}
			s.mu.Unlock()
			return err
		}
		if r := s.renewing; r != nil {
			s.mu.Unlock()
			if valid {
				return nil
			}
			select {
			case <-r.done:
			case <-ctx.Done():
				return fmt.Errorf("token exchange unavailable: %w", ctx.Err())
			}
			if r.gaveUp {
				continue // its request gave up, not the exchange: try again
			}
			return e.fallback(s, r.err)
		}
		r := &renewal{done: make(chan struct{})}
		s.renewing = r
		s.mu.Unlock()
		c, err := e.issue(ctx, s.p, raw)
		s.mu.Lock()
		s.renewing = nil
		switch {
		case err == nil:
			s.set(c)
			s.retryAt, s.failed = time.Time{}, nil
		case ctx.Err() != nil:
			r.gaveUp = true
		default:
			s.retryAt, s.failed = e.now().Add(renewRetry), err
		}
		r.err = err
		s.mu.Unlock()
		close(r.done)
		return e.fallback(s, err)
	}
}

// fallback is the outcome of a request whose renewal ended with err: nil
// on success, and after a failure that is not a typed refusal while the
// current credential is still valid by the clock read now (the exchange
// may have taken its whole timeout); err otherwise.
func (e *Endpoint) fallback(s *session, err error) error {
	if err == nil || errors.Is(err, auth.ErrInvalidToken) {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agent != nil && e.now().Before(s.credExpiry) {
		return nil
	}
	return err
}

// set swaps in the credential c; s.mu is held.
func (s *session) set(c *issued) {
	s.agent, s.cred, s.scopes, s.who, s.credExpiry = c.agent, c.cred, c.scopes, c.who, c.expires
}

// issue exchanges raw for a credential to p's agent key. Errors wrap
// auth.ErrInvalidToken when the exchange judged the token and refused it.
func (e *Endpoint) issue(ctx context.Context, p *principal, raw string) (*issued, error) {
	cred, err := client.Exchange(ctx, e.nc, client.ExchangeConfig{
		Subject: e.ep.ExchangeSubject, Audience: e.ep.GatewayAudience, Tenant: e.cfg.Tenant,
		Key: p.key, Curve: p.curve, GatewayXKey: e.ep.GatewayXKey, TrustedIssuers: e.ep.TrustedIssuers,
		Token: func(context.Context) (string, error) { return raw, nil },
	}, client.WithClock(e.now))
	if err != nil {
		d, ok := errors.AsType[*reason.Denial](err)
		switch {
		case ok && d.Code == reason.ExchangeIdPUnavailable:
			// The token was not judged: not a 401, which would have the
			// client discard a token that may be good.
			return nil, errors.New("token exchange unavailable: the IdP's signing keys cannot be obtained")
		case ok && d.Code != reason.Internal:
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
	who, verified, err := credentialPrincipal(cred.Token)
	if err != nil {
		return nil, errors.New("exchanged credential is unusable")
	}
	if verified != exchange.Principal(p.issuer, p.subject) {
		return nil, fmt.Errorf("%w: the token's issuer and subject are not those the exchange verified", auth.ErrInvalidToken)
	}
	return &issued{agent: ag, cred: cred.Token, scopes: cred.Scopes, who: who, expires: cred.Expires}, nil
}

const sessionKey = "agentgw.session"

// principal returns the known principal of issuer and subject, or a new
// one with fresh (or key_dir's) keys that is not kept until adopt. The
// token is not verified yet: this forgets no one, it only refuses when
// no principal could be forgotten.
func (e *Endpoint) principal(issuer, subject string, now time.Time) (p *principal, known bool, err error) {
	id := issuer + " " + subject
	e.mu.Lock()
	e.expireLocked(now)
	p, ok := e.principals[id]
	room := ok || len(e.principals) < e.bounds.principals || len(e.idle) > 0
	e.mu.Unlock()
	if ok {
		return p, true, nil
	}
	if !room {
		return nil, false, fmt.Errorf("%w: too many principals", auth.ErrInvalidToken)
	}
	key, curve, err := e.keys(id)
	if err != nil {
		return nil, false, err
	}
	return &principal{id: id, issuer: issuer, subject: subject, key: key, curve: curve}, false, nil
}

// adopt keeps a principal whose token the exchange accepted, writing its
// keys to key_dir. If another request adopted the same principal first,
// that one is returned.
func (e *Endpoint) adopt(p *principal, now time.Time) (*principal, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if q, ok := e.principals[p.id]; ok {
		return q, nil
	}
	if !e.roomLocked(now) {
		return nil, fmt.Errorf("%w: too many principals", auth.ErrInvalidToken)
	}
	if e.keyRoot != nil {
		if err := e.saveKeys(p); err != nil {
			return nil, err
		}
	}
	e.principals[p.id] = p
	e.idle[p.id] = p // until its session is kept
	return p, nil
}

// keyName is the name, in key_dir, of principal id's key file.
func keyName(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:16]) + ".nk"
}

// keyPath is the key_dir file of principal id.
func (e *Endpoint) keyPath(id string) string { return filepath.Join(e.ep.KeyDir, keyName(id)) }

// keys loads a principal's agent key and curve key from key_dir, or
// creates them (in memory) when there is no file.
func (e *Endpoint) keys(id string) (nkeys.KeyPair, nkeys.KeyPair, error) {
	if e.keyRoot != nil {
		data, err := e.keyRoot.ReadFile(keyName(id))
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
			return nil, nil, errors.New("a principal key file in key_dir does not hold an agent and a curve seed")
		}
		if !os.IsNotExist(err) {
			return nil, nil, errors.New("a principal key file in key_dir cannot be read")
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
// file exists. The seeds go to a new temporary file, synced, which is
// then linked to the file's name: a crash leaves no half-written file,
// and a name that exists (a file, or a symlink planted there, dangling
// or not) is neither followed nor replaced. A file that exists must
// hold p's keys: another endpoint sharing key_dir may have written the
// principal's keys while p's, made before the file was there, were
// being exchanged for a credential. Kept, they would give one principal
// two agent keys (two budgets, split ledger entries); the request fails
// instead, and the next one reads the file's.
func (e *Endpoint) saveKeys(p *principal) error {
	name := keyName(p.id)
	if fi, err := e.keyRoot.Lstat(name); err == nil {
		if !fi.Mode().IsRegular() {
			return errors.New("a principal key file name in key_dir is not a regular file (a symlink planted there?): remove it")
		}
		key, curve, err := e.keys(p.id)
		if err != nil {
			return err
		}
		if !samePublicKey(key, p.key) || !samePublicKey(curve, p.curve) {
			return errors.New("another endpoint wrote this principal's keys to key_dir meanwhile; the next request uses them")
		}
		return nil
	}
	ks, _ := p.key.Seed()
	cs, _ := p.curve.Seed()
	data := append(append(append(ks, '\n'), cs...), '\n')
	defer clear(data)
	fail := errors.New("a principal key file cannot be written to key_dir")
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fail
	}
	tmpName := ".principal-" + hex.EncodeToString(rnd[:])
	tmp, err := e.keyRoot.OpenFile(tmpName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fail
	}
	defer func() { _ = e.keyRoot.Remove(tmpName) }()
	_, werr := tmp.Write(data)
	serr := tmp.Sync()
	if cerr := tmp.Close(); werr != nil || serr != nil || cerr != nil {
		return fail
	}
	if err := e.keyRoot.Link(tmpName, name); err != nil {
		// Another process wrote the principal's file meanwhile: its keys,
		// not these, are the principal's; the next request loads them.
		return fail
	}
	return nil
}

// samePublicKey reports whether a and b have the same public key.
func samePublicKey(a, b nkeys.KeyPair) bool {
	pa, err1 := a.PublicKey()
	pb, err2 := b.PublicKey()
	return err1 == nil && err2 == nil && pa == pb
}
