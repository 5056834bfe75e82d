package exchange

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/exchange/protocol"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// ServiceName and ServiceVersion identify the micro service ($SRV.INFO).
const (
	ServiceName    = "agentgw-exchange"
	ServiceVersion = "1.0.0"
)

// ErrConfig is returned (wrapped with every problem) by New and Start.
var ErrConfig = errors.New("exchange: invalid config")

// Option injects a collaborator.
type Option func(*options)

type options struct {
	now        func() time.Time
	log        zerolog.Logger
	audit      func(audit.Event)
	client     *http.Client
	trust      map[string][]string
	noPub      bool
	rev        *identity.Revocations
	accepted   []*identity.Box
	onAccepted func(key string)
}

// WithClock replaces time.Now for every decision: token times, proof
// freshness, key-cache age and credential iat.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithLogger sets the logger; the default discards. Every exchange is
// logged as its audit event, which holds no secret.
func WithLogger(l zerolog.Logger) Option { return func(o *options) { o.log = l } }

// WithAudit calls fn with every exchange's audit event, granted or
// refused, synchronously before the reply is sent. fn must not block.
func WithAudit(fn func(audit.Event)) Option { return func(o *options) { o.audit = fn } }

// WithoutAuditPublish stops Start from publishing audit events to
// agentgw.audit.<tenant> (WithAudit still sees them).
func WithoutAuditPublish() Option { return func(o *options) { o.noPub = true } }

// WithRevocations gives the gateway's revocations: no credential is
// issued for a revoked principal, nor for a delegated token one of whose
// actors is revoked (reason revoked).
func WithRevocations(r *identity.Revocations) Option { return func(o *options) { o.rev = r } }

// WithHTTPClient replaces the client for discovery and JWKS fetches. Its
// bodies are still capped; its Timeout, if zero, is Config.HTTPTimeout.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithAcceptedKeys gives the curve keys the gateway opens with besides
// its current one (keys.accepted_curves): a request's xkey_proof may be
// sealed to one of them, by a requester that has not yet taken a rotated
// key, and no credential is issued for any of them as an agent's xkey.
// onOpen, if not nil, is called with the public key of each accepted key
// that opened a proof.
func WithAcceptedKeys(onOpen func(key string), boxes ...*identity.Box) Option {
	return func(o *options) { o.accepted, o.onAccepted = boxes, onOpen }
}

// WithTrust gives the gateway's per-tenant issuer trust (tenant → public
// 'A' keys): New refuses an issuer the gateway would not accept for its
// tenant, so the service cannot mint credentials the gateway denies.
func WithTrust(trust map[string][]string) Option { return func(o *options) { o.trust = trust } }

// Service exchanges IdP tokens for credentials. It is safe for
// concurrent use. New builds one; Start also serves it on NATS.
type Service struct {
	cfg     Config
	opts    options
	box     *identity.Box
	boxes   []*identity.Box // box, then the accepted keys: what opens a proof
	issuers map[string]nkeys.KeyPair
	byIss   map[string]*idp
	seen    *seenSet
}

