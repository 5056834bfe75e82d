package client

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentgw/agentgw/gateway/tracing"

	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// Sentinel errors. Match them with errors.Is; their messages never contain
// a credential, a seed or payload bytes.
var (
	// ErrConfig: an AgentConfig, ConsumerConfig or key is unusable.
	ErrConfig = errors.New("client: invalid config")
	// ErrRequest: a Request (or an approval answer) cannot be sent as is.
	ErrRequest = errors.New("client: invalid request")
	// ErrUnavailable: no stream acknowledged the message within
	// MaxAttempts attempts (timeouts, no responders). An attempt that
	// timed out may still have been stored (see Send).
	ErrUnavailable = errors.New("client: no acknowledgement from JetStream")
	// ErrCollision: every fresh message id was already in the ingress
	// stream's duplicate window (MaxReissues+1 times in a row).
	ErrCollision = errors.New("client: message id collision")
	// ErrPublish: JetStream refused the message (an API error such as a
	// full stream) or the connection is closed. The cause is wrapped.
	ErrPublish = errors.New("client: publish refused")
)

// Defaults of AgentConfig's retry settings.
const (
	DefaultAttemptTimeout = 2 * time.Second
	DefaultMaxAttempts    = 5
	DefaultRetryWait      = 100 * time.Millisecond
	DefaultMaxReissues    = 3

	// maxRetryWait caps the doubling back-off between attempts.
	maxRetryWait = 2 * time.Second
)

// AgentConfig is an agent's identity and publishing behaviour. It holds
// secrets (Key, Curve, Credential): its String and Format print a redacted
// summary, but a copy of Key or Curve printed on its own is not redacted
// by nkeys — never log those.
type AgentConfig struct {
	// Tenant is the agent's tenant. Empty: the credential's tenant claim.
	// If set, it must equal that claim.
	Tenant string
	// Audience is the gateway's audience. Empty: the credential's aud.
	Audience string
	// Credential is the agent's credential JWT. Required.
	Credential identity.Token
	// Key is the agent's user ('U') key pair, the credential's subject.
	// Required.
	Key nkeys.KeyPair
	// Curve is the agent's curve ('X') key pair, the credential's xkey
	// claim. Nil: the agent can send plain payloads only.
	Curve nkeys.KeyPair
	// GatewayXKey is the gateway's public curve key that sealed payloads
	// are sealed to, and replies are sealed from. Required with Curve.
	GatewayXKey string
	// ReplyXKeys are more gateway curve keys a reply may be sealed from.
	// During a rotation of the gateway's curve key, list the new key here
	// before the gateway takes it: a reply to a plain request is sealed
	// from the gateway's current key, a reply to a sealed one from the
	// key it was sealed to.
	ReplyXKeys []string
	// AttemptTimeout bounds the wait for one PubAck. Zero:
	// DefaultAttemptTimeout (2 s); negative is invalid.
	AttemptTimeout time.Duration
	// MaxAttempts bounds publish attempts of one message id, the first
	// included. Zero: DefaultMaxAttempts (5); negative is invalid.
	MaxAttempts int
	// RetryWait is the pause before the second attempt; it doubles per
	// attempt up to 2 s. Zero: DefaultRetryWait (100 ms); negative is
	// invalid.
	RetryWait time.Duration
	// MaxReissues bounds how many times a message is re-issued under a new
	// id after a collision. Zero: DefaultMaxReissues (3); negative is
	// invalid.
	MaxReissues int
}

// DefaultAgentConfig returns a config with the default retry settings
// and no identity.
func DefaultAgentConfig() AgentConfig {
	return AgentConfig{
		AttemptTimeout: DefaultAttemptTimeout,
		MaxAttempts:    DefaultMaxAttempts,
		RetryWait:      DefaultRetryWait,
		MaxReissues:    DefaultMaxReissues,
	}
}

// String returns a summary that names the credential by its jti only.
func (c AgentConfig) String() string {
	return fmt.Sprintf("client.AgentConfig{tenant=%s audience=%s credential=%s gateway_xkey=%s}",
		c.Tenant, c.Audience, c.Credential, c.GatewayXKey)
}

