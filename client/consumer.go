package client

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentgw/agentgw/gateway/tracing"

	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// ConsumerConfig configures a capability consumer. It holds the
// consumer's curve key: never print Curve on its own.
type ConsumerConfig struct {
	// Tenant whose capability subjects are read. Required.
	Tenant string
	// Targets served, each a catalog name; the consumer reads
	// agentgw.cap.<Tenant>.<target> for each. Required.
	Targets []string
	// Curve is the consumer's curve ('X') key pair, the catalog's
	// consumer xkey for its targets. Nil: plain targets only.
	Curve nkeys.KeyPair
	// TrustedGateways are the gateways' public server ('N') keys.
	// Required.
	TrustedGateways []string
	// GatewayXKeys optionally restrict the delivery's sealed_from (see
	// VerifyOptions). Empty: any.
	GatewayXKeys []string
	// VerifyAgentSignature also verifies the agent's own signature.
	VerifyAgentSignature bool
	// Skew tolerated on token times. Zero means none, as a 0 skewMs in
	// the TypeScript SDK's consumer; DefaultConsumerConfig sets
	// DefaultSkew (30 s), what an absent skewMs means there. Negative is
	// invalid.
	Skew time.Duration
	// Limits bound envelope bodies; zero fields take envelope's defaults.
	Limits envelope.Limits

	// Durable names a durable consumer (work is shared by every Consume
	// with that name and resumes after a restart). Empty: ephemeral,
	// starting at the oldest message in the stream, each Consume call its
	// own: a decision two of them are delivered is handed over once, but
	// a restarted process (its record of tokens is in memory) is handed
	// again what it was handed before, while the tokens last. Use a
	// durable for work that must be done once.
	Durable string
	// Responder, when set, is the consumer's own agent identity (its
	// credential holding respond:<target>) used by Respond to answer.
	// The gateway takes an answer only sealed from the key the request
	// was delivered under (the target's consumer_xkey), so with Curve
	// set the Responder's curve key must be Curve's.
	Responder *Agent
	// Bind uses the existing durable named Durable instead of creating or
	// updating it: the least-privilege deployment (deploy/) pre-creates
	// consumers and lets each consumer read only its own.
	Bind bool
	// Stream is the capability stream. Empty: StreamCapability.
	Stream string
	// AckWait is how long JetStream waits for a word on a delivery
	// before it redelivers it. Zero: JetStream's default (30 s).
	// Negative is invalid.
	AckWait time.Duration
	// InProgress is how often Consume tells JetStream that a delivery it
	// holds (waiting for a handler slot, or handed to a handler that has
	// not returned) is in progress, so that a handler running longer than
	// AckWait does not see it redelivered, to this instance or to another
	// of the durable, whose record of what it handed over knows nothing of
	// it. Deliveries the NATS client has pulled ahead but Consume has
	// not yet taken wait without the word: a handler that runs longer
	// than AckWait can see the next of them redelivered, to another
	// instance too. Zero: a third of the durable's AckWait; at least 10
	// ms. Negative: never. A value at or above AckWait, when AckWait is
	// set, is invalid: the word would come too late.
	InProgress time.Duration
	// MaxDeliver bounds deliveries of one message (handler errors
	// included). Zero: unlimited. Negative is invalid.
	MaxDeliver int
	// NakDelay delays redelivery after a handler error, and after a
	// refusal that hands the message back (see Consume). Zero: at once
	// after a handler error, one second after a refusal. Negative is
	// invalid.
	NakDelay time.Duration
	// MaxTokens bounds the decision tokens the consumer remembers having
	// handed over (see Consume), each until it expires. Zero:
	// DefaultMaxTokens. Negative is invalid. When it is full a new
	// delivery is refused, not handed over unrecorded: it is handed back
	// (nak, after NakDelay or one second) and reported to OnReject with
	// reason.DecisionRecordFull, and comes back once tokens expire.
	MaxTokens int
	// HandBackUnknownKeys hands back on a Durable (nak, after NakDelay
	// or one second) rather than terminates a delivery refused for a key
	// this consumer lacks (ErrUnknownKey: a gateway signing key not among
	// TrustedGateways, a re-sealed payload from a curve key not among
	// GatewayXKeys, a curve key missing or not the one the payload was
	// re-sealed to), so that another reader of the durable, or this one
	// with its keys set right, can verify it. For a reader that shares a
	// durable with the service (agentgw consume), and for a service
	// through a key rotation. It is still reported to OnReject. An
	// ephemeral consumer, which no one else reads, still terminates it.
	// Off by default: anyone able to publish on the capability subjects
	// could then fill the durable's pending limit with forgeries naming a
	// gateway key nobody trusts, or genuine deliveries re-published with
	// another sealed_from, each handed back until MaxDeliver (set it)
	// ends its deliveries; terminated, they cost one verification each.
	HandBackUnknownKeys bool
	// Concurrency is how many deliveries Consume hands to the handler at
	// once, each on its own goroutine and settled when its handler
	// returns. Zero or one: one at a time, in stream order, with at
	// most two deliveries buffered. Above one, deliveries are still
	// verified and claimed one at a time in the order they arrive, and at
	// most twice Concurrency are buffered ahead of the handlers (a
	// buffered delivery gets no in-progress word until its turn, so a
	// deeper buffer would let AckWait pass for it behind slow handlers
	// and hand it to another instance), but handler calls overlap and finish in any
	// order, and a redelivery (after AckWait) can overlap the handling
	// of the delivery it repeats. At most MaxConcurrency; negative is
	// invalid.
	Concurrency int

	// OnReject, if set, is called with the subject and the error (a
	// *reason.Denial, or one wrapping it: errors.As) of every message
	// that is not handed over: one that
	// fails verification or is a copy of a delivery already handed over
	// (terminated), or one the token record refuses though it verifies,
	// or one refused for a key it lacks with HandBackUnknownKeys (handed
	// back; see Consume). It runs on the consuming goroutine:
	// keep it short.
	OnReject func(subject string, err error)
}