// New validates cfg, the issuers (tenant → issuer 'A' key pair; every
// tenant of every IdP needs one) and box, the gateway's curve key: the
// one the gateway accepts as a sealed payload's "to", with which the
// service opens each request's xkey_proof. Give the service a Box of its
// own (identity.NewBox of the same key pair), so the curve keys
// requesters name never take the places of the gateway's peers in a
// shared Box's cache. New does no I/O: each IdP's discovery runs on its
// first token. Errors wrap ErrConfig.
func New(cfg Config, issuers map[string]nkeys.KeyPair, box *identity.Box, opts ...Option) (*Service, error) {
	o := options{now: time.Now, log: zerolog.Nop()}
	for _, opt := range opts {
		opt(&o)
	}
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	cfg = cfg.withDefaults()
	if cfg.Audience == "" {
		errs = append(errs, errors.New("exchange: audience is required"))
	}
	if box == nil {
		errs = append(errs, errors.New("exchange: the gateway's curve key is required: it checks each request's xkey_proof"))
	}
	if o.client == nil {
		o.client = &http.Client{}
	}
	client := *o.client
	if client.Timeout == 0 {
		client.Timeout = cfg.HTTPTimeout
	}
	base := client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	client.Transport = limitedTransport{base}
	// Redirects could take a fetch off the configured host.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	o.client = &client

	s := &Service{cfg: cfg, opts: o, box: box, boxes: append([]*identity.Box{box}, o.accepted...), issuers: map[string]nkeys.KeyPair{}, byIss: map[string]*idp{}}
	for t, kp := range issuers {
		pub, err := kp.PublicKey()
		if err != nil || !nkeys.IsValidPublicAccountKey(pub) {
			errs = append(errs, fmt.Errorf("exchange: issuer for %s is not an account ('A') key", t))
			continue
		}
		if o.trust != nil && !slices.Contains(o.trust[t], pub) {
			errs = append(errs, fmt.Errorf("exchange: issuer %s is not trusted by the gateway for tenant %s", pub, t))
		}
		s.issuers[t] = kp
	}
	for _, pc := range cfg.IdPs {
		for _, t := range pc.Tenants {
			if s.issuers[t] == nil {
				errs = append(errs, fmt.Errorf("exchange: idp %s: no issuer key for tenant %s", pc.Name, t))
			}
		}
		s.byIss[pc.Issuer] = newIdP(pc, o.client, o.now, cfg.Skew, cfg.MaxConcurrent)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	s.seen = newSeenSet(o.now, cfg.ProofMaxAge+cfg.Skew, cfg.ProofMaxAge+2*cfg.Skew, cfg.ReplayCapacity)
	return s, nil
}

// Exchange runs one exchange: body is the request as received, proof the
// SignatureHeader value. It returns the response, or a *reason.Denial
// (match with errors.Is on a reason.Code) whose Detail is for the
// operator, never for the caller. Either way it emits the audit event.
//
// Order: request form → proof of possession of the agent key, then of
// the xkey → freshness and replay →
// IdP routing by the unverified iss → IdP token (algorithm, signature,
// issuer, audience, times, required claims) → tenant → act/may_act →
// mapping rules → requested scopes → issue.
func (s *Service) Exchange(ctx context.Context, body []byte, proof string) (*protocol.Response, error) {
	resp, ev, err := s.run(ctx, body, proof)
	s.emit(ev)
	return resp, err
}

// run is Exchange without emitting the event.
func (s *Service) run(ctx context.Context, body []byte, proof string) (*protocol.Response, audit.Event, error) {
	x, err := s.admit(body, proof)
	var resp *protocol.Response
	if err == nil {
		resp, err = s.complete(ctx, x)
	}
	ev, err := s.finish(x, err)
	return resp, ev, err
}

// pending is an exchange between its two phases: admit has run the
// checks that need no network call and chosen the IdP; complete asks it.
type pending struct {
	start time.Time
	ev    audit.Event
	req   *protocol.Request
	idp   *idp
	// recorded: the request's id went into the replay set, which bounds
	// how many such requests one identity makes; the events of the
	// others are bounded a second (answer).
	recorded bool
}

// finish completes x's audit event with its outcome and returns it with
// err, a non-Denial err turned into an internal_error Denial.
func (s *Service) finish(x *pending, err error) (audit.Event, error) {
	ev := x.ev
	ev.Time = s.opts.now().UTC()
	ev.LatencyMicros = max(ev.Time.Sub(x.start).Microseconds(), 0)
	if err != nil {
		var d *reason.Denial
		if !errors.As(err, &d) {
			d = reason.Deny(reason.Internal, "%s", oneLine(err.Error()))
			err = d
		}
		ev.Reason, ev.Detail = string(d.Code), audit.ClipDetail(d.Detail)
		if info, ok := reason.Lookup(d.Code); ok {
			ev.Stage = string(info.Stage)
		}
		ev.Scopes, ev.CredentialID, ev.Issuer = nil, "", ""
	}
	return ev, err
}

// replayKey is what the replay set records of req: its agent key and
// request id.
func replayKey(req *protocol.Request) string { return req.Agent + "\x00" + req.RequestID }

// admit runs the checks that cost no network call: the request's form,
// its proof of possession and freshness, and the routing to a
// configured IdP by the token's unverified iss. It always returns x,
// whose event the caller finishes.
func (s *Service) admit(body []byte, proof string) (*pending, error) {
	x := &pending{start: s.opts.now(), ev: audit.Event{Kind: audit.KindCredentialExchange}}
	now, ev := x.start, &x.ev
	req, err := protocol.Parse(body)
	if err != nil {
		return x, reason.Deny(reason.ExchangeRequestInvalid, "%v", err)
	}
	// The event is filed under a tenant only once the IdP token has
	// verified for it: an unauthenticated request names any tenant it
	// likes, and must not write into that tenant's audit stream.
	ev.Agent, ev.RequestID = req.Agent, req.RequestID
	if req.Audience != s.cfg.Audience {
		return x, reason.Deny(reason.ExchangeRequestInvalid, "request audience is not this gateway's")
	}
	if req.Tenant != "" && !identity.ValidTenant(req.Tenant) {
		return x, reason.Deny(reason.ExchangeRequestInvalid, "tenant is not [a-z0-9_-]{1,64}")
	}
	// Proof first: it is cheap, and only a request signed by the key it
	// names may make the IdP be contacted. Any key signs its own
	// requests, so the proof authenticates no one: the request id is
	// recorded only once the IdP token has verified, or anyone could fill
	// the replay set with fresh ids and stop every exchange.
	if err := protocol.VerifyProof(req.Agent, body, proof); err != nil {
		return x, reason.Deny(reason.ExchangeProofInvalid, "%v", err)
	}
	// The credential's xkey is the key sealed payloads must come from:
	// the gateway opens, and re-seals to a consumer, whatever is sealed
	// from it. The request must prove it holds that key's secret, or
	// anyone could name another agent's public xkey and have that
	// agent's sealed payloads, copied into its own envelopes, opened.
	// The gateway's own key is no agent's.
	keys := keyring{boxes: s.boxes}
	for _, b := range keys.boxes {
		if req.XKey == b.PublicKey() {
			return x, reason.Deny(reason.ExchangeProofInvalid, "xkey is the gateway's own curve key")
		}
	}
	if err := protocol.VerifyXKeyProof(&keys, req); err != nil {
		return x, reason.Deny(reason.ExchangeProofInvalid, "%v", err)
	}
	if keys.opened != s.box && s.opts.onAccepted != nil {
		s.opts.onAccepted(keys.opened.PublicKey())
	}
	at, _ := req.Time() // checked by Parse
	switch {
	case at.After(now.Add(s.cfg.Skew)):
		return x, reason.Deny(reason.ExchangeProofStale, "issued_at %s is in the future", req.IssuedAt)
	case now.Sub(at) >= s.cfg.ProofMaxAge+s.cfg.Skew:
		return x, reason.Deny(reason.ExchangeProofStale, "issued_at %s is older than %v", req.IssuedAt, s.cfg.ProofMaxAge)
	case s.seen.used(replayKey(req)):
		return x, reason.Deny(reason.ExchangeProofStale, "request id already used")
	}
	iss, err := unverifiedIssuer(req.SubjectToken)
	if err != nil {
		return x, reason.Deny(reason.ExchangeTokenInvalid, "%v", err)
	}
	p := s.byIss[iss]
	if p == nil {
		return x, reason.Deny(reason.ExchangeUntrustedIdP, "issuer %.128q is not a configured IdP", iss)
	}
	ev.IdPIssuer = iss
	x.req, x.idp = req, p
	return x, nil
}

// complete verifies x's token with its IdP (discovery and key fetches
// happen here), then maps and issues.
func (s *Service) complete(ctx context.Context, x *pending) (*protocol.Response, error) {
	req, p, now, ev := x.req, x.idp, x.start, &x.ev
	tok, err := p.verify(ctx, req.SubjectToken)
	if err != nil {
		return nil, err
	}
	ev.IdPSubject = tok.Subject
	tenant, err := p.tenant(tok, req.Tenant)
	if err != nil {
		return nil, err
	}
	ev.Tenant = tenant
	if ev.IdPActors, err = p.actors(tok, req.Agent, s.cfg.Audience); err != nil {
		return nil, err
	}
	principal, actors := Principal(tok.Issuer, tok.Subject), actorPrincipals(tok, ev.IdPActors)
	if s.opts.rev != nil && s.opts.rev.PrincipalRevoked(principal, actors) {
		return nil, reason.Deny(reason.Revoked, "idp %s: principal %.128q, or one of its actors, is revoked", p.cfg.Name, principal)
	}
	if s.opts.rev != nil && s.opts.rev.Revoked("", "", req.Agent) {
		return nil, reason.Deny(reason.Revoked, "agent key %s is revoked", req.Agent)
	}
	granted, rules := p.grant(tok, tenant)
	ev.Rules = rules
	if len(granted) == 0 {
		return nil, reason.Deny(reason.ExchangeNoScope, "idp %s: no rule maps the token's claims to a scope for tenant %s", p.cfg.Name, tenant)
	}
	scopes, err := narrow(granted, req.Scopes())
	if err != nil {
		return nil, err
	}
	var service string
	if p.cfg.ServiceClaim != "" {
		v, _ := lookup(tok.Claims, p.cfg.ServiceClaim)
		if service, _ = v.(string); !validService(service) {
			return nil, reason.Deny(reason.ExchangeTokenInvalid, "idp %s: claim %s is not a service name", p.cfg.Name, p.cfg.ServiceClaim)
		}
	}
	// Never outlive the IdP token: the credential is no broader in time
	// than the identity it was derived from.
	ttl := min(s.cfg.CredentialTTL, tok.Expires.Sub(now)).Truncate(time.Second)
	if ttl < time.Second {
		return nil, reason.Deny(reason.ExchangeTokenExpired, "idp %s: token expires in under a second", p.cfg.Name)
	}
	// Recorded last, under its principal, once everything else has
	// granted the request: a refused request takes no room in the set
	// (many identities whose tokens map to nothing cannot fill it and
	// stop every exchange), and one identity's requests take at most its
	// share. A refused request sent again is refused again.
	at, _ := req.Time() // checked by Parse
	switch s.seen.add(replayKey(req), principal, at) {
	case seenFull:
		return nil, reason.Deny(reason.Internal, "replay set full (%d request ids)", s.cfg.ReplayCapacity)
	case seenOverShare:
		return nil, reason.Deny(reason.Internal, "idp %s: subject %s holds %d request ids in the replay window, its share",
			p.cfg.Name, tok.Subject, shareOf(s.cfg.ReplayCapacity))
	case seenStale:
		return nil, reason.Deny(reason.ExchangeProofStale, "issued_at %s is older than %v", req.IssuedAt, s.cfg.ProofMaxAge)
	case seenReplay:
		return nil, reason.Deny(reason.ExchangeProofStale, "request id already used")
	}
	x.recorded = true
	issuer := s.issuers[tenant]
	cred, err := identity.Issue(issuer, identity.IssueRequest{
		Subject:   req.Agent,
		Audience:  s.cfg.Audience,
		Tenant:    tenant,
		Service:   service,
		Name:      credentialName(p.cfg.Name, tok.Subject, ev.IdPActors),
		Scopes:    scopes,
		XKey:      req.XKey,
		Principal: principal,
		Actors:    actors,
		TTL:       ttl,
	}, now)
	if err != nil {
		return nil, reason.Deny(reason.Internal, "issue: %v", err)
	}
	ev.CredentialID, ev.Scopes, ev.Service = cred.JTI(), scopes, service
	ev.Issuer, _ = issuer.PublicKey()
	return &protocol.Response{
		AccessToken:     cred.Reveal(),
		IssuedTokenType: protocol.TokenTypeAgentgw,
		TokenType:       protocol.TokenTypeNA,
		ExpiresIn:       int64(ttl / time.Second),
		Scope:           strings.Join(scopes, " "),
		Tenant:          tenant,
		CredentialID:    cred.JTI(),
	}, nil
}

// Principal is the nats.principal claim of a credential exchanged from an
// IdP token with issuer iss and subject sub: "<iss>#<sub>". A configured
// issuer holds no '#' (Config.Validate), so the first '#' separates the
// two and distinct identities never share a principal. Every credential
// one IdP identity obtains, for any agent key, names the same principal:
// the gateway compares it, not only the key, when it refuses an approver
// who is the requester.
func Principal(iss, sub string) string { return iss + "#" + sub }

// unverifiedIssuer reads iss from a compact JWS without verifying it: it
// only picks which IdP's verifier runs (and that verifier checks iss).
// Only the compact form is a token here: go-jose also reads the JWS JSON
// serialization, and compact tokens with white space in them, so a
// token in another form could be routed by a payload that is not the
// one verified.
func unverifiedIssuer(raw string) (string, error) {
	parts := strings.SplitN(raw, ".", 4) // no more work for a token of dots
	if len(parts) != 3 || !compactJWS(parts) {
		return "", errors.New("subject token is not a compact JWS")
	}
	payload, err := decodeSegment(parts[1])
	if err != nil {
		return "", errors.New("subject token payload is not base64url")
	}
	var c struct {
		Issuer string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &c); err != nil || c.Issuer == "" {
		return "", errors.New("subject token has no iss")
	}
	return c.Issuer, nil
}

func validService(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// emit logs the event and hands it to the audit callback. Publishing is
// the NATS server's (server.publishAudit).
func (s *Service) emit(ev audit.Event) {
	lvl := zerolog.InfoLevel
	if ev.Reason != "" {
		lvl = zerolog.WarnLevel
	}
	e := s.opts.log.WithLevel(lvl).Str("event", ev.Kind).Str("tenant", ev.Tenant).Str("agent", ev.Agent).
		Str("request_id", ev.RequestID).Str("idp_issuer", ev.IdPIssuer).Str("idp_subject", ev.IdPSubject).
		Str("credential_jti", ev.CredentialID).Strs("scopes", ev.Scopes).Strs("rules", ev.Rules).
		Int64("latency_us", ev.LatencyMicros)
	if len(ev.IdPActors) > 0 {
		e = e.Strs("idp_actors", ev.IdPActors)
	}
	if ev.Reason != "" {
		e = e.Str("reason", ev.Reason).Str("detail", audit.ClipDetail(ev.Detail))
	}
	e.Msg("credential exchange")
	if s.opts.audit != nil {
		s.opts.audit(ev)
	}
}

// Start serves svc's exchange on nc as a NATS micro service (endpoint
// "exchange" on cfg.Subject, queue group cfg.QueueGroup) and publishes
// every audit event to agentgw.audit.<tenant> (agentgw.audit._unroutable
// when no tenant is known), unless WithoutAuditPublish. Requests that
// need their IdP run concurrently, at most cfg.MaxConcurrent at once per
// IdP; ctx bounds each.
//
// stop unsubscribes, waits for the requests in flight and returns the
// micro service's stop error; call it exactly once. Start returns an
// error wrapping ErrConfig for a bad config, issuers or box (see New).
func Start(ctx context.Context, nc *nats.Conn, cfg Config, issuers map[string]nkeys.KeyPair, box *identity.Box, opts ...Option) (stop func() error, err error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil connection", ErrConfig)
	}
	svc, err := New(cfg, issuers, box, opts...)
	if err != nil {
		return nil, err
	}
	return svc.Serve(ctx, nc)
}

// Serve is Start for a Service already built with New.
func (s *Service) Serve(ctx context.Context, nc *nats.Conn) (stop func() error, err error) {
	ctx, cancel := context.WithCancel(ctx)
	js, err := jetstream.New(nc)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("exchange: jetstream: %w", err)
	}
	sv := &server{svc: s, nc: nc, js: js, ctx: ctx}
	m, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName,
		Version:     ServiceVersion,
		Description: "agentgw: exchange an OAuth/OIDC token for a short-lived agent credential (RFC 8693)",
		QueueGroup:  s.cfg.QueueGroup,
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("exchange: add service: %w", err)
	}
	if err := m.AddEndpoint("exchange", micro.HandlerFunc(sv.handle), micro.WithEndpointSubject(s.cfg.Subject)); err != nil {
		_ = m.Stop()
		cancel()
		return nil, fmt.Errorf("exchange: add endpoint: %w", err)
	}
	var once sync.Once
	var stopErr error
	return func() error {
		once.Do(func() {
			stopErr = m.Stop()
			// Drain may still deliver a request after Stop returns:
			// closed turns it away, so no worker starts after Wait.
			sv.mu.Lock()
			sv.closed = true
			sv.mu.Unlock()
			cancel()
			sv.wg.Wait()
		})
		return stopErr
	}, nil
}