// Format prints String for every verb, so %+v cannot reach the key pairs.
func (c AgentConfig) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// Validate reports every problem of the settings that need no key
// material; NewAgent checks the keys and the credential as well.
func (c AgentConfig) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Credential == "" {
		add("credential is required")
	}
	if c.Key == nil {
		add("agent key is required")
	}
	if c.Tenant != "" && !subjects.ValidToken(c.Tenant) {
		add("tenant %.72q is not [a-z0-9_-]{1,64}", c.Tenant)
	}
	if c.Curve != nil && !subjects.ValidKey(c.GatewayXKey, 'X') {
		add("gateway xkey is not a public curve ('X') key")
	}
	for i, k := range c.ReplyXKeys {
		if !subjects.ValidKey(k, 'X') {
			add("reply xkey %d is not a public curve ('X') key", i)
		}
	}
	if c.AttemptTimeout < 0 {
		add("attempt timeout %v is negative", c.AttemptTimeout)
	}
	if c.MaxAttempts < 0 {
		add("max attempts %d is negative", c.MaxAttempts)
	}
	if c.RetryWait < 0 {
		add("retry wait %v is negative", c.RetryWait)
	}
	if c.MaxReissues < 0 {
		add("max reissues %d is negative", c.MaxReissues)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	return nil
}

func (c AgentConfig) withDefaults() AgentConfig {
	d := DefaultAgentConfig()
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = d.AttemptTimeout
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if c.RetryWait == 0 {
		c.RetryWait = d.RetryWait
	}
	if c.MaxReissues == 0 {
		c.MaxReissues = d.MaxReissues
	}
	return c
}

// Request is one message to send. Exactly one of Plain and Sealed is set.
type Request struct {
	// Capability is what the agent asks for. Required.
	Capability envelope.Capability
	// Target is a catalog name; for approve the held message id; for
	// respond the request answered, envelope.RequestRef(agent, message
	// id) (Agent.Respond builds it). Required.
	Target string
	// Plain is a plain payload: a json.RawMessage (sent verbatim) or any
	// value encoding/json encodes as a JSON object.
	Plain any
	// Sealed is the plaintext of a sealed payload; it is sealed to the
	// gateway's curve key. It must be one JSON object under the strict
	// rules the gateway holds an opened payload to (envelope.CheckPayload:
	// no duplicate member names, valid UTF-8, nothing after the object);
	// anything else, a non-nil empty slice included, is refused with
	// ErrRequest before it is sealed or published. The agent's curve key
	// seals other boxes to the gateway too (the token exchange's xkey
	// proof), so a box of arbitrary bytes could stand in for one of them.
	Sealed []byte
	// IdempotencyKey names the request for the gateway's idempotency
	// ledger. Empty: the message id (every Send is its own request).
	IdempotencyKey string
	// TTL is expires_at - issued_at. Zero: envelope.DefaultTTL (60 s).
	TTL time.Duration
	// TraceID is the W3C trace-id (32 lowercase hex). Empty: a new one.
	TraceID string
	// NoNotice asks the gateway for no decision notice of this message
	// (header Agentgw-Notify: none): for a sender that will not read
	// it, so that the gateway neither signs nor stores one. SendAndDecide
	// and SendAndWait, which read it, refuse it; so would a
	// DecisionWatch's Await, which would wait in vain.
	NoNotice bool
}

// String returns what the request asks for and its payload's kind and
// length, never the payload: Sealed is plaintext meant for the gateway
// alone, and a logged request would put it in the log store.
func (r Request) String() string {
	return fmt.Sprintf("client.Request{capability=%s target=%s payload=%s}", r.Capability, r.Target, r.payloadShown())
}

// payloadShown is "sealed, N bytes", "plain, N bytes" (N when the plain
// payload is bytes already), "plain" or "none".
func (r Request) payloadShown() string {
	switch p := r.Plain.(type) {
	case nil:
	case json.RawMessage:
		return fmt.Sprintf("plain, %d bytes", len(p))
	case []byte:
		return fmt.Sprintf("plain, %d bytes", len(p))
	default:
		return "plain"
	}
	if r.Sealed != nil {
		return fmt.Sprintf("sealed, %d bytes", len(r.Sealed))
	}
	return "none"
}

// Format prints String for every verb, of a Request as of a pointer to
// one.
func (r Request) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(r.String())) }

// GoString returns the same as String.
func (r Request) GoString() string { return r.String() }

// MarshalJSON writes what String shows (capability, target, payload), as
// Delivery's does: a Request handed to a JSON logger or encoder shows
// no payload.
func (r Request) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Capability string `json:"capability"`
		Target     string `json:"target"`
		Payload    string `json:"payload"`
	}{string(r.Capability), r.Target, r.payloadShown()})
}

// LogValue is what log/slog records of a Request: what MarshalJSON
// writes.
func (r Request) LogValue() slog.Value {
	return slog.GroupValue(slog.String("capability", string(r.Capability)), slog.String("target", r.Target),
		slog.String("payload", r.payloadShown()))
}