// MaxConcurrency bounds ConsumerConfig.Concurrency.
const MaxConcurrency = 1024

// DefaultConsumerConfig returns a config with DefaultSkew and nothing
// else set.
func DefaultConsumerConfig() ConsumerConfig { return ConsumerConfig{Skew: DefaultSkew} }

// String names the tenant and targets only.
func (c ConsumerConfig) String() string {
	return fmt.Sprintf("client.ConsumerConfig{tenant=%s targets=%v durable=%s}", c.Tenant, c.Targets, c.Durable)
}

// Format prints String for every verb, so %+v cannot reach Curve.
func (c ConsumerConfig) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// Validate reports every problem in c at once. Errors wrap ErrConfig.
func (c ConsumerConfig) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !subjects.ValidToken(c.Tenant) {
		add("tenant %.72q is not [a-z0-9_-]{1,64}", c.Tenant)
	}
	if len(c.Targets) == 0 {
		add("at least one target is required")
	}
	for _, t := range c.Targets {
		if !subjects.ValidTarget(t) {
			add("target %.72q is not dotted [a-z0-9_-]{1,64} parts", t)
		}
	}
	if len(c.TrustedGateways) == 0 {
		add("at least one trusted gateway key is required")
	}
	for _, k := range c.TrustedGateways {
		if !subjects.ValidKey(k, 'N') {
			add("trusted gateway %.72q is not a public server ('N') key", identity.SafeText(k))
		}
	}
	for _, k := range c.GatewayXKeys {
		if !subjects.ValidKey(k, 'X') {
			add("gateway xkey %.72q is not a public curve ('X') key", identity.SafeText(k))
		}
	}
	if c.Skew < 0 {
		add("skew %v is negative", c.Skew)
	}
	if c.AckWait < 0 || c.NakDelay < 0 || c.MaxDeliver < 0 || c.MaxTokens < 0 {
		add("ack wait, nak delay, max deliver and max tokens must not be negative")
	}
	if c.AckWait > 0 && c.InProgress >= c.AckWait {
		add("in-progress interval %v is not under the ack wait %v", c.InProgress, c.AckWait)
	}
	if c.Concurrency < 0 || c.Concurrency > MaxConcurrency {
		add("concurrency %d is not in [0, %d]", c.Concurrency, MaxConcurrency)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	return nil
}