type server struct {
	svc *Service
	nc  *nats.Conn
	js  jetstream.JetStream // a grant's audit event is stored with a PubAck
	ctx context.Context

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup

	unverified unverifiedEvents // refusals before the token verified
	refused    unverifiedEvents // refusals after it verified
}

// handle runs on the subscription's goroutine. It runs the checks that
// need no network call there (admit), then takes a slot of the token's
// IdP and hands the rest to a worker, so one slow IdP holds up neither
// the subscription nor the exchanges of another IdP. Each IdP has
// Config.MaxConcurrent slots; a request that finds its IdP's all in use
// is refused at once, exchange_idp_unavailable: its token is not judged.
func (sv *server) handle(req micro.Request) {
	if !subjects.ReplyInbox(req.Reply()) {
		// Nobody to answer, or an answer the gateway's connection must
		// not publish (subjects.ReplyInbox): dropped, unanswered.
		sv.svc.opts.log.Debug().Int("reply_bytes", len(req.Reply())).Msg("exchange: request without an inbox to answer; dropped")
		return
	}
	x, err := sv.svc.admit(req.Data(), req.Headers().Get(protocol.SignatureHeader))
	sv.mu.Lock()
	switch {
	case sv.closed:
		err = reason.Deny(reason.Internal, "stopping")
	case err == nil && !x.idp.enter():
		err = reason.Deny(reason.ExchangeIdPUnavailable, "idp %s: %d exchanges in flight", x.idp.cfg.Name, cap(x.idp.slots))
	}
	if err != nil {
		sv.mu.Unlock()
		sv.answer(req, x, nil, err)
		return
	}
	sv.wg.Add(1)
	sv.mu.Unlock()
	go func() {
		defer sv.wg.Done()
		ctx, cancel := context.WithTimeout(sv.ctx, 2*sv.svc.cfg.HTTPTimeout)
		resp, err := sv.svc.complete(ctx, x)
		cancel()
		// The IdP's part is done: a grant waiting for its audit event to
		// be stored holds no slot of the IdP's, or a stalled audit stream
		// would look like an IdP outage (exchange_idp_unavailable).
		x.idp.leave()
		sv.answer(req, x, resp, err)
	}()
}