// Receipt reports where a message landed.
type Receipt struct {
	MessageID string // the envelope message id that was acknowledged
	TraceID   string
	Stream    string // the stream that acknowledged (AGENTGW_IN)
	Seq       uint64 // the stream sequence of the message
	Attempts  int    // publish attempts over all message ids
}

// publishFunc publishes one message and waits for its PubAck.
type publishFunc func(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error)

// Agent sends signed envelopes for one agent identity. It is safe for
// concurrent use; its printed forms show only public keys.
type Agent struct {
	cfg      AgentConfig
	tenant   string
	audience string
	pub      string // agent user key
	xkey     string // agent curve key; "" without Curve
	subject  string // ingress subject
	signer   *identity.Signer
	box      *identity.Box // nil without Curve
	now      func() time.Time
	pubFn    publishFunc
	newID    func() string
	tracer   trace.Tracer
	nc       *nats.Conn
	replies  *replies // the reply subject's one subscription, shared by the waits in flight
}

// NewAgent returns an Agent publishing through nc. The credential is read
// (not verified: the gateway does that) to check that it names this key,
// this curve key, the tenant and the audience, so a misconfiguration fails
// here and not at the gateway. Errors wrap ErrConfig.
func NewAgent(nc *nats.Conn, cfg AgentConfig, opts ...Option) (*Agent, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil connection", ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	o := applyOptions(opts)
	signer, err := identity.NewSigner(cfg.Key)
	if err != nil || signer.Prefix() != nkeys.PrefixByteUser {
		return nil, fmt.Errorf("%w: agent key is not a user ('U') seed", ErrConfig)
	}
	claims, err := peekCredential(cfg.Credential)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, pub: signer.PublicKey(), signer: signer, now: o.now, newID: envelope.NewMessageID, tracer: o.tracer, nc: nc,
		replies: &replies{}}
	var errs []error
	if claims.Subject != a.pub {
		errs = append(errs, errors.New("credential subject is not the agent key"))
	}
	a.tenant, a.audience = cfg.Tenant, cfg.Audience
	if a.tenant == "" {
		a.tenant = claims.Nats.Tenant
	} else if a.tenant != claims.Nats.Tenant {
		errs = append(errs, fmt.Errorf("tenant %s is not the credential's", a.tenant))
	}
	if a.audience == "" {
		a.audience = claims.Audience
	} else if a.audience != claims.Audience {
		errs = append(errs, errors.New("audience is not the credential's"))
	}
	if cfg.Curve != nil {
		if a.box, err = identity.NewBox(cfg.Curve); err != nil {
			errs = append(errs, errors.New("curve key is not a curve ('X') seed"))
		} else if a.xkey = a.box.PublicKey(); a.xkey != claims.Nats.XKey {
			errs = append(errs, errors.New("curve key is not the credential's xkey"))
		}
	}
	if a.subject, err = subjects.Ingress(a.tenant, a.pub); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("%w: jetstream: %w", ErrConfig, err)
	}
	a.pubFn = func(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) {
		// Retries are ours (same id, same bytes), not the library's.
		return js.PublishMsg(ctx, m, jetstream.WithRetryAttempts(0))
	}
	return a, nil
}

// AgentFromCreds returns an Agent whose credential and user key come from
// a NATS .creds file and whose curve key comes from curveSeedPath (a seed
// file holding an "SX…" seed on a line of its own, docs/wire.md "Seed
// files"; "" for a plain-only agent).
// cfg supplies everything else (GatewayXKey, retry settings); its
// Credential, Key and Curve are replaced. Errors wrap ErrConfig and never
// contain file contents.
func AgentFromCreds(nc *nats.Conn, credsPath, curveSeedPath string, cfg AgentConfig, opts ...Option) (*Agent, error) {
	tok, kp, err := identity.ReadCreds(credsPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	cfg.Credential, cfg.Key, cfg.Curve = tok, kp, nil
	if curveSeedPath != "" {
		if cfg.Curve, err = readCurveSeed(curveSeedPath); err != nil {
			return nil, err
		}
	}
	return NewAgent(nc, cfg, opts...)
}

// readCurveSeed reads the curve seed of the seed file at path by the
// rules of docs/wire.md, "Seed files" (identity.ParseSeedFile), as the
// TypeScript SDK's readCurveSeed reads it.
func readCurveSeed(path string) (nkeys.KeyPair, error) {
	kp, err := identity.ReadCurveSeedFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: curve seed: %w", ErrConfig, err)
	}
	return kp, nil
}

// credentialClaims are the credential claims an Agent checks its
// configuration against. They are read unverified.
type credentialClaims struct {
	Subject  string `json:"sub"`
	Audience string `json:"aud"`
	Nats     struct {
		Tenant string `json:"tenant"`
		XKey   string `json:"xkey"`
	} `json:"nats"`
}

