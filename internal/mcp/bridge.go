package mcp

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/agentgw/agentgw/client"
)

// Version is the implementation version the bridge and the endpoint
// announce to MCP peers.
const Version = "1"

// Bridge serves catalog targets from upstream MCP servers: it consumes
// the targets' capability subjects, calls the upstream tool with each
// verified delivery's arguments and answers through the gateway.
//
// Each target has its own durable consumer (see NewBridge), whose
// deliveries are handled up to the tool's upstream concurrency at once:
// the targets' deliveries are handled independently.
type Bridge struct {
	cons    map[string]*client.Consumer // by target, one each
	tools   map[string]*bridged         // by target
	onCall  func(target string)
	mu      sync.Mutex
	answers map[string]json.RawMessage // by request and decision token, for a redelivery after an answer failed to send
	order   []string
	calling singleflight.Group // by request: a redelivery while its call runs waits for that call
}

type bridged struct {
	tool Tool
	up   *upstream
}

// maxRemembered bounds the answers kept for redeliveries.
const maxRemembered = 1024

// BridgeOption configures a Bridge.
type BridgeOption func(*Bridge)

// WithCallHook calls fn with the target before each upstream call.
func WithCallHook(fn func(target string)) BridgeOption {
	return func(b *Bridge) { b.onCall = fn }
}

// NewBridge returns a bridge for every tool of cfg that has an upstream.
// ccfg is the consumers' configuration: its Tenant and Targets are set
// from cfg, its Curve must be the catalog's consumer_xkey for the
// targets and its Responder the bridge's agent identity (a credential
// holding respond:<target> for each).
//
// ccfg.Durable is required: each target is read by the durable consumer
// BridgeConsumerName(ccfg.Durable, target), created (or, with ccfg.Bind,
// bound: it must exist) on the capability stream. ccfg.Durable may not
// hold "~", which would let a name read as another tenant's consumer
// (durable "a~b" with target "c" names tenant a's consumer of b.c), and
// the names must be ones nats-server takes (client.CheckConsumerName: at
// most 255 bytes); the error for such a durable wraps
// client.ErrConsumerName too. A durable other than the tenant names
// consumers in the tenants' name space: it must be no tenant's name, and
// no other bridge's. Durable consumers resume where they stopped after a
// restart and share deliveries among instances; an ephemeral one would
// hand a restarted bridge, or each of two, every delivery whose token has
// not expired, and the upstream tools would run again. With Durable the tenant and Bind, the consumers
// are the ones deploy/ and `agentgw run` pre-create for tenant users
// (client.CapabilityConsumerName). Errors wrap ErrConfig.
func NewBridge(js jetstream.JetStream, cfg *Config, ccfg client.ConsumerConfig, opts ...BridgeOption) (*Bridge, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: nil config", ErrConfig)
	}
	if ccfg.Durable == "" {
		return nil, fmt.Errorf("%w: the bridge needs a durable consumer name: an ephemeral consumer hands a restarted bridge every unexpired delivery again, and the upstream tools run twice", ErrConfig)
	}
	b := &Bridge{tools: make(map[string]*bridged), cons: make(map[string]*client.Consumer), answers: make(map[string]json.RawMessage)}
	ccfg.Tenant, ccfg.Targets = cfg.Tenant, nil
	var targets []string
	for _, t := range cfg.Tools {
		if t.Upstream.URL == "" && len(t.Upstream.Command) == 0 {
			continue
		}
		up, err := newUpstream(t.Upstream)
		if err != nil {
			return nil, err
		}
		if _, dup := b.tools[t.Target]; dup {
			return nil, fmt.Errorf("%w: target %s has two upstream tools", ErrConfig, t.Target)
		}
		b.tools[t.Target] = &bridged{tool: t, up: up}
		targets = append(targets, t.Target)
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("%w: no tool has an upstream", ErrConfig)
	}
	if ccfg.Curve == nil {
		return nil, fmt.Errorf("%w: the bridge needs the consumer curve key: arguments arrive sealed to it", ErrConfig)
	}
	if ccfg.Responder == nil {
		return nil, fmt.Errorf("%w: the bridge needs a responder identity", ErrConfig)
	}
	if strings.Contains(ccfg.Durable, client.ConsumerNameSep) {
		return nil, fmt.Errorf("%w: %w: durable %q holds %q, which would make a consumer name read as another tenant's", ErrConfig, client.ErrConsumerName, ccfg.Durable, client.ConsumerNameSep)
	}
	names := client.ConsumerNames{}
	for _, target := range targets {
		if err := names.Add(BridgeConsumerName(ccfg.Durable, target), "target "+target); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	for _, target := range targets {
		c := ccfg
		c.Targets, c.Durable = []string{target}, BridgeConsumerName(ccfg.Durable, target)
		c.Concurrency = cmp.Or(b.tools[target].tool.Upstream.Concurrency, DefaultUpstreamConcurrency)
		cons, err := client.NewConsumer(js, c)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		b.cons[target] = cons
	}
	for _, o := range opts {
		o(b)
	}
	return b, nil
}