// answer finishes x's event, emits and publishes it, then replies. The
// events of refusals whose request id was not recorded (every refusal)
// are bounded (UnverifiedEventsPerSecond), in two counts: those made
// before the request's token verified, which anyone may cause, and
// those of identities the IdP vouches for (a token that maps to
// nothing, a revoked principal or key, over its share, replayed), so
// that junk requests cannot crowd out the events of a revoked
// identity's attempts.
func (sv *server) answer(req micro.Request, x *pending, resp *protocol.Response, err error) {
	ev, err := sv.svc.finish(x, err)
	emit := true
	if err != nil && !x.recorded {
		bucket, who := &sv.unverified, "whose token did not verify"
		if ev.IdPSubject != "" {
			bucket, who = &sv.refused, "of verified identities"
		}
		ok, dropped := bucket.admit(time.Now())
		if dropped > 0 {
			sv.svc.opts.log.Warn().Int("refusals", dropped).Int("per_second", UnverifiedEventsPerSecond).
				Msg("exchange: refusals " + who + " past the bound of a second were neither logged nor audited")
		}
		emit = ok
	}
	if err == nil && !sv.svc.opts.noPub {
		// A credential is handed out only once its grant is on record:
		// the event stored, its PubAck in hand. Otherwise the request is
		// refused internal_error, and that refusal is recorded too (the
		// grant's event may have been stored with its answer lost).
		if serr := sv.storeAudit(ev); serr != nil {
			sv.svc.opts.log.Error().Err(serr).Str("agent", ev.Agent).Str("request_id", ev.RequestID).
				Msg("exchange: the grant's audit event was not stored; its credential is withheld")
			ev, err = sv.svc.finish(x, reason.Deny(reason.Internal, "the grant's audit event was not stored"))
			resp = nil
			sv.svc.emit(ev)
			sv.publishAudit(ev)
			sv.reply(req, nil, err)
			return
		}
		sv.svc.emit(ev)
		sv.reply(req, resp, nil)
		return
	}
	if emit {
		sv.svc.emit(ev)
		if !sv.svc.opts.noPub {
			sv.publishAudit(ev)
		}
	}
	if err != nil {
		resp = nil
	}
	sv.reply(req, resp, err)
}