func peekCredential(t identity.Token) (*credentialClaims, error) {
	j, err := identity.ParseJWT(t.Reveal())
	if err != nil {
		return nil, fmt.Errorf("%w: credential is not a compact nkey JWT", ErrConfig)
	}
	var c credentialClaims
	// Exact names, no duplicates (encoding/json would read "Tenant" as
	// tenant, and the last of two): the claims the gateway will read.
	if err := jsonv2.Unmarshal(j.Payload, &c); err != nil {
		return nil, fmt.Errorf("%w: credential claims do not decode", ErrConfig)
	}
	return &c, nil
}

// PublicKey returns the agent's public user key.
func (a *Agent) PublicKey() string { return a.pub }

// XKey returns the agent's public curve key, or "" for a plain-only agent.
func (a *Agent) XKey() string { return a.xkey }

// Tenant returns the agent's tenant.
func (a *Agent) Tenant() string { return a.tenant }

// Subject returns the agent's ingress subject.
func (a *Agent) Subject() string { return a.subject }

// String returns "client.Agent{<tenant> <public key>}": never the
// credential of its config, which fmt would print from the unexported
// field otherwise. It is defined on the value, so an Agent printed by
// value, or inside another value, prints the same.
func (a Agent) String() string { return "client.Agent{" + a.tenant + " " + a.pub + "}" }

// Format prints String for every verb, %#v included.
func (a Agent) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(a.String())) }

// GoString returns String.
func (a Agent) GoString() string { return a.String() }

// Send builds, signs and publishes req and returns once JetStream has
// acknowledged it.
//
// A timeout or a missing stream (no responders) is retried with the same
// message id and the same bytes; a duplicate acknowledgement of a retry
// means an earlier attempt landed, which is success. A duplicate
// acknowledgement when no earlier attempt can have landed means another
// publisher used the id: the message is re-issued under a new id (a new
// body and signature), at most MaxReissues times.
//
// Errors wrap ErrRequest, ErrUnavailable, ErrCollision, ErrPublish or the
// context's error. After ErrUnavailable or the context's error an attempt
// that timed out may still have been stored, and will be decided: a
// caller that sends the request again gets a new message id, and with the
// default idempotency key (the message id) the gateway decides both. A
// request that must not be carried out twice sets Request.IdempotencyKey,
// and the gateway then refuses the second copy (duplicate_request).
func (a *Agent) Send(ctx context.Context, req Request) (*Receipt, error) {
	return a.send(ctx, req, nil)
}

// send is Send, calling named, when set, with each message id before
// the envelope under it is published: a waiter for its reply or notice
// is registered before either can arrive.
func (a *Agent) send(ctx context.Context, req Request, named func(id string)) (*Receipt, error) {
	payload, err := a.payload(req)
	if err != nil {
		return nil, err
	}
	if req.TTL < 0 {
		return nil, fmt.Errorf("%w: negative TTL", ErrRequest)
	}
	traceID := req.TraceID
	if traceID == "" {
		traceID = envelope.NewTraceID()
	}
	tid, _ := trace.TraceIDFromHex(traceID)
	ctx, span := a.tracer.Start(trace.ContextWithRemoteSpanContext(ctx, tracing.Remote(tid)), "agentgw.send",
		trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attribute.String("agentgw.target", req.Target)))
	defer span.End()
	attempts := 0
	for issue := 0; ; issue++ {
		bd := envelope.Builder{
			MessageID:      a.newID(),
			IdempotencyKey: req.IdempotencyKey,
			TraceID:        traceID,
			Tenant:         a.tenant,
			Audience:       a.audience,
			Capability:     req.Capability,
			Target:         req.Target,
			TTL:            req.TTL,
			Payload:        payload,
		}
		body, err := bd.Build(a.now())
		if err != nil {
			return nil, buildError(bd, a.now(), err)
		}
		m := nats.NewMsg(a.subject)
		m.Data = body
		m.Header.Set(header.Credential, a.cfg.Credential.Reveal())
		m.Header.Set(header.Signature, base64.RawURLEncoding.EncodeToString(a.signer.Sign(envelope.SigningInput(body))))
		m.Header.Set(header.MsgID, bd.MessageID)
		if req.NoNotice {
			m.Header.Set(header.Notify, notice.NotifyNone)
		}
		if span.IsRecording() {
			span.SetAttributes(attribute.String("agentgw.message_id", bd.MessageID))
			tracing.Inject(ctx, m.Header)
		} else {
			m.Header.Set(header.Traceparent, tracing.Traceparent(traceID))
		}

		if named != nil {
			named(bd.MessageID)
		}
		ack, n, collision, err := a.publish(ctx, m)
		attempts += n
		if err != nil {
			return nil, fmt.Errorf("client: send %s: %w", bd.MessageID, err)
		}
		if collision {
			if issue < a.cfg.MaxReissues {
				continue
			}
			return nil, fmt.Errorf("%w: %d ids in a row already taken", ErrCollision, issue+1)
		}
		return &Receipt{MessageID: bd.MessageID, TraceID: traceID, Stream: ack.Stream, Seq: ack.Sequence, Attempts: attempts}, nil
	}
}