// BridgeConsumerName is the durable consumer the bridge reads target
// with: "<durable>~<target with every . as ~>". With durable the tenant
// it is client.CapabilityConsumerName, the consumer deploy/ and `agentgw
// run` pre-create.
func BridgeConsumerName(durable, target string) string {
	return client.CapabilityConsumerName(durable, target)
}

// Run consumes every target's consumer until ctx is done or one fails
// (the consumer cannot be created or bound, or disappears), then closes
// the upstream sessions.
func (b *Bridge) Run(ctx context.Context) error {
	defer func() {
		for _, t := range b.tools {
			t.up.close()
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range b.cons {
		g.Go(func() error {
			err := c.Consume(gctx, b.handle)
			if err == nil && ctx.Err() == nil && gctx.Err() != nil {
				return nil // stopped because another target's failed
			}
			return err
		})
	}
	return g.Wait()
}

// handle calls the upstream tool for one verified delivery and answers.
// An error makes the delivery come again (client.Consumer); the answer
// to a request already called upstream is remembered and sent again
// rather than calling the tool twice.
func (b *Bridge) handle(ctx context.Context, d *client.Delivery) error {
	// A request is its agent's message id in its tenant, as the gateway's
	// replay ledger keys it: message ids are the agents' own, and another
	// agent reusing one must not be sent this agent's answer.
	id := d.Envelope.Tenant + "/" + d.Agent + "/" + d.Envelope.MessageID
	key := answerKey(d)
	answer, err := b.answerFor(ctx, d, id, key)
	if err != nil {
		return fmt.Errorf("mcp: call %s: %w", d.Envelope.MessageID, err)
	}
	_, err = b.cons[d.Target].Respond(ctx, d, answer)
	if errors.Is(err, client.ErrRequest) {
		// The answer cannot travel as an envelope (larger than the body
		// limit, most likely, or not an object the envelope takes):
		// sending it again would fail again, at every redelivery. The
		// requester is told so instead, and so is a redelivery.
		small := errorAnswer("the tool's answer cannot be sent: too large, or not a JSON object an envelope takes")
		b.remember(key, small)
		if _, err = b.cons[d.Target].Respond(ctx, d, small); errors.Is(err, client.ErrRequest) {
			// Not even that builds: no redelivery would do better. The
			// request is acknowledged unanswered; its requester's wait
			// ends at its timeout.
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("mcp: answer %s: %w", d.Envelope.MessageID, err)
	}
	return nil
}

// answerKey is what an answer is remembered under: the request (the
// agent's message id in its tenant) and the delivery's decision, whose
// token every redelivery carries again. The same agent may send its id
// again once the ledger has forgotten it, to another target: that is a
// new request, and its answer is not the first one (nor redacted as the
// first target's).
func answerKey(d *client.Delivery) string {
	return d.Envelope.Tenant + "/" + d.Agent + "/" + d.Envelope.MessageID + "#" + d.Claims.ID
}

// answerFor returns the answer to delivery d of request id, remembered
// under key: the upstream tool's, called once per key. Deliveries are
// handled concurrently, and a redelivery (after AckWait) can come while
// the call it repeats still runs: it waits for that call's answer
// rather than calling the tool again.
func (b *Bridge) answerFor(ctx context.Context, d *client.Delivery, id, key string) (json.RawMessage, error) {
	v, err, _ := b.calling.Do(key, func() (any, error) {
		b.mu.Lock()
		answer, done := b.answers[key]
		b.mu.Unlock()
		if !done {
			answer = b.call(ctx, d, id)
			if err := ctx.Err(); err != nil {
				// Stopped under the call: not the tool's answer, and not
				// one to send a redelivery. Handed back.
				return nil, err
			}
			b.remember(key, answer)
		}
		return answer, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(json.RawMessage), nil
}

// RequestIDMeta is the _meta key of the upstream tools/call that names
// the request, "<tenant>/<agent key>/<message id>" (the gateway's replay
// key): the same on every delivery of one request, so an upstream tool
// that must not act twice (the bridge is at least once) can keep it.
const RequestIDMeta = "agentgw/request-id"

func (b *Bridge) call(ctx context.Context, d *client.Delivery, id string) json.RawMessage {
	t, ok := b.tools[d.Target]
	if !ok {
		return errorAnswer("no upstream for this target")
	}
	// The upstream gets the verified bytes themselves, the ones the
	// gateway's schema, policy and approver read: decoding them into Go
	// values and encoding again would turn numbers into float64
	// (9007199254740993 becomes ...992) and could change them.
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(d.Payload, &obj); err != nil || obj == nil {
		return errorAnswer("arguments are not a JSON object")
	}
	args := json.RawMessage(d.Payload)
	if b.onCall != nil {
		b.onCall(d.Target)
	}
	// A deadline per call: an upstream that hangs holds one of its own
	// target's slots (each target has its own consumer), and only this
	// long.
	cctx, cancel := context.WithTimeout(ctx, cmp.Or(t.tool.Upstream.Timeout, DefaultUpstreamTimeout))
	defer cancel()
	res, err := t.up.call(cctx, t.tool.Upstream.Tool, args, sdk.Meta{RequestIDMeta: id})
	if err != nil {
		if cctx.Err() != nil && ctx.Err() == nil {
			return errorAnswer("upstream tool did not answer in time (it may still have acted)")
		}
		return errorAnswer("upstream tool unavailable")
	}
	return resultAnswer(res)
}

func (b *Bridge) remember(id string, answer json.RawMessage) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.answers[id]; ok {
		b.answers[id] = answer // replaced: its place in the order stays
		return
	}
	if len(b.order) >= maxRemembered {
		delete(b.answers, b.order[0])
		b.order = b.order[1:]
	}
	b.answers[id] = answer
	b.order = append(b.order, id)
}

// resultAnswer is the response a tool result travels as: its structured
// content when it has one and is not an error (so the catalog's response
// schema and sensitive fields apply to the tool's own output fields),
// else {"content": [...], "isError": bool}.
func resultAnswer(res *sdk.CallToolResult) json.RawMessage {
	if !res.IsError && res.StructuredContent != nil {
		if raw, err := json.Marshal(res.StructuredContent); err == nil && len(raw) > 0 && raw[0] == '{' {
			return raw
		}
	}
	content := res.Content
	if content == nil {
		content = []sdk.Content{}
	}
	raw, err := json.Marshal(struct {
		Content []sdk.Content `json:"content"`
		IsError bool          `json:"isError"`
	}{content, res.IsError})
	if err != nil {
		return errorAnswer("upstream result does not encode")
	}
	return raw
}

func errorAnswer(msg string) json.RawMessage {
	raw, _ := json.Marshal(map[string]any{
		"content": []map[string]string{{"type": "text", "text": msg}},
		"isError": true,
	})
	return raw
}

// upstream is one MCP server, connected on first use and again after a
// failed call.
type upstream struct {
	spec   Upstream
	bearer string   // from BearerEnv; never printed
	env    []string // a command's whole environment (may hold secrets); never printed
	mu     sync.Mutex
	sess   *sdk.ClientSession
	// closing counts sessions being closed after a failed call: a close
	// waits for the session's other calls, so it runs on its own.
	closing sync.WaitGroup
	// http keeps as many idle connections to a URL upstream as calls
	// run at once: with the default two, every call past them would
	// dial a new connection and close it after.
	http *http.Transport
}

func newUpstream(u Upstream) (*upstream, error) {
	up := &upstream{spec: u}
	if u.URL != "" {
		up.http = http.DefaultTransport.(*http.Transport).Clone()
		up.http.MaxIdleConnsPerHost = cmp.Or(u.Concurrency, DefaultUpstreamConcurrency)
	}
	if u.BearerEnv != "" {
		up.bearer = os.Getenv(u.BearerEnv)
		if up.bearer == "" {
			return nil, fmt.Errorf("%w: upstream bearer variable %s is empty", ErrConfig, u.BearerEnv)
		}
	}
	if len(u.Command) > 0 {
		env, missing := commandEnv(u.Env)
		if missing != "" {
			return nil, fmt.Errorf("%w: upstream %s: env variable %s is not set", ErrConfig, u.Command[0], missing)
		}
		up.env = env
	}
	return up, nil
}

// commandEnv is a stdio upstream's environment: PATH and HOME when set,
// and the named variables, from the bridge's environment; missing is a
// named variable that is not set. The bridge's own environment holds
// every upstream's bearer token and may hold NATS credentials: none of
// it is inherited otherwise.
func commandEnv(names []string) (env []string, missing string) {
	env = []string{}
	for _, n := range names {
		v, ok := os.LookupEnv(n)
		if !ok {
			return nil, n
		}
		env = append(env, n+"="+v)
	}
	for _, n := range []string{"PATH", "HOME"} {
		if v, ok := os.LookupEnv(n); ok && !slices.Contains(names, n) {
			env = append(env, n+"="+v)
		}
	}
	return env, ""
}

func (u *upstream) session(ctx context.Context) (*sdk.ClientSession, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.sess != nil {
		return u.sess, nil
	}
	var tr sdk.Transport
	if u.spec.URL != "" {
		hc := &http.Client{Transport: u.http}
		if u.bearer != "" {
			origin := ""
			if pu, err := url.Parse(u.spec.URL); err == nil {
				origin = pu.Scheme + "://" + pu.Host
			}
			hc.Transport = bearerTransport{token: u.bearer, origin: origin, base: u.http}
		}
		tr = &sdk.StreamableClientTransport{Endpoint: u.spec.URL, HTTPClient: hc, DisableStandaloneSSE: true}
	} else {
		cmd := exec.Command(u.spec.Command[0], u.spec.Command[1:]...)
		cmd.Env = u.env // never nil for a command (commandEnv): nil would inherit everything
		tr = &sdk.CommandTransport{Command: cmd}
	}
	c := sdk.NewClient(&sdk.Implementation{Name: "agentgw-bridge", Version: Version}, nil)
	s, err := c.Connect(ctx, tr, nil)
	if err != nil {
		return nil, err
	}
	u.sess = s
	return s, nil
}

func (u *upstream) call(ctx context.Context, tool string, args json.RawMessage, meta sdk.Meta) (*sdk.CallToolResult, error) {
	s, err := u.session(ctx)
	if err != nil {
		return nil, err
	}
	res, err := s.CallTool(ctx, &sdk.CallToolParams{Meta: meta, Name: tool, Arguments: args})
	if err != nil {
		// A JSON-RPC error is the server's answer, and a call that ran
		// out of time says nothing of the connection; anything else may
		// be a broken connection: connect again next time.
		if _, ok := errors.AsType[*jsonrpc.Error](err); !ok && ctx.Err() == nil {
			u.reset(s)
		}
		return nil, err
	}
	return res, nil
}

// reset drops s, if it is still the session, for the next call to
// connect again. Closing s waits for the calls still running on it, so
// it is done on its own goroutine, and the calls that come meanwhile
// are not held.
func (u *upstream) reset(s *sdk.ClientSession) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.sess == s {
		u.sess = nil
		u.closing.Go(func() { _ = s.Close() })
	}
}

func (u *upstream) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.sess != nil {
		_ = u.sess.Close()
		u.sess = nil
	}
	u.closing.Wait()
	if u.http != nil {
		u.http.CloseIdleConnections()
	}
}

// bearerTransport adds the upstream bearer token to each request to the
// upstream's own scheme and host, and to no other: a redirect elsewhere
// (the HTTP client follows it through this transport) gets no token.
type bearerTransport struct {
	token  string
	origin string // scheme://host of the upstream URL
	base   http.RoundTripper
}

func (t bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if r.URL.Scheme+"://"+r.URL.Host == t.origin {
		r.Header.Set("Authorization", "Bearer "+t.token)
	} else {
		r.Header.Del("Authorization")
	}
	return t.base.RoundTrip(r)
}