// auditAckWait bounds the wait for a grant's audit event to be stored:
// well within the SDKs' default request timeout (5 s), so that a
// requester learns internal_error rather than a timeout.
const auditAckWait = 2 * time.Second

// storeAudit publishes a grant's audit event and waits for the audit
// stream's PubAck.
func (sv *server) storeAudit(ev audit.Event) error {
	ctx, cancel := context.WithTimeout(sv.ctx, auditAckWait)
	defer cancel()
	_, err := sv.js.PublishMsg(ctx, sv.auditMsg(ev))
	return err
}

// reply answers req on its reply subject. It publishes on the connection
// rather than through req.Respond/req.Error: those record the outcome in
// the request, which micro reads once the handler returns, and handle
// returns before its worker answers (a data race the race detector
// found). The wire form is micro's: an error carries the
// Nats-Service-Error and Nats-Service-Error-Code headers.
func (sv *server) reply(req micro.Request, resp *protocol.Response, err error) {
	m := nats.NewMsg(req.Reply())
	if err == nil {
		m.Data, _ = json.Marshal(resp) // plain types only: cannot fail
	} else {
		code := reason.Of(err)
		status, oauth := "400", "invalid_request"
		switch code {
		case reason.ExchangeUntrustedIdP, reason.ExchangeTokenInvalid, reason.ExchangeTokenAudience,
			reason.ExchangeTokenExpired, reason.ExchangeActorDenied, reason.ExchangeNoScope, reason.Revoked:
			status, oauth = "403", "invalid_grant"
		case reason.ExchangeProofInvalid, reason.ExchangeProofStale:
			status, oauth = "401", "invalid_request"
		case reason.ExchangeScopeDenied:
			status, oauth = "403", "invalid_scope"
		case reason.ExchangeIdPUnavailable:
			// The token was not judged: the same request may succeed
			// once the IdP's keys can be fetched.
			status, oauth = "503", "temporarily_unavailable"
		case reason.Internal:
			status, oauth = "500", "server_error"
		}
		// The caller learns the code, never the operator's detail.
		m.Data, _ = json.Marshal(protocol.ErrorBody{Error: oauth, Reason: string(code)})
		m.Header.Set(micro.ErrorHeader, string(code))
		m.Header.Set(micro.ErrorCodeHeader, status)
	}
	if perr := sv.nc.PublishMsg(m); perr != nil {
		sv.svc.opts.log.Warn().Err(perr).Msg("exchange: reply failed")
	}
}