// buildError reports why bd did not build. A detail about payload.plain
// may quote the payload, so it is replaced: if bd builds with an empty
// plain object, the payload was at fault.
func buildError(bd envelope.Builder, now time.Time, err error) error {
	if bd.Payload.Plain != nil {
		bd.Payload.Plain = json.RawMessage("{}")
		if _, err2 := bd.Build(now); err2 != nil {
			return fmt.Errorf("%w: %w", ErrRequest, err2)
		}
		return fmt.Errorf("%w: plain payload is not one strict JSON object within the limits (%w)", ErrRequest, reason.Of(err))
	}
	return fmt.Errorf("%w: %w", ErrRequest, err)
}

// payload validates the request's shape and returns its wire payload,
// sealed to the gateway when req.Sealed is set.
func (a *Agent) payload(req Request) (envelope.Payload, error) {
	if !req.Capability.Valid() {
		return envelope.Payload{}, fmt.Errorf("%w: capability %.32q is not one of the six", ErrRequest, req.Capability)
	}
	switch {
	case req.Plain != nil && req.Sealed != nil:
		return envelope.Payload{}, fmt.Errorf("%w: both plain and sealed payloads", ErrRequest)
	case req.Sealed != nil:
		if a.box == nil {
			return envelope.Payload{}, fmt.Errorf("%w: sealed payload but the agent has no curve key", ErrRequest)
		}
		// Only a JSON object is sealed: the same key pair's box of other
		// bytes could be an xkey proof of the token exchange. The detail
		// may quote the plaintext, so only its reason is reported.
		if err := envelope.CheckPayload(req.Sealed, envelope.Limits{}); err != nil {
			return envelope.Payload{}, fmt.Errorf("%w: sealed payload is not one strict JSON object within the limits (%w)", ErrRequest, reason.Of(err))
		}
		ct, err := a.box.Seal(req.Sealed, a.cfg.GatewayXKey)
		if err != nil {
			return envelope.Payload{}, fmt.Errorf("%w: seal: %w", ErrRequest, reason.Of(err))
		}
		return envelope.Payload{Sealed: base64.RawURLEncoding.EncodeToString(ct), From: a.xkey, To: a.cfg.GatewayXKey}, nil
	case req.Plain != nil:
		raw, ok := req.Plain.(json.RawMessage)
		if !ok {
			var err error
			if raw, err = json.Marshal(req.Plain); err != nil {
				return envelope.Payload{}, fmt.Errorf("%w: plain payload does not encode as JSON", ErrRequest)
			}
		}
		return envelope.Payload{Plain: raw}, nil
	}
	return envelope.Payload{}, fmt.Errorf("%w: no payload", ErrRequest)
}

// publish sends m until it is acknowledged, retrying retryable failures
// with the same bytes. collision reports a duplicate acknowledgement when
// no earlier attempt can have stored m: only a timed-out attempt may have
// landed, a no-responders one never reached a stream.
func (a *Agent) publish(ctx context.Context, m *nats.Msg) (ack *jetstream.PubAck, attempts int, collision bool, err error) {
	mayHaveLanded := false
	wait := a.cfg.RetryWait
	for attempts = 1; ; attempts++ {
		actx, cancel := context.WithTimeout(ctx, a.cfg.AttemptTimeout)
		ack, err = a.pubFn(actx, m)
		cancel()
		if err == nil {
			return ack, attempts, ack.Duplicate && !mayHaveLanded, nil
		}
		if ctx.Err() != nil {
			return nil, attempts, false, ctx.Err()
		}
		lost := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
		absent := errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
		if !lost && !absent {
			return nil, attempts, false, fmt.Errorf("%w: %w", ErrPublish, err)
		}
		mayHaveLanded = mayHaveLanded || lost
		if attempts >= a.cfg.MaxAttempts {
			return nil, attempts, false, fmt.Errorf("%w after %d attempts: %w", ErrUnavailable, attempts, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, attempts, false, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, maxRetryWait)
	}
}