// Consumer delivers verified capability messages to a handler, each
// gateway decision at most once (see Consume). It is safe for concurrent
// use; each Consume call runs its own subscription, and all of them share
// the Consumer's record of the decision tokens handed over.
type Consumer struct {
	js     jetstream.JetStream
	cfg    ConsumerConfig
	box    *identity.Box
	now    func() time.Time
	tracer trace.Tracer
	tokens *tokenRecord
}

// NewConsumer returns a Consumer reading through js. Errors wrap
// ErrConfig.
func NewConsumer(js jetstream.JetStream, cfg ConsumerConfig, opts ...Option) (*Consumer, error) {
	if js == nil {
		return nil, fmt.Errorf("%w: nil JetStream", ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := applyOptions(opts)
	c := &Consumer{js: js, cfg: cfg, now: o.now, tracer: o.tracer}
	if c.cfg.Stream == "" {
		c.cfg.Stream = StreamCapability
	}
	if c.cfg.MaxTokens == 0 {
		c.cfg.MaxTokens = DefaultMaxTokens
	}
	c.tokens = newTokenRecord(c.cfg.MaxTokens)
	c.cfg.Targets = append([]string(nil), cfg.Targets...)
	if cfg.Curve != nil {
		box, err := identity.NewBox(cfg.Curve)
		if err != nil {
			return nil, fmt.Errorf("%w: curve key is not a curve ('X') seed", ErrConfig)
		}
		c.box = box
		if r := cfg.Responder; r != nil && r.XKey() != box.PublicKey() {
			return nil, fmt.Errorf("%w: the Responder's curve key %q is not the consumer's %s: the gateway takes answers only from the consumer key", ErrConfig, r.XKey(), box.PublicKey())
		}
	}
	return c, nil
}

// VerifyOptions returns the options Consume verifies each message with,
// at the consumer's clock's current instant.
func (c *Consumer) VerifyOptions() VerifyOptions { return c.verifyOptions(c.now()) }

func (c *Consumer) verifyOptions(now time.Time) VerifyOptions {
	return VerifyOptions{
		Tenant:               c.cfg.Tenant,
		Targets:              c.cfg.Targets,
		TrustedGateways:      c.cfg.TrustedGateways,
		Curve:                c.box,
		GatewayXKeys:         c.cfg.GatewayXKeys,
		VerifyAgentSignature: c.cfg.VerifyAgentSignature,
		Now:                  now,
		Skew:                 c.cfg.Skew,
		Limits:               c.cfg.Limits,
	}
}

// Consume reads the capability subjects of the configured targets until
// ctx is done, one message at a time or Concurrency at once. Each
// message is checked with
// VerifyDelivery; one that fails is terminated (never redelivered, the
// reason code as the term reason) and reported to OnReject, and the
// handler never sees it. A verified message is passed to handler and
// acknowledged when it returns nil, or negatively acknowledged (after
// NakDelay) when it returns an error, to be redelivered.
//
// Each decision is handed over once. Consume remembers the decision token
// id (jti: 128 random bits the gateway signs into every token) of each
// delivery it hands over, with the stream sequence it came from, until
// the token expires (exp plus Skew: from then on it no longer verifies
// anyway). A verified message whose jti was handed over
// from another stream sequence is a re-published copy (the same bytes
// stored again under a new Nats-Msg-Id, which only a holder of publish
// rights on the capability subject can do): it is terminated with
// reason.DecisionDuplicate and reported to OnReject. The record also
// remembers how the handler fared. A redelivery of the same stream
// sequence by the same JetStream consumer (JetStream counts it delivered
// twice or more) is handed over again when the handler failed (it was
// handed back), acknowledged without a second call when the handler
// succeeded (its acknowledgement was lost, or the handler ran past
// AckWait), and left alone while the handler still runs (the handler
// settles the sequence). A decision whose handler failed is handed over
// again from wherever it comes; one whose handler succeeded or still runs
// is not. The same sequence delivered for the first time again under the
// same consumer name (a durable deleted and created again, which delivers
// the stream from its start) is not a redelivery: a duplicate. A handler
// must still tolerate seeing a decision it did not finish: a process
// that dies while its handler runs hands nothing on, and JetStream
// redelivers the message to whichever instance asks next.
// The record holds at most MaxTokens tokens; when it is full a new
// delivery is handed back rather than handed over unrecorded (see
// MaxTokens).
//
// The record forgets a token once a clock reading passes its expiry. If
// that reading was ahead (a VM resumed, a clock stepped forward and then
// corrected) or the clock steps back since, a token that verifies by the
// current reading but expires no later than a forgotten one may be a
// copy of it: it is refused reason.DecisionExpired and handed back (nak,
// after NakDelay or one second), never terminated, so a Consumer with a
// fresh record (a restarted process) can still handle it. Only a token
// expired by the current reading is terminated.
//
// The record is in this process's memory, shared by every Consume call of
// this Consumer and by nothing else. Other instances bound to the same
// durable (scale-out) each have their own, and a restarted process starts
// with an empty one. So a copy is caught when it reaches the Consumer that
// handed the original over, within the token's lifetime; that is every
// copy for a single consumer process that stays up, but a copy that
// another instance receives, or that arrives after a restart, is handed
// over there. JetStream redelivers an unacknowledged message to another
// instance after a crash, and that is a legitimate redelivery. A tool
// that runs several instances and must never act twice keeps Claims.ID in
// shared durable state of its own (a compare-and-set on a key-value
// bucket, a unique key in its database).
//
// A token issued later than this Consumer's clock says it is now (the
// clock runs behind the gateway's by more than Skew) that would verify by
// a clock up to 5 minutes ahead is handed back and reported, not
// terminated, so that a lagging clock does not destroy a live delivery
// for every consumer of the durable. With HandBackUnknownKeys, so is a
// delivery refused on a Durable for a key this Consumer lacks
// (ErrUnknownKey).
//
// Consume returns nil when ctx is done once the consumer runs, or when
// ctx is cancelled while it is being created; it returns an error
// wrapping ErrStream when the consumer cannot be created (the stream is
// missing, the durable exists with other filters, the user may not
// create it and ctx's deadline passes first), disappears, or its
// connection closes for good.
func (c *Consumer) Consume(ctx context.Context, handler func(context.Context, *Delivery) error) error {
	filters := make([]string, 0, len(c.cfg.Targets))
	for _, t := range c.cfg.Targets {
		s, err := subjects.Capability(c.cfg.Tenant, t)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		filters = append(filters, s)
	}
	cc := jetstream.ConsumerConfig{
		Durable:        c.cfg.Durable,
		Description:    "agentgw capability consumer",
		FilterSubjects: filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.cfg.AckWait,
		MaxDeliver:     c.cfg.MaxDeliver,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
	if cc.MaxDeliver == 0 {
		cc.MaxDeliver = -1
	}
	if len(filters) == 1 {
		// A single filter goes in FilterSubject, so nats.go uses the
		// filtered create subject that permissions can pin.
		cc.FilterSubject, cc.FilterSubjects = filters[0], nil
	}
	if c.cfg.Concurrency <= 1 {
		// Two buffered, as twice Concurrency below: a delivery waiting
		// behind a slow handler gets no in-progress word, and nats.go's
		// default of 500 let AckWait pass for most of them, handing
		// them to another instance of the durable to be handled again.
		return consume(ctx, c.js, c.cfg.Stream, cc, c.cfg.Bind, 2, func(ctx context.Context, m jetstream.Msg, _ <-chan struct{}) {
			if ctx.Err() != nil {
				return // left unacknowledged: not handed to a handler whose context is done
			}
			km, stop := keepAlive(ctx, m, c.cfg.InProgress)
			defer stop()
			if d, ok := c.accept(km); ok {
				c.handle(ctx, km, d, handler)
			}
		})
	}
	// The consuming goroutine waits for a free slot, then verifies and
	// claims the message, in the order of arrival as one at a time does
	// (a redelivery never claims before the delivery it repeats), and
	// hands it to a goroutine of its own. Once ctx is done a message is
	// left unacknowledged, as one buffered but not yet handled is. All
	// running.Go calls are made by consume's callbacks, which have
	// returned when consume does: Consume then waits for the handlers.
	slots := make(chan struct{}, c.cfg.Concurrency)
	var running sync.WaitGroup
	defer running.Wait()
	return consume(ctx, c.js, c.cfg.Stream, cc, c.cfg.Bind, 2*c.cfg.Concurrency, func(ctx context.Context, m jetstream.Msg, stopping <-chan struct{}) {
		km, stop := keepAlive(ctx, m, c.cfg.InProgress) // from the wait for a slot to the settlement
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			stop()
			return
		case <-stopping:
			stop()
			return
		}
		if ctx.Err() != nil {
			stop()
			<-slots
			return
		}
		d, ok := c.accept(km)
		if !ok {
			stop()
			<-slots
			return
		}
		running.Go(func() {
			defer func() { <-slots }()
			defer stop()
			c.handle(ctx, km, d, handler)
		})
	})
}

// accept verifies m and claims its token, or settles it (terminated, or
// handed back when the record refuses a token that verifies) and reports
// it to OnReject.
func (c *Consumer) accept(m jetstream.Msg) (*Delivery, bool) {
	now := c.now()
	d, err := VerifyDelivery(m.Subject(), m.Headers(), m.Data(), c.verifyOptions(now))
	handBack := false
	if err == nil {
		err = c.claim(m, d, now)
		switch {
		case errors.Is(err, errHandled):
			_ = m.Ack()
			return nil, false
		case errors.Is(err, errHandling):
			return nil, false
		}
		// The token verifies at now: the record refuses it as expired
		// only for an earlier clock reading, which now may show to
		// have been ahead. Refused, but not terminated.
		handBack = reason.Of(err) == reason.DecisionRecordFull || reason.Of(err) == reason.DecisionExpired
	} else if c.cfg.HandBackUnknownKeys && c.cfg.Durable != "" && errors.Is(err, ErrUnknownKey) {
		handBack = true
	} else if reason.Of(err) == reason.DecisionInvalid {
		// A token issued later than this clock says it is now: the clock
		// runs behind the gateway's, and to a consumer whose clock is
		// right the delivery is live. Handed back, as the Approver does,
		// not terminated for every consumer of the durable.
		// Issued in the future is the only refusal a wider skew lifts
		// that was not an expiry.
		wide := c.verifyOptions(now)
		wide.Skew += clockBehindMargin
		_, behind := VerifyDelivery(m.Subject(), m.Headers(), m.Data(), wide)
		handBack = behind == nil
	}
	if err != nil {
		if handBack {
			_ = m.NakWithDelay(cmp.Or(c.cfg.NakDelay, handBackDelay))
		} else {
			_ = m.TermWithReason(string(reason.Of(err)))
		}
		if c.cfg.OnReject != nil {
			c.cfg.OnReject(m.Subject(), err)
		}
		return nil, false
	}
	return d, true
}

// clockBehindMargin is how far ahead of this consumer's clock a token
// may be issued and still be handed back rather than terminated: the
// largest skew the gateway may be configured with.
const clockBehindMargin = 5 * time.Minute

// handle hands the accepted delivery d of m to handler and settles m:
// acknowledged when handler returns nil, handed back when it fails.
func (c *Consumer) handle(ctx context.Context, m jetstream.Msg, d *Delivery, handler func(context.Context, *Delivery) error) {
	hctx, span := c.tracer.Start(tracing.Extract(ctx, m.Headers(), d.Envelope.TraceID), "agentgw.consume",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("agentgw.message_id", d.Envelope.MessageID), attribute.String("agentgw.target", d.Target)))
	err := handler(hctx, d)
	span.End()
	c.tokens.settle(d.Claims.ID, err == nil)
	if err != nil {
		if c.cfg.NakDelay > 0 {
			_ = m.NakWithDelay(c.cfg.NakDelay)
		} else {
			_ = m.Nak()
		}
		return
	}
	_ = m.Ack()
}

// claim records that the verified delivery d, message m, is about to be
// handed over (tokenRecord.claim). A message without JetStream metadata,
// or from a stream other than the consumer's, cannot be told apart from
// a copy: Internal.
func (c *Consumer) claim(m jetstream.Msg, d *Delivery, now time.Time) error {
	md, err := m.Metadata()
	if err != nil {
		return reason.Deny(reason.Internal, "jti %s: no JetStream metadata on the delivery: %v", d.Claims.ID, err)
	}
	if md.Stream != c.cfg.Stream {
		return reason.Deny(reason.Internal, "jti %s: delivered from stream %s, not %s", d.Claims.ID, md.Stream, c.cfg.Stream)
	}
	return c.tokens.claim(d.Claims.ID, md.Consumer, md.Sequence.Stream, md.NumDelivered, d.Claims.Expires.Add(c.cfg.Skew), now)
}