// publishAudit publishes a refusal's audit event, not waiting for it to
// be stored: refusals are answered whatever becomes of their events.
func (sv *server) publishAudit(ev audit.Event) {
	m := sv.auditMsg(ev)
	if err := sv.nc.PublishMsg(m); err != nil {
		sv.svc.opts.log.Error().Err(err).Str("subject", m.Subject).Msg("exchange: audit publish failed")
	}
}

// auditMsg is ev's message on its tenant's audit subject (the
// unroutable tenant's when it names none), with a message id that makes
// a copy of it a duplicate to the audit stream.
func (sv *server) auditMsg(ev audit.Event) *nats.Msg {
	subj, err := subjects.Audit(ev.Tenant)
	if err != nil {
		subj, _ = subjects.Audit(subjects.UnroutableTenant)
	}
	m := nats.NewMsg(subj)
	m.Data = ev.AppendJSON(nil)
	if ev.RequestID != "" {
		// A grant's id names its credential: a request replayed to
		// another instance (each has its own replay set) is granted
		// again, and that second credential's event must not be taken
		// for a copy of the first.
		id := "exchange." + ev.Agent + "." + ev.RequestID + "." + outcome(ev)
		if ev.CredentialID != "" {
			id += "." + ev.CredentialID
		}
		m.Header.Set(header.MsgID, id)
	}
	return m
}

func outcome(ev audit.Event) string {
	if ev.Reason == "" {
		return "granted"
	}
	return ev.Reason
}

// Tenants returns the tenants some IdP may speak for, sorted.
func (s *Service) Tenants() []string {
	var out []string
	for _, p := range s.cfg.IdPs {
		out = append(out, p.Tenants...)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func decodeSegment(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// compactJWS reports whether the three parts of a token are non-empty
// base64url without padding or white space, as a compact JWS's are.
func compactJWS(parts []string) bool {
	for _, p := range parts {
		if p == "" {
			return false
		}
		for i := 0; i < len(p); i++ {
			switch c := p[i]; {
			case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			default:
				return false
			}
		}
	}
	return true
}

// keyring opens a proof with the gateway's current curve key, then with
// each accepted one (at most four: keys.accepted_curves), and keeps the
// box that opened it.
type keyring struct {
	boxes  []*identity.Box
	opened *identity.Box
}

func (k *keyring) Open(sealed []byte, sender string) ([]byte, error) {
	var err error
	for _, b := range k.boxes {
		var plain []byte
		if plain, err = b.Open(sealed, sender); err == nil {
			k.opened = b
			return plain, nil
		}
	}
	return nil, err
}
